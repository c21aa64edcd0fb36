/**
 * The request path: route -> middleware chain -> run the function -> write the response.
 * `handleRequest` is what the public listener calls for every request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errorResponse, errorResponseWithMessage } from '../wire/error-response.js';
import type { WireResponse } from '../wire/types.js';
import type { Registry } from '../registry/registry.js';
import type { RouteMatch } from '../router/router.js';
import type { FunctionVersion } from '../registry/registry.js';
import { RequestContext } from './context.js';
import { hasBody } from './body.js';
import { readContextBody } from './middleware.js';
import { newRequestId } from './request-id.js';

/** State the request path reads: swapped as a whole on reload. */
export interface DispatchState {
  registry: Registry;
  /** False once shutdown began: /healthz says 503 and new requests get 503. */
  accepting: boolean;
  /** Requests between arrival and their response being handed to the socket. */
  active: number;
}

const BAD_URL: RouteMatch<FunctionVersion> = { kind: 'not-found' };

// hot path -- change with care
/** Run the function `c.match` found (or produce the 404/405/health answer). */
export function runFunction(state: DispatchState, c: RequestContext): void | Promise<void> {
  const m = c.match;
  switch (m.kind) {
    case 'found': {
      if (c.registry !== state.registry) {
        // A reload swapped the registry while this request's body was read: route it again
        // against the new one rather than call a runtime that is draining.
        c.registry = state.registry;
        c.match = state.registry.router.match(c.method, c.path);
        return runFunction(state, c);
      }
      if (c.body === undefined) {
        // No bodyLimit middleware in the chain: still enforce the function's limit.
        if (!hasBody(c.req)) c.body = null;
        else {
          return readContextBody(c, m.fn.fn.manifest.limits.maxBodyBytes).then((ok) => (ok ? runFunction(state, c) : undefined));
        }
      }
      const wire = { method: c.method, url: 'http://' + hostOf(c.req) + m.path + c.search, headers: c.req.rawHeaders, body: c.body };
      const fn = m.fn;
      const out = fn.runtime.invoke({ requestId: c.requestId, wire, handler: m.handler, params: m.params });
      if (out instanceof Promise) {
        return out.then((r) => {
          c.response = r;
          fn.stats.record(r.status, performance.now() - c.startTime);
        });
      }
      // Answered synchronously (inline runtime): no promise hop at all.
      c.response = out;
      fn.stats.record(out.status, performance.now() - c.startTime);
      return;
    }
    case 'health':
      c.response = state.accepting
        ? { status: 200, headers: ['content-type', 'text/plain; charset=utf-8'], body: 'ok\n' }
        : errorResponse('FEZZ_ERR_SHUTTING_DOWN', []);
      return;
    case 'method-not-allowed':
      c.response = errorResponse('FEZZ_ERR_METHOD_NOT_ALLOWED', [c.method, c.path], ['allow', m.allow.join(', ')]);
      return;
    case 'function-not-found':
      c.response = errorResponse('FEZZ_ERR_FUNCTION_NOT_FOUND', [m.name]);
      return;
    case 'not-found':
      c.response = errorResponse('FEZZ_ERR_ROUTE_NOT_FOUND', [c.method, c.path]);
      return;
  }
}

/** The Host header, or `localhost`; read from rawHeaders so Node never builds `req.headers`. */
function hostOf(req: IncomingMessage): string {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 4 && (n === 'Host' || n === 'host' || n.toLowerCase() === 'host')) return raw[i + 1]!;
  }
  return 'localhost';
}

/**
 * Build the per-request entry point: make the context, match the route against the
 * registry current at arrival, run the chain, write the response.
 */
export function createRequestHandler(state: DispatchState, chain: (c: RequestContext) => void | Promise<void>, logger: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  // hot path -- change with care
  return function handleRequest(req, res) {
    const start = performance.now();
    const method = req.method ?? 'GET';
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* / */) {
      // absolute-form (proxies) or garbage
      try { const u = new URL(url); url = u.pathname + u.search; } catch { url = '/'; }
    }
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const search = q === -1 ? '' : url.slice(q);
    let match: RouteMatch<FunctionVersion>;
    try {
      match = state.registry.router.match(method, path);
    } catch {
      match = BAD_URL;
    }
    const c = new RequestContext(req, res, method, path, search, match, state.registry, start);
    c.requestId = newRequestId();
    // Counted until the response is handed to the socket (respond); the drain on shutdown
    // then waits for the connections to go idle, so no per-response listener is needed.
    state.active++;
    if (!state.accepting && match.kind !== 'health') {
      c.response = errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], ['retry-after', '1']);
      c.closeConnection = true;
      respond(state, c, logger);
      return;
    }
    let r: void | Promise<void>;
    try {
      r = chain(c);
    } catch (err) {
      fail(state, c, err, logger);
      return;
    }
    if (r instanceof Promise) r.then(() => respond(state, c, logger), (err) => fail(state, c, err, logger));
    else respond(state, c, logger);
  };
}

/** The request is done: write its response and stop counting it as active. */
function respond(state: DispatchState, c: RequestContext, logger: Logger): void {
  state.active--;
  writeResponse(c, logger);
}

function fail(state: DispatchState, c: RequestContext, err: unknown, logger: Logger): void {
  logger.error({ requestId: c.requestId, err }, 'middleware failed');
  c.response = errorResponseWithMessage(500, 'FEZZ_ERR_HANDLER_THREW', 'Internal error in the host middleware');
  respond(state, c, logger);
}

const INTERNAL: WireResponse = { status: 500, headers: [], body: null };

// hot path -- change with care
/** Write `c.response` with `x-request-id`, `content-length` and middleware headers. */
export function writeResponse(c: RequestContext, logger: Logger): void {
  const res = c.res;
  if (res.headersSent || res.destroyed) return;
  const r = c.response ?? INTERNAL;
  if (c.requestId === '') c.requestId = newRequestId();
  const body = r.body;
  let headers = r.headers;
  // The host frames the body itself: drop framing headers a function may have set.
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!.length;
    if ((n === 14 || n === 17 || n === 10) && isFraming(headers[i]!)) { headers = stripFraming(headers); break; }
  }
  const length = body === null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  headers.push('x-request-id', c.requestId, 'content-length', String(length));
  if (c.extraHeaders.length > 0) headers.push(...c.extraHeaders);
  if (c.closeConnection) headers.push('connection', 'close');
  try {
    res.writeHead(r.status, headers);
  } catch (err) {
    // Invalid header name or value from the function.
    const fnKey = c.match.kind === 'found' ? c.match.fn.fn.key : '?';
    logger.error({ requestId: c.requestId, fn: fnKey, err }, 'function returned invalid response headers');
    const e = errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [fnKey, `invalid headers (${(err as Error).message})`]);
    const text = e.body as string;
    res.writeHead(500, [...e.headers, 'x-request-id', c.requestId, 'content-length', String(Buffer.byteLength(text))]);
    res.end(text);
    return;
  }
  res.end(body);
}

function isFraming(name: string): boolean {
  const l = name.toLowerCase();
  return l === 'content-length' || l === 'transfer-encoding' || l === 'connection';
}

function stripFraming(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!isFraming(headers[i]!)) out.push(headers[i]!, headers[i + 1]!);
  return out;
}
