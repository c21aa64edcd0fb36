/**
 * The request path: route -> middleware chain -> run the function -> write the response.
 * `handleRequest` is what the public listener calls for every request.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errorResponse, errorResponseWithMessage } from '../wire/error-response.js';
import type { BodyStream, WireRequest, WireResponse } from '../wire/types.js';
import { pipeBodyStream } from './write-stream.js';
import type { Registry } from '../registry/registry.js';
import type { RouteMatch } from '../router/router.js';
import type { FunctionVersion } from '../registry/registry.js';
import { RequestContext } from './context.js';
import { hasBody } from './body.js';
import { readContextBody } from './middleware.js';
import { newRequestId } from './request-id.js';
import { fezzError, statusText } from '../errors.js';
import type { HostCounters } from '../observability/host-counters.js';
import type { TrustProxy } from '../config/options.js';

/** State the request path reads: swapped as a whole on reload. */
export interface DispatchState {
  registry: Registry;
  /**
   * True from the start of shutdown: /healthz answers 503 and every response carries
   * `connection: close`, while requests are still served (the drain, host.ts `close`).
   */
  draining: boolean;
  /** False once the drain is over (the instances are stopping): new requests get 503. */
  accepting: boolean;
  /** Requests between arrival and their response being handed to the socket. */
  active: number;
  /** Limits that fire on the listener, counted here. */
  readonly counters: HostCounters;
  /** A request body with no bytes for this long is dropped with 408, in ms. */
  readonly bodyTimeoutMs: number;
  /** A response not making progress to a client for this long is cut, in ms. */
  readonly sendTimeoutMs: number;
  /**
   * Which proxies to believe about the client's address and scheme (options `trustProxy`);
   * absent or null: none (the peer is the client, `request.url` is `http:`).
   */
  readonly trustProxy?: TrustProxy | null;
}

/** Per-connection state, kept on the socket itself (no map, no per-request listener). */
interface TrackedSocket extends Socket {
  /** The request this connection waits on, until its response is handed to the socket. */
  [kCurrent]?: RequestContext | null;
  /** A malformed request arrived behind one still in flight: its answer goes out after it. */
  [kErrorAfter]?: string | null;
  /** Upgraded to a WebSocket (src/websocket/gateway.ts): never an idle connection to close for room. */
  [kUpgraded]?: true;
}
const kCurrent = Symbol('fezz.current');
const kErrorAfter = Symbol('fezz.errorAfter');
const kUpgraded = Symbol('fezz.upgraded');

/**
 * Mark `socket` as taken by a WebSocket upgrade: the connection cap ({@link connectionTracker})
 * never closes it to make room, as it does an idle keep-alive connection.
 */
export function markUpgraded(socket: Socket): void {
  (socket as TrackedSocket)[kUpgraded] = true;
}

/**
 * The public listener's 'connection' handler: watch each connection, and keep at most
 * `maxConnections` open. Past the cap the oldest idle connection (no request in flight, no
 * response being written, not a WebSocket: an idle keep-alive, or a client that never finished
 * its request head) is closed to make room, as nginx reuses keep-alive connections; only when every one
 * is busy is the new connection closed. So a flood of idle connections cannot lock out
 * `/healthz` or real clients, and the descriptors above the cap stay free for the admin
 * listener, plugins, workers and files. Each drop is counted and logged (at most every 10 s).
 *
 * A connection that closes with a request still waiting on its function has the request
 * cancelled by the function's runtime (dropped from the queue, or `request.signal` aborted
 * and its slot freed). One listener per connection: the request path pays nothing for it.
 */
