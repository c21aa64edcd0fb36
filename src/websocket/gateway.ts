/**
 * WebSocket upgrades on the public listener (docs/websockets.md): the `'upgrade'` handler of
 * the host's HTTP server. A request with `Upgrade: websocket` is routed like any request,
 * checked (handshake, the function's runtime, `limits.maxWebSockets`) and handed to its
 * function with `WireRequest.upgrade`; when the function answers 101 with a WebSocket, the
 * handshake is completed by the `ws` library and the client's socket is joined to the
 * function's side ({@link WebSocketEnd}), with the host's limits: the largest message
 * (`limits.webSocketMaxMessageBytes`, 1009), the idle timeout (`limits.webSocketIdleMs`,
 * 1001), flow control both ways, and the close codes of the table in docs/websockets.md.
 * Any other answer is written as an ordinary response, and the connection closes after it.
 *
 * Requests with another `Upgrade` (e.g. `h2c`) are served as ordinary requests, as if the
 * header were not there: they are handed back to the HTTP parser ({@link
 * WebSocketGateway.onUpgrade}). (Node 24's `shouldUpgradeCallback` would do it, but it drops
 * a request pipelined behind such an upgrade; the hand-back keeps it, on every Node.)
 *
 * The upgrade path skips the host's middleware chain (access log, CORS, `use()`): those are
 * written for requests that end in a response.
 */
import http, { type IncomingMessage, type Server } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { errorResponse } from '../wire/error-response.js';
import type { WireRequest, WireResponse } from '../wire/types.js';
import {
  CLOSE_GOING_AWAY, closeReason, sendableCloseCode,
  type WebSocketCloseReason, type WebSocketData, type WebSocketEnd,
} from '../wire/websocket.js';
import { RequestContext } from '../host/context.js';
import { closingAnswer, hostCount, markUpgraded, originOf, runFunction, writeResponse, type DispatchState } from '../host/dispatch.js';
import { newRequestId } from '../host/request-id.js';
import type { HostCounters } from '../observability/host-counters.js';
import type { FunctionVersion } from '../registry/registry.js';
import type { RouteMatch } from '../router/router.js';
import type { InvokeRequest } from '../runtime/types.js';
import type { SocketBook } from './book.js';

/**
 * How long the host waits for the client's answer to a close frame before it drops the
 * connection, in ms (the `ws` default is 30 s; a host that is shutting down should not wait that long).
 */
const CLOSE_TIMEOUT_MS = 5000;

/** `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 4.1). */
const KEY_RE = /^[+/0-9A-Za-z]{22}==$/;

const kProtocol = Symbol('fezz.ws.protocol');
const kHeaders = Symbol('fezz.ws.headers');
const kReinjected = Symbol('fezz.ws.reinjected');

interface UpgradeRequest extends IncomingMessage {
  [kProtocol]?: string | false;
  [kHeaders]?: string[];
}

/** Response headers of a 101 that the handshake itself sets (the function's values are not used). */
const HANDSHAKE_HEADERS = new Set(['connection', 'upgrade', 'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions',
  'content-length', 'transfer-encoding', 'keep-alive', 'x-request-id']);

/** Whether `req` asks for a WebSocket (`Upgrade: websocket`, any case, among other protocols or alone). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === 7 && n.toLowerCase() === 'upgrade') {
      for (const token of raw[i + 1]!.split(',')) if (token.trim().toLowerCase() === 'websocket') return true;
    }
  }
  return false;
}

/** What a gateway needs of its host. */
export interface GatewayOptions {
  state: DispatchState;
  logger: Logger;
  counters: HostCounters;
  /** The public HTTP server (other upgrades are handed back to it). */
  server: Server;
}

/** One joined socket, as the gateway tracks it (for shutdown). */
interface Joined {
  ws: WebSocket;
  end: WebSocketEnd;
}

export class WebSocketGateway {
  readonly #o: GatewayOptions;
  /** One `ws` server per largest-message setting (functions differ), made on first use. */
  readonly #servers = new Map<number, WebSocketServer>();
  readonly #joined = new Set<Joined>();
  /** Set by {@link closeAll}: a socket joined later (its upgrade was running) is closed at once. */
  #closing = false;

  constructor(options: GatewayOptions) {
    this.#o = options;
  }

