/**
 * The host-level middleware chain and the built-in middleware: access log, CORS (off by
 * default) and the body-size limit. The default order is `[accessLog?, cors?, bodyLimit,
 * ...yours]`, then the function runs. The request id (`c.requestId`) is assigned before the
 * chain runs, so every middleware sees it.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { errorResponse } from '../wire/error-response.js';
import { readBody, hasBody } from './body.js';
import { requestBodyStream, streamsBody } from './request-body.js';
import { newRequestId } from './request-id.js';
import type { Middleware, Next, RequestContext } from './context.js';
import type { LogHub } from '../observability/log-hub.js';

/** Set on requests that came with `Expect: 100-continue` (the listener's 'checkContinue'). */
export const kExpectContinue = Symbol('fezz.expectContinue');

/**
 * Compose `middleware` and `terminal` into one function. With no middleware it is the
 * terminal itself; each `next` is created per call only for the middleware that exist.
 */
export function compose(middleware: readonly Middleware[], terminal: (c: RequestContext) => void | Promise<void>): (c: RequestContext) => void | Promise<void> {
  if (middleware.length === 0) return terminal;
  const list = [...middleware];
  return function run(c: RequestContext): void | Promise<void> {
    let last = -1;
    const dispatch = (i: number): void | Promise<void> => {
      if (i <= last) return Promise.reject(new Error('next() called more than once'));
      last = i;
      if (i === list.length) return terminal(c);
      const next: Next = () => dispatch(i + 1);
      return list[i]!(c, next);
    };
    return dispatch(0);
  };
}

/**
 * Give the request an id if it has none (sent back as `x-request-id`, seen by the function as
 * `ctx.requestId`). The host assigns one before the chain runs, so this is a no-op there; it
 * is kept for chains composed by hand.
 */
export function requestId(): Middleware {
  return function requestIdMiddleware(c, next) {
    if (c.requestId === '') c.requestId = newRequestId();
    return next();
  };
}

/** One log line per request after its response: method, path, status, ms, function. */
export function accessLog(logger: Logger): Middleware {
  return function accessLogMiddleware(c, next) {
    const done = (): void => {
      const fn = c.match.kind === 'found' ? c.match.fn.fn.key : undefined;
      logger.info({ requestId: c.requestId, method: c.method, path: c.path, status: c.response?.status ?? 0, ms: Math.round((performance.now() - c.startTime) * 100) / 100, fn }, 'request');
    };
    const r = next();
    if (r instanceof Promise) return r.then(done);
    done();
  };
}

/**
 * Wrap the whole request chain `run` so that each request a function served is recorded in
 * `hub` (LogHub.request: method, path, status, ms, request id) once its response is ready,
 * whatever answered it (the function, a middleware's short cut, a 413). What `fezz logs`
 * shows by default. Not a middleware, so the host keeps skipping the chain when it has
 * nothing but the body limit; the host leaves it out when the access log is on (its lines
 * reach the hub already).
 */
export function recordRequests(run: (c: RequestContext) => void | Promise<void>, hub: LogHub): (c: RequestContext) => void | Promise<void> {
  // hot path -- change with care
  const record = (c: RequestContext): void => {
    const m = c.match;
    if (m.kind !== 'found') return;
    const fn = m.fn.fn;
    hub.request(fn.id, fn.key, c.requestId, c.method, c.path, c.response?.status ?? 0, c.startTime, performance.now());
  };
  return function recordingChain(c: RequestContext): void | Promise<void> {
    const r = run(c);
    if (r instanceof Promise) return r.then(() => record(c));
    record(c);
  };
}

/** CORS options. `origin: '*'` allows any origin; a list allows those exactly. */
export interface CorsOptions {
  /** @default '*' */
  origin?: '*' | string[];
  /** @default ['GET','HEAD','PUT','PATCH','POST','DELETE'] */
  methods?: string[];
  /** Request headers allowed in preflight; by default those the browser asks for. */
  allowHeaders?: string[];
  /** Preflight cache, in seconds. @default 600 */
  maxAgeSeconds?: number;
  /** @default false */
  credentials?: boolean;
}