export function connectionTracker(state: DispatchState, maxConnections: number, logger: Logger): ConnectionTracker {
  const open = new Set<TrackedSocket>(); // insertion order = age
  let lastLog = 0;
  let lastConnection = -Infinity;
  const dropped = (): void => {
    state.counters.connectionsDropped++;
    const now = performance.now();
    if (now - lastLog >= 10_000) {
      lastLog = now;
      logger.warn({ maxConnections, dropped: state.counters.connectionsDropped }, 'connection limit reached: closing idle connections to make room (--max-connections)');
    }
  };
  const onConnection = function onConnection(socket: Socket): void {
    const sock = socket as TrackedSocket;
    lastConnection = performance.now();
    if (open.size >= maxConnections) {
      let victim: TrackedSocket | null = null;
      for (const s of open) {
        const busy = (s[kCurrent] !== undefined && s[kCurrent] !== null) || s.writableLength > 0 || s[kUpgraded] === true;
        if (!busy) { victim = s; break; }
      }
      dropped();
      if (victim === null) { sock.destroy(); return; }
      open.delete(victim);
      victim.destroy();
    }
    open.add(sock);
    sock.once('close', () => { open.delete(sock); onConnectionClose.call(sock, state); });
  };
  return Object.assign(onConnection, {
    get open(): number { return open.size; },
    get lastConnection(): number { return lastConnection; },
    closeQuiet(server: Server): number {
      const between = betweenMessages(server);
      for (const s of open) if (isQuiet(s, between)) { open.delete(s); s.destroy(); }
      return open.size;
    },
  });
}

/** The public listener's 'connection' handler, and what shutdown needs of the connections. */
export interface ConnectionTracker {
  (socket: Socket): void;
  /** Connections open now. */
  readonly open: number;
  /** When the last connection was accepted (`performance.now()`), -Infinity before the first. */
  readonly lastConnection: number;
  /**
   * Close every connection of `server` that is quiet ({@link isQuiet}): nothing of a request
   * read, no request in flight, no response being written. Returns how many stay open.
   */
  closeQuiet(server: Server): number;
}

/**
 * The sockets whose HTTP parser is between two messages, from Node's own connection list
 * (internal, the one `closeIdleConnections()` reads; Node 18 to 24 at least), or null if
 * this Node has none.
 */
function betweenMessages(server: Server): Set<Socket> | null {
  const k = Object.getOwnPropertySymbols(server).find((sym) => sym.description === 'http.server.connections');
  const list = k === undefined ? undefined : (server as unknown as Record<symbol, { idle?: () => Array<{ socket?: Socket }> } | undefined>)[k];
  if (list === undefined || typeof list.idle !== 'function') return null;
  const out = new Set<Socket>();
  for (const p of list.idle()) if (p.socket !== undefined) out.add(p.socket);
  return out;
}

/**
 * A connection that can be closed without cutting a request: no request of ours on it, no
 * response (or error answer) still going out, no bytes read and not yet parsed, and its
 * parser between two messages (for a kept-alive connection: not one byte of a next request
 * read). A connection that never had a request counts as busy (its first request may be on
 * the way: shutdown cuts it only at the grace deadline), as in Node's own
 * `closeIdleConnections()`. Bytes still in the kernel's buffer cannot be seen: that window
 * is what the drain delay closes (the client has stopped using the connection by then).
 */
function isQuiet(s: TrackedSocket, between: Set<Socket> | null): boolean {
  if (s.destroyed) return true;
  if ((s[kCurrent] ?? null) !== null || (s[kErrorAfter] ?? null) !== null) return false;
  if (s.writableLength > 0 || s.readableLength > 0) return false;
  const msg = (s as unknown as { _httpMessage?: { finished?: boolean } | null })._httpMessage;
  if (msg !== undefined && msg !== null && msg.finished !== true) return false; // a streamed response still going out
  // Unknown parser state (a Node without the list): busy, cut at the grace deadline.
  return between !== null && between.has(s);
}

function onConnectionClose(this: TrackedSocket, state: DispatchState): void {
  const c = this[kCurrent];
  if (c === undefined || c === null) return;
  this[kCurrent] = null;
  const inv = c.invocation;
  if (inv === null || c.match.kind !== 'found') return;
  const fn = c.match.fn;
  fn.stats.clientAborts++;
  fn.runtime.cancel?.(inv);
  state.counters.logLimit('client-gone', fn.stats.clientAborts, { fn: fn.fn.key, requestId: c.requestId, metric: 'fezz_client_aborts_total' });
}