  /** WebSockets open on this host now. */
  get open(): number { return this.#joined.size; }

  /** The public server's `'upgrade'` listener. */
  readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const sock = socket as Socket;
    if (!isWebSocketUpgrade(req)) { this.#reinject(req, sock, head); return; }
    // Until `ws` takes the socket, its errors (a reset) must not be unhandled 'error' events.
    sock.on('error', onEarlyError);
    // A keep-alive or send timeout of an earlier request on this connection must not cut the socket.
    sock.setTimeout(0);
    markUpgraded(sock);
    try {
      this.#upgrade(req as UpgradeRequest, sock, head);
    } catch (err) {
      this.#o.logger.error({ err }, 'WebSocket upgrade failed');
      sock.destroy();
    }
  };

  /**
   * Shutdown: close every WebSocket with 1001 (the function's `close` event fires too). The
   * connections then close as their clients answer (or after CLOSE_TIMEOUT_MS).
   */
  closeAll(reason = 'host shutting down'): void {
    this.#closing = true;
    for (const j of [...this.#joined]) j.end.terminate(CLOSE_GOING_AWAY, reason, 'shutdown');
  }

  /** Past the shutdown deadline: drop every connection still open. */
  terminateAll(): void {
    for (const j of [...this.#joined]) j.ws.terminate();
  }

  #upgrade(req: UpgradeRequest, socket: Socket, head: Buffer): void {
    const { state, logger } = this.#o;
    const start = performance.now();
    const requestId = newRequestId();
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* / */) {
      try { const u = new URL(url); url = u.pathname + u.search; } catch { url = '/'; }
    }
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const search = q === -1 ? '' : url.slice(q);
    const method = req.method ?? 'GET';
    let match: RouteMatch<FunctionVersion>;
    try {
      match = state.registry.router.match(method, path);
    } catch {
      match = { kind: 'not-found' };
    }
    const c = new RequestContext(req, new http.ServerResponse(req), method, path, search, match, state.registry, start);
    c.requestId = requestId;
    c.closeConnection = true;
    if (!state.accepting || state.draining) {
      // A new WebSocket on a host about to stop would be cut at once: the client reconnects elsewhere.
      this.#answer(c, socket, errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], ['retry-after', '1']));
      return;
    }
    if (hostCount(req.rawHeaders) > 1) {
      state.counters.clientError('duplicate-host');
      this.#answer(c, socket, errorResponse('FEZZ_ERR_BAD_REQUEST', ['more than one Host header']));
      return;
    }
    if (match.kind !== 'found') {
      // 404, 405, /healthz: the answer an ordinary request gets.
      void runFunction(state, c);
      this.#answer(c, socket, c.response);
      return;
    }
    const bad = handshakeProblem(req, method);
    if (bad !== null) {
      state.counters.clientError('websocket-handshake');
      this.#answer(c, socket, errorResponse('FEZZ_ERR_WEBSOCKET_HANDSHAKE', [bad], bad.includes('Version') ? ['sec-websocket-version', '13'] : undefined));
      return;
    }
    const fn = match.fn;
    const book = fn.runtime.webSockets;
    if (book === undefined) {
      state.counters.clientError('websocket-unsupported');
      this.#answer(c, socket, errorResponse('FEZZ_ERR_WEBSOCKET_UNSUPPORTED', [fn.fn.key, fn.fn.manifest.runtime]));
      return;
    }
    if (!book.reserve()) {
      const limits = fn.fn.manifest.limits;
      state.counters.logLimit('websocket-cap', book.closesOf('refused-cap'), { fn: fn.fn.key, maxWebSockets: limits.maxWebSockets, metric: 'fezz_websocket_closes_total' });
      this.#answer(c, socket, errorResponse('FEZZ_ERR_WEBSOCKET_LIMIT', [fn.fn.key, limits.maxWebSockets], ['retry-after', '1']));
      return;
    }
    const wire: WireRequest = { method, url: originOf(state, req) + match.path + search, headers: req.rawHeaders, body: null, upgrade: 'websocket' };
    const inv: InvokeRequest = { requestId, wire, handler: match.handler, params: match.params, slot: null };
    // Counted as in flight until answered, as an ordinary request (the shutdown drain waits for it).
    state.active++;
    let answered = false;
    const onGone = (): void => { if (!answered) fn.runtime.cancel?.(inv); };
    socket.once('close', onGone);
    const done = (r: WireResponse): void => {
      answered = true;
      state.active--;
      socket.off('close', onGone);
      this.#answered(c, socket, head, fn, book, r);
    };
    let out: WireResponse | Promise<WireResponse>;
    try {
      out = fn.runtime.invoke(inv);
    } catch (err) {
      logger.error({ requestId, fn: fn.fn.key, err }, 'WebSocket upgrade: the runtime failed');
      out = errorResponse('FEZZ_ERR_HANDLER_THREW', [fn.fn.key, 'the runtime failed']);
    }
    if (out instanceof Promise) out.then(done, (err: unknown) => { logger.error({ requestId, fn: fn.fn.key, err }, 'WebSocket upgrade: the runtime failed'); done(errorResponse('FEZZ_ERR_HANDLER_THREW', [fn.fn.key, 'the runtime failed'])); });
    else done(out);
  }

  /** The function answered upgrade `c`: complete the handshake for a 101 with a WebSocket, else write its answer. */
  #answered(c: RequestContext, socket: Socket, head: Buffer, fn: FunctionVersion, book: SocketBook, r: WireResponse): void {
    const end = r.webSocket;
    const ms = performance.now() - c.startTime;
    if (end === undefined) {
      book.unreserve();
      if (r.status !== 499) fn.stats.record(r.status, ms);
      if (r.status === 101) r = errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [fn.fn.key, 'a 101 response without a WebSocket']);
      this.#answer(c, socket, r);
      return;
    }
    book.adopt(end);
    if (socket.destroyed || !socket.writable) {
      // The client left while the function accepted: its socket ends at once.
      end.close(1006, 'the client left before the handshake completed');
      book.closed(end, 'abnormal');
      return;
    }
    fn.stats.record(101, ms);
    const req = c.req as UpgradeRequest;
    const limits = fn.fn.manifest.limits;
    // The function picks the subprotocol (its 101's Sec-WebSocket-Protocol), among those the client offered.
    const extra: string[] = ['x-request-id', c.requestId];
    let chosen: string | false = false;
    for (let i = 0; i < r.headers.length; i += 2) {
      const name = r.headers[i]!.toLowerCase();
      const value = r.headers[i + 1]!;
      if (name === 'sec-websocket-protocol') { chosen = value.trim(); continue; }
      if (HANDSHAKE_HEADERS.has(name)) continue;
      try {
        http.validateHeaderName(name);
        http.validateHeaderValue(name, value);
      } catch {
        this.#o.logger.warn({ requestId: c.requestId, fn: fn.fn.key, header: name.slice(0, 64) }, 'WebSocket upgrade: an invalid response header from the function was dropped');
        continue;
      }
      extra.push(name, value);
    }
    req[kProtocol] = chosen;
    req[kHeaders] = extra;
    let joined = false;
    try {
      this.#server(limits.webSocketMaxMessageBytes).handleUpgrade(req, socket, head, (ws) => {
        joined = true;
        this.#join(ws, end, fn, book, c.requestId);
      });
    } catch (err) {
      this.#o.logger.error({ requestId: c.requestId, fn: fn.fn.key, err }, 'WebSocket handshake failed');
    }
    if (!joined) {
      // The handshake did not complete (the client left, or `ws` refused it): end the function's side.
      end.close(1006, 'the WebSocket handshake did not complete');
      book.closed(end, 'abnormal');
      if (!socket.destroyed) socket.destroy();
    }
  }

  /** The `ws` server for messages of at most `maxPayload` bytes. */
  #server(maxPayload: number): WebSocketServer {
    let wss = this.#servers.get(maxPayload);
    if (wss === undefined) {
      wss = new WebSocketServer({
        noServer: true,
        clientTracking: false,
        perMessageDeflate: false,
        maxPayload,
        closeTimeout: CLOSE_TIMEOUT_MS,
        handleProtocols: (offered: Set<string>, req: IncomingMessage) => {
          const chosen = (req as UpgradeRequest)[kProtocol];
          return typeof chosen === 'string' && offered.has(chosen) ? chosen : false;
        },
      } as ConstructorParameters<typeof WebSocketServer>[0]);
      wss.on('headers', (headers: string[], req: IncomingMessage) => {
        const extra = (req as UpgradeRequest)[kHeaders] ?? [];
        for (let i = 0; i < extra.length; i += 2) headers.push(`${extra[i]!}: ${extra[i + 1]!}`);
      });
      this.#servers.set(maxPayload, wss);
    }
    return wss;
  }

  /** Join the client's socket `ws` to the function's side `end`, with the host's limits. */
  #join(ws: WebSocket, end: WebSocketEnd, fn: FunctionVersion, book: SocketBook, requestId: string): void {
    const { counters, logger } = this.#o;
    const fnKey = fn.fn.key;
    const idleMs = fn.fn.manifest.limits.webSocketIdleMs;
    const socket = (ws as unknown as { _socket: Socket })._socket;
    socket.off('error', onEarlyError);
    const joined: Joined = { ws, end };
    this.#joined.add(joined);
    /** Why it is closing, once the host or the function started the close. */
    let why: WebSocketCloseReason | null = null;
    let lastActive = performance.now();
    const close = (code: number | null, reason: string): void => {
      try {
        if (code === null) ws.close();
        else ws.close(sendableCloseCode(code) ? code : 1011, closeReason(reason));
      } catch {
        ws.terminate();
      }
    };
    const onIdle = (): void => {
      const idle = performance.now() - lastActive;
      if (idle < idleMs) { timer = setTimeout(onIdle, idleMs - idle); return; }
      timer = null;
      end.terminate(CLOSE_GOING_AWAY, 'idle timeout', 'idle');
    };
    let timer: NodeJS.Timeout | null = setTimeout(onIdle, idleMs);
    const touch = (): void => { lastActive = performance.now(); };
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      lastActive = performance.now();
      // A copy of its own (the receiver's buffer may be shared): moved to the function, not copied again.
      const msg: WebSocketData = isBinary ? new Uint8Array(data) : data.toString('utf8');
      if (!end.send(msg)) {
        ws.pause();
        book.paused(end.bufferedBytes);
      }
    });
    ws.on('ping', touch);
    ws.on('pong', touch);
    ws.on('error', (err: Error & { code?: string }) => {
      // The client broke a rule: `ws` closes with the matching code (1009, 1007, 1002) and reads
      // nothing more, so the function is told that code now (its close event would say 1006).
      const tooBig = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || err.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH';
      const code = tooBig ? 1009 : err.code === 'WS_ERR_INVALID_UTF8' ? 1007 : 1002;
      logger.debug({ requestId, fn: fnKey, err: { message: err.message, code: err.code } }, 'WebSocket client error');
      end.terminate(code, tooBig ? 'message too big' : 'protocol error', tooBig ? 'message-too-big' : 'protocol');
    });
    ws.on('close', (code: number, reasonBuf: Buffer) => {
      if (timer !== null) { clearTimeout(timer); timer = null; }
      this.#joined.delete(joined);
      const reason = reasonBuf.toString('utf8');
      const w: WebSocketCloseReason = why ?? (code === 1006 ? 'abnormal' : 'client');
      end.close(code, reason);
      book.closed(end, w);
      if (w === 'idle' || w === 'message-too-big' || w === 'violation' || w === 'protocol') {
        counters.logLimit(`websocket-${w}`, book.closesOf(w), { fn: fnKey, requestId, code, metric: 'fezz_websocket_closes_total' });
      }
      logger.debug({ requestId, fn: fnKey, code, why: w }, 'WebSocket closed');
    });
    end.attach({
      message(data: WebSocketData): void {
        lastActive = performance.now();
        const n = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
        ws.send(data, { binary: typeof data !== 'string' }, () => end.ack(n));
        book.sample(end.bufferedBytes);
      },
      close(code: number | null, reason: string, w: WebSocketCloseReason): void {
        why ??= w;
        close(code, reason);
      },
      resume(): void {
        if (ws.isPaused) ws.resume();
      },
    });
    logger.debug({ requestId, fn: fnKey }, 'WebSocket open');
    if (this.#closing) end.terminate(CLOSE_GOING_AWAY, 'host shutting down', 'shutdown');
  }

  /** Write `r` as the answer to upgrade `c` (not upgraded), then close the connection. */
  #answer(c: RequestContext, socket: Socket, r: WireResponse | null): void {
    if (socket.destroyed) return;
    const res = c.res;
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.on('finish', () => {
      res.detachSocket(socket);
      socket.destroySoon();
    });
    c.response = r;
    writeResponse(c, this.#o.logger, this.#o.counters);
  }

  /**
   * Another protocol's upgrade (`h2c`...) reached the `'upgrade'` event (Node's parser hands
   * over every request with `Connection: upgrade` once there is a listener). It is handed back
   * to the HTTP parser, without the `upgrade` token in `Connection`, and so served as an
   * ordinary request, with what follows it on the connection (a second one on the same
   * connection closes it after its response: each hand-back adds listeners to the socket).
   */
  #reinject(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (req.complete && req.readableLength === 0) { this.#handBack(req, socket, null, false, head); return; }
    // Node >= 26 passes the request's body to `req` (Node 20 and 24: at the start of `head`),
    // and what follows it on the connection to `head` and the socket. Read it (bounded), then
    // hand the request back with it. A body still arriving when the upgrade was seen ends the
    // connection after the response: what the client sent after it is not waited for.
    const whole = req.complete;
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (reason: 'bad-request' | 'body-stalled', e: WireResponse): void => {
      failed = true;
      clearTimeout(idle);
      if (socket.destroyed) return;
      this.#o.counters.clientError(reason);
      socket.end(closingAnswer(e));
    };
    // A body that stops arriving: 408 after bodyTimeoutMs without a byte, as for any request.
    const idleMs = this.#o.state.bodyTimeoutMs;
    const idle = setTimeout(() => fail('body-stalled', errorResponse('FEZZ_ERR_BODY_STALLED', [idleMs])), idleMs);
    req.on('data', (d: Buffer) => {
      if (failed) return;
      idle.refresh();
      size += d.length;
      if (size <= REINJECT_MAX_BODY_BYTES) parts.push(d);
      else fail('bad-request', errorResponse('FEZZ_ERR_BODY_TOO_LARGE', [REINJECT_MAX_BODY_BYTES]));
    });
    req.once('end', () => {
      clearTimeout(idle);
      if (!failed && !socket.destroyed) this.#handBack(req, socket, Buffer.concat(parts, size), !whole, head);
    });
    req.once('error', () => { clearTimeout(idle); socket.destroy(); });
    socket.once('close', () => clearTimeout(idle));
  }

  /** Write `req` back as text (its body, when given, as `content-length` bytes) before `head`, and let the parser have the socket again. */
  #handBack(req: IncomingMessage, socket: Socket, body: Buffer | null, close: boolean, head: Buffer): void {
    const again = close || (socket as Socket & { [kReinjected]?: boolean })[kReinjected] === true;
    (socket as Socket & { [kReinjected]?: boolean })[kReinjected] = true;
    let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      let value = raw[i + 1]!;
      const lower = name.toLowerCase();
      if (lower === 'connection') {
        if (again) continue;
        value = value.split(',').map((t) => t.trim()).filter((t) => t !== '' && t.toLowerCase() !== 'upgrade').join(', ');
        if (value === '') continue;
      }
      // A body read from `req` is decoded (no chunked framing): it goes back with its length.
      if (body !== null && (lower === 'content-length' || lower === 'transfer-encoding')) continue;
      text += `${name}: ${value}\r\n`;
    }
    if (body !== null && body.length > 0) text += `content-length: ${body.length}\r\n`;
    if (again) text += 'connection: close\r\n';
    if (!(socket instanceof Socket) && req.socket !== socket) {
      // Node >= 26 gives a request whose body was still arriving a stream over the connection,
      // not the connection itself: the client's address comes from the connection.
      Object.defineProperty(socket, 'remoteAddress', { value: req.socket.remoteAddress, configurable: true });
    }
    socket.unshift(Buffer.concat([Buffer.from(`${text}\r\n`, 'latin1'), ...(body !== null ? [body] : []), head]));
    this.#o.server.emit('connection', socket);
    socket.resume();
  }
}

/**
 * Largest body of a non-WebSocket upgrade request (`h2c`...) that Node >= 26 hands to the
 * request rather than to the upgrade's `head`, read before the request is served as an
 * ordinary one, in bytes; past it, 413 and the connection closes.
 */
const REINJECT_MAX_BODY_BYTES = 1024 * 1024;

function onEarlyError(this: Socket): void {
  this.destroy();
}

/** What is wrong with the handshake of WebSocket upgrade `req` (RFC 6455 4.2.1), or null. */
function handshakeProblem(req: IncomingMessage, method: string): string | null {
  if (method !== 'GET') return `a WebSocket upgrade must be a GET, not ${method.slice(0, 16)}`;
  const h = req.headers;
  const key = h['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY_RE.test(key)) return 'missing or invalid Sec-WebSocket-Key header';
  const version = h['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'missing or unsupported Sec-WebSocket-Version header (13 expected)';
  return null;
}