/** Add CORS headers, and answer preflight `OPTIONS` requests with 204. */
export function cors(options: CorsOptions = {}): Middleware {
  const origins = options.origin ?? '*';
  const methods = (options.methods ?? ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE']).join(',');
  const maxAge = String(options.maxAgeSeconds ?? 600);
  return function corsMiddleware(c, next) {
    const origin = c.req.headers.origin;
    if (origin === undefined) return next();
    const allowed = origins === '*' ? (options.credentials ? origin : '*') : origins.includes(origin) ? origin : null;
    if (allowed === null) return next();
    c.extraHeaders.push('access-control-allow-origin', allowed);
    if (allowed !== '*') c.extraHeaders.push('vary', 'Origin');
    if (options.credentials) c.extraHeaders.push('access-control-allow-credentials', 'true');
    if (c.method === 'OPTIONS' && c.req.headers['access-control-request-method'] !== undefined) {
      const reqHeaders = options.allowHeaders?.join(',') ?? c.req.headers['access-control-request-headers'];
      c.extraHeaders.push('access-control-allow-methods', methods, 'access-control-max-age', maxAge);
      if (reqHeaders) c.extraHeaders.push('access-control-allow-headers', reqHeaders);
      c.response = { status: 204, headers: [], body: null };
      return;
    }
    return next();
  };
}

/**
 * Read the request body within the matched function's `limits.maxBodyBytes` (or
 * `defaultLimit` bytes when no function matched); past it 413 and the connection closes; a
 * body with no bytes for `bodyTimeoutMs` ms gets 408 and the connection closes.
 */
export function bodyLimit(defaultLimit: number, bodyTimeoutMs = 30_000): Middleware {
  return function bodyLimitMiddleware(c, next) {
    if (!hasBody(c.req)) { c.body = null; return next(); }
    const limit = c.match.kind === 'found' ? c.match.fn.fn.manifest.limits.maxBodyBytes : defaultLimit;
    return readContextBody(c, limit, bodyTimeoutMs).then((ok) => (ok ? next() : undefined));
  };
}

/**
 * Read the body into `c.body` within `limit` bytes and `idleMs` ms between bytes. On failure
 * set the 413 (or 408, 400) response, mark the connection to close, and resolve `false`.
 */
export function readContextBody(c: RequestContext, limit: number, idleMs: number): Promise<boolean> {
  const expect = (c.req as unknown as Record<symbol, unknown>)[kExpectContinue] === true ? () => c.res.writeContinue() : undefined;
  const runtime = c.match.kind === 'found' ? c.match.fn.runtime : null;
  if (runtime?.streamsRequestBody === true && streamsBody(c.req) && !(Number(c.req.headers['content-length']) > limit)) {
    // Large or chunked: the function reads it as it arrives (request-body.ts).
    expect?.();
    c.body = null;
    c.bodyStream = requestBodyStream(c.req, limit, idleMs, c.match.kind === 'found' ? c.match.fn.fn.manifest.limits.streamMaxMs : 15 * 60_000, (err) => {
      c.closeConnection = true;
      const res = err.status === 413 ? errorResponse('FEZZ_ERR_BODY_TOO_LARGE', [limit])
        : err.status === 408 ? errorResponse('FEZZ_ERR_BODY_STALLED', [idleMs]) : null;
      if (c.res.headersSent) {
        // The function answered already and reads on: the response cannot say it now.
        if (!c.res.writableFinished) c.res.destroy();
      } else if (res !== null) {
        // Answer now (413 the moment the limit is crossed), not when the function gives up.
        c.override = res;
        if (c.invocation !== null) runtime.cancel?.(c.invocation);
      }
    });
    return Promise.resolve(true);
  }
  return readBody(c.req, limit, idleMs, expect).then((body) => { c.body = body; return true; }, (err: unknown) => {
    const e = err instanceof FezzError ? err : fezzError('FEZZ_ERR_BAD_REQUEST', [String(err)]);
    c.response = e.code === 'FEZZ_ERR_BODY_TOO_LARGE' ? errorResponse('FEZZ_ERR_BODY_TOO_LARGE', [limit])
      : e.code === 'FEZZ_ERR_BODY_STALLED' ? errorResponse('FEZZ_ERR_BODY_STALLED', [idleMs])
      : e.code === 'FEZZ_ERR_REQUEST_TIMEOUT' ? errorResponse('FEZZ_ERR_REQUEST_TIMEOUT', [])
      : errorResponse('FEZZ_ERR_BAD_REQUEST', [e.message]);
    c.closeConnection = true;
    return false;
  });
}