/**
 * The public listener's `clientError` handler (a malformed request, headers too large, a
 * head that did not arrive in time): answer with the matching 4xx and close the connection.
 * If a request is still in flight on the connection (pipelining), its response goes out
 * first and this answer after it, so a client never pairs the error with the earlier request.
 */
export function onClientError(counters: HostCounters, err: NodeJS.ErrnoException & { code?: string }, socket: Socket): void {
  const sock = socket as TrackedSocket;
  if (sock.destroyed) return;
  const code = err.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE' || !sock.writable) { sock.destroy(); return; }
  const [reason, e] =
    code === 'HPE_HEADER_OVERFLOW' ? ['headers-too-large', errorResponse('FEZZ_ERR_HEADERS_TOO_LARGE', [])] as const
    : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? ['request-timeout', errorResponse('FEZZ_ERR_REQUEST_TIMEOUT', [])] as const
    : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? ['bad-request', errorResponse('FEZZ_ERR_BODY_TOO_LARGE', ['(chunk extensions)'])] as const
    : ['bad-request', errorResponse('FEZZ_ERR_BAD_REQUEST', [`malformed HTTP request (${code || err.message})`])] as const;
  counters.clientError(reason);
  const text = closingAnswer(e);
  const c = sock[kCurrent];
  if (c !== undefined && c !== null) { sock[kErrorAfter] = text; return; }
  // Anything already written (a response) is followed by this answer; then the connection ends.
  sock.end(text);
}

/**
 * Host-made error response `e` (JSON body) as raw HTTP/1.1 bytes that close the connection:
 * for answers written to a socket no ServerResponse owns (a malformed request, a body read
 * before an upgrade is handed back).
 */
export function closingAnswer(e: WireResponse): string {
  const body = e.body as string;
  return `HTTP/1.1 ${e.status} ${statusText(e.status)}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
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
          return readContextBody(c, m.fn.fn.manifest.limits.maxBodyBytes, state.bodyTimeoutMs).then((ok) => (ok ? runFunction(state, c) : undefined));
        }
      }
      const wire: WireRequest = { method: c.method, url: originOf(state, c.req) + m.path + c.search, headers: c.req.rawHeaders, body: c.body };
      if (c.bodyStream !== null) wire.bodyStream = c.bodyStream;
      const fn = m.fn;
      const inv = { requestId: c.requestId, wire, handler: m.handler, params: m.params, slot: null };
      const out = fn.runtime.invoke(inv);
      if (out instanceof Promise) {
        c.invocation = inv;
        return out.then((r) => {
          c.response = c.override ?? r;
          c.invocation = null;
          if (r.status !== 499) fn.stats.record(r.status, performance.now() - c.startTime);
        });
      }
      // Answered synchronously (inline runtime): no promise hop at all.
      c.response = out;
      fn.stats.record(out.status, performance.now() - c.startTime);
      return;
    }
    case 'health':
      c.response = state.accepting && !state.draining
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

// hot path -- change with care
/**
 * `request.url`'s origin (`http://<Host header>`, `localhost` without one), and the client's
 * address, in one pass over the raw headers (so Node never builds `req.headers`). The address
 * is appended to `req.rawHeaders` as `cf-connecting-ip` and `x-real-ip`, after dropping any
 * the client sent under those names: only the host says who the client is. It is the
 * socket's peer unless `state.trustProxy` trusts it as a proxy, then it comes from
 * `x-forwarded-for` and the scheme from `x-forwarded-proto` (see HostOptions.trustProxy).
 * Call once per request (it appends).
 */
export function originOf(state: DispatchState, req: IncomingMessage): string {
  const raw = req.rawHeaders;
  const trust = state.trustProxy ?? null;
  let host: string | null = null;
  let spoofed = false;
  let xff: string | null = null;
  let xfp: string | null = null;
  // Names are compared by length first: most headers cost one integer compare.
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    switch (n.length) {
      case 4:
        if (host === null && (n === 'Host' || n === 'host' || n.toLowerCase() === 'host')) host = raw[i + 1]!;
        break;
      case 9:
        if (n.toLowerCase() === 'x-real-ip') spoofed = true;
        break;
      case 16:
        if (n.toLowerCase() === 'cf-connecting-ip') spoofed = true;
        break;
      case 15:
        // Several x-forwarded-for lines are one list, in order (RFC 9110 5.3).
        if (trust !== null && n.toLowerCase() === 'x-forwarded-for') xff = xff === null ? raw[i + 1]! : `${xff},${raw[i + 1]!}`;
        break;
      case 17:
        if (trust !== null && xfp === null && n.toLowerCase() === 'x-forwarded-proto') xfp = raw[i + 1]!;
        break;
    }
  }
  if (spoofed) dropHeaders(raw, 'cf-connecting-ip', 'x-real-ip');
  let origin = 'http://';
  let ip = plainAddress(req.socket.remoteAddress);
  if (trust !== null && ip !== null && (trust.proxies === null || trust.proxies.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6'))) {
    // The peer is a trusted proxy: believe what it says.
    if (xff !== null) ip = forwardedClient(trust, ip, xff);
    if (xfp !== null) {
      const comma = xfp.indexOf(',');
      const proto = (comma === -1 ? xfp : xfp.slice(0, comma)).trim().toLowerCase();
      if (proto === 'https') origin = 'https://';
    }
  }
  if (ip !== null) raw.push('cf-connecting-ip', ip, 'x-real-ip', ip);
  return origin + (host ?? 'localhost');
}

/**
 * The client behind trusted proxies: walk `x-forwarded-for` from the right (the entry the
 * nearest proxy added) while the hops are proxies: `trust.hops` of them, or while the address
 * is in `trust.proxies`. An entry that is not an IP address ends the walk (the address after
 * it stands). Returns `peer` when the header has no usable entry.
 */
function forwardedClient(trust: TrustProxy, peer: string, xff: string): string {
  const entries = xff.split(',');
  let client = peer;
  let hops = trust.hops;
  for (let j = entries.length - 1; j >= 0; j--) {
    if (trust.proxies === null) {
      if (hops-- <= 0) break;
    } else if (!trust.proxies.check(client, isIP(client) === 4 ? 'ipv4' : 'ipv6')) {
      break;
    }
    const a = plainAddress(stripPort(entries[j]!.trim()));
    if (a === null || isIP(a) === 0) break;
    client = a;
  }
  return client;
}

/** `1.2.3.4:80` -> `1.2.3.4`, `[::1]:80` -> `::1` (some proxies add the port); anything else as is. */
function stripPort(a: string): string {
  if (a.charCodeAt(0) === 91 /* [ */) {
    const end = a.indexOf(']');
    return end === -1 ? a : a.slice(1, end);
  }
  const colon = a.indexOf(':');
  return colon !== -1 && colon === a.lastIndexOf(':') ? a.slice(0, colon) : a;
}

/** An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, a dual-stack listener's peers) as IPv4. */
function plainAddress(a: string | undefined): string | null {
  if (a === undefined || a === '') return null;
  return a.length > 7 && a.charCodeAt(0) === 58 /* : */ && a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

/** Remove every header named `a` or `b` (lower case) from flat `raw`, in place. */
function dropHeaders(raw: string[], a: string, b: string): void {
  let w = 0;
  for (let r = 0; r < raw.length; r += 2) {
    const l = raw[r]!.toLowerCase();
    if (l === a || l === b) continue;
    raw[w++] = raw[r]!;
    raw[w++] = raw[r + 1]!;
  }
  raw.length = w;
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
    (req.socket as TrackedSocket)[kCurrent] = c;
    if ((!state.accepting || (state.draining && retriedElsewhere(method, req.rawHeaders))) && match.kind !== 'health') {
      c.response = errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], ['retry-after', '1']);
      c.closeConnection = true;
      respond(state, c, logger);
      return;
    }
    if (hostCount(req.rawHeaders) > 1) {
      // RFC 9112 3.2: a request with more than one Host header field gets 400.
      state.counters.clientError('duplicate-host');
      c.response = errorResponse('FEZZ_ERR_BAD_REQUEST', ['more than one Host header']);
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
  const sock = c.req.socket as TrackedSocket;
  if (sock[kCurrent] === c) sock[kCurrent] = null;
  if (c.response !== null && c.response.status === 408) state.counters.clientError('body-stalled');
  // A streamed body the function did not read to the end: close the connection after the
  // response rather than read (and discard) the rest on the host's time.
  if (c.bodyStream !== null && !c.bodyStream.done) c.closeConnection = true;
  // Shutting down: the client opens its next connection elsewhere (to another host behind
  // the load balancer), and this one closes once the response is out.
  if (state.draining) c.closeConnection = true;
  writeResponse(c, logger, state.counters);
  const after = sock[kErrorAfter];
  if (after !== undefined && after !== null) {
    sock[kErrorAfter] = null;
    c.res.once('finish', () => { if (!sock.destroyed) sock.end(after); });
  } else if (sock.writableLength > 0 && !sock.destroyed && typeof sock.setTimeout === 'function') {
    // (Not on the stream Node >= 26 hands over for an upgrade whose body was still arriving:
    // websocket/gateway.ts serves that one request on it, then the connection closes.)
    // Part of the response is still waiting for the client to read it: a client that stops
    // reading is cut off after sendTimeoutMs without progress (Node re-arms the keep-alive
    // timeout once the response is out).
    sock.setTimeout(state.sendTimeoutMs);
    if (sock.listenerCount('timeout') < 2) sock.once('timeout', () => onSendTimeout(state, sock));
  }
}

function onSendTimeout(state: DispatchState, sock: Socket): void {
  if (sock.writableLength === 0) return; // an idle keep-alive timing out: Node closes it
  state.counters.clientError('send-timeout');
  sock.destroy();
}

/**
 * The request header a load balancer sets to say it re-sends a safe request that gets a 503
 * to another server (nginx: `proxy_set_header Fezz-Retries idempotent` with
 * `proxy_next_upstream http_503`). While the host drains, such a GET, HEAD or OPTIONS gets
 * 503 (the function does not run): the balancer retries it elsewhere and, through its passive
 * health checks (`max_fails`), stops sending this host anything, before the listener closes.
 */
export const RETRIES_HEADER = 'fezz-retries';

/** A safe request from a balancer that retries it elsewhere on a 503 ({@link RETRIES_HEADER}). */
function retriedElsewhere(method: string, raw: string[]): boolean {
  if (method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS') return false;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 12 && raw[i]!.toLowerCase() === RETRIES_HEADER) return raw[i + 1]!.trim().toLowerCase() === 'idempotent';
  }
  return false;
}

/** How many Host header fields the request has (rawHeaders: Node keeps only the first in `headers`). */
export function hostCount(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) n++;
  }
  return n;
}

function fail(state: DispatchState, c: RequestContext, err: unknown, logger: Logger): void {
  logger.error({ requestId: c.requestId, err }, 'middleware failed');
  c.response = errorResponseWithMessage(500, 'FEZZ_ERR_HANDLER_THREW', 'Internal error in the host middleware');
  respond(state, c, logger);
}

const INTERNAL: WireResponse = { status: 500, headers: [], body: null };

// hot path -- change with care
/** Write `c.response` with `x-request-id`, `content-length` and middleware headers. */
export function writeResponse(c: RequestContext, logger: Logger, counters?: HostCounters): void {
  const res = c.res;
  if (res.headersSent || res.destroyed) return;
  const r = c.response ?? INTERNAL;
  if (c.requestId === '') c.requestId = newRequestId();
  const status = r.status;
  if (status === 0) { networkError(c, logger); return; }
  const body = r.body;
  let headers = r.headers;
  // The host frames the body itself: drop framing headers a function may have set.
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!.length;
    if ((n === 14 || n === 17 || n === 10) && isFraming(headers[i]!)) { headers = stripFraming(headers); break; }
  }
  // RFC 9110 8.6, 15.3.5, 15.4.5: a 204 or 304 has no content and no Content-Length (as
  // with plain node:http); whatever body a function or plugin gave is dropped.
  const noContent = status === 204 || status === 304;
  const stream = r.stream;
  // A streamed body has no length: Node frames it with transfer-encoding: chunked.
  if (noContent || stream !== undefined) headers.push('x-request-id', c.requestId);
  else headers.push('x-request-id', c.requestId, 'content-length', String(body === null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
  if (c.extraHeaders.length > 0) headers.push(...c.extraHeaders);
  if (c.closeConnection) headers.push('connection', 'close');
  try {
    // A function's own reason phrase (`new Response(body, { statusText })`) is kept.
    if (r.statusText === undefined) res.writeHead(status, headers);
    else res.writeHead(status, r.statusText, headers);
  } catch (err) {
    // Invalid header name or value (or status text) from the function: a 500 with its own
    // reason phrase (writeHead already took the function's).
    const fnKey = c.match.kind === 'found' ? c.match.fn.fn.key : '?';
    logger.error({ requestId: c.requestId, fn: fnKey, err }, 'function returned invalid response headers');
    const e = errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [fnKey, `invalid headers or status text (${(err as Error).message})`]);
    const text = e.body as string;
    res.statusMessage = statusText(500);
    res.writeHead(500, statusText(500), [...e.headers, 'x-request-id', c.requestId, 'content-length', String(Buffer.byteLength(text))]);
    res.end(text);
    return;
  }
  if (stream !== undefined) {
    if (noContent || c.method === 'HEAD') { stream.cancel('no content'); res.end(); }
    else writeStreamed(c, stream, logger, counters);
    return;
  }
  if (noContent) res.end();
  else res.end(body);
}

/** Network errors (Response.error()) since the last log line, and when that was (performance.now()). */
let networkErrors = 0;
let networkErrorLogged = -Infinity;

/**
 * The function answered `Response.error()`, a network error: the client sees the connection
 * reset (TCP RST), as a browser's fetch() would see a network failure, not an HTTP answer.
 * Counted as status 0 in `fezz_requests_total`; logged at most every 10 s with the count.
 */
function networkError(c: RequestContext, logger: Logger): void {
  networkErrors++;
  const now = performance.now();
  if (now - networkErrorLogged >= 10_000) {
    const fnKey = c.match.kind === 'found' ? c.match.fn.fn.key : '?';
    logger.warn({ requestId: c.requestId, fn: fnKey, count: networkErrors }, 'function returned Response.error() (a network error): connection reset (logged at most every 10 s, with the count since the last line)');
    networkErrors = 0;
    networkErrorLogged = now;
  }
  const sock = c.res.socket;
  if (sock === null || sock.destroyed) return;
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

/** Send the head now, then the stream's chunks as they come (write-stream.ts). */
function writeStreamed(c: RequestContext, stream: BodyStream, logger: Logger, counters: HostCounters | undefined): void {
  const res = c.res;
  res.flushHeaders();
  // The first bytes of an event stream must not wait for Nagle's algorithm.
  res.socket?.setNoDelay(true);
  const found = c.match.kind === 'found' ? c.match.fn : null;
  const fnKey = found !== null ? found.fn.key : '?';
  const limits = found !== null ? found.fn.manifest.limits : { streamIdleMs: 30_000, streamMaxMs: 15 * 60_000 };
  pipeBodyStream(res, stream, { idleMs: limits.streamIdleMs, maxMs: limits.streamMaxMs }, (end, err) => {
    counters?.streamEnded(fnKey, end);
    // The head is out: the status cannot say it, so the connection is reset and the code goes to the log.
    if (end === 'error') {
      const e = fezzError('FEZZ_ERR_STREAM_FAILED', [fnKey, err instanceof Error ? err.message : String(err)]);
      logger.error({ requestId: c.requestId, fn: fnKey, code: e.code, err }, 'response stream failed mid-way: connection reset');
    } else if (end !== 'complete' && end !== 'client') {
      const e = end === 'max' ? fezzError('FEZZ_ERR_STREAM_MAX', [fnKey, limits.streamMaxMs]) : fezzError('FEZZ_ERR_STREAM_IDLE', [fnKey, limits.streamIdleMs]);
      logger.warn({ requestId: c.requestId, fn: fnKey, code: e.code, waitingOn: end === 'send' ? 'client' : end === 'idle' ? 'function' : undefined }, `${e.message}: connection reset`);
    }
  });
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
