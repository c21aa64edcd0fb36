/**
 * The function's side of WebSockets, inside the function's realm (a worker thread, a sandbox
 * process, or the host's own realm for an inline function); docs/websockets.md.
 *
 * - `WebSocketPair`, in the shape of Cloudflare Workers: `new WebSocketPair()` is
 *   `{ 0: client, 1: server }`; the function calls `server.accept()`, listens
 *   (`addEventListener('message' | 'close' | 'error', ...)` or `onmessage`...), sends with
 *   `server.send(string | ArrayBuffer | ArrayBufferView)`, closes with `server.close(code?,
 *   reason?)`, and answers `new Response(null, { status: 101, webSocket: client })`.
 * - The `Response` constructor taking `{ status: 101, webSocket }` (the runtime's own refuses
 *   101): installed over the realm's `Response` when the first pair is made, so a function
 *   that never makes one runs exactly as before.
 * - {@link SocketHub}: joins each accepted server end to the host's side over the runtime's
 *   messages (ToWorker/FromWorker `Ws*`, protocol.ts), with credit-based flow control both
 *   ways (stream-channel.ts): `send()` never blocks; what the host has not taken yet waits
 *   here and counts in `bufferedAmount`, and while that is over a window the function takes no
 *   more client messages (its own backlog pushes back on the client).
 */
import { Buffer } from 'node:buffer';
import { FromWorker, ToWorker } from '../runtime/isolate/protocol.js';
import { CreditLedger } from '../wire/stream-channel.js';
import { WEBSOCKET_WINDOW_BYTES, MAX_CLOSE_REASON_BYTES, sendableCloseCode, type WebSocketData } from '../wire/websocket.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** The largest message a function may send when its runtime gives no limit, in bytes. */
export const DEFAULT_WEBSOCKET_MAX_MESSAGE_BYTES = 1024 * 1024; // 1 MiB

/** `CloseEvent` where the realm has none (Node < 23). */
class CloseEventShim extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  constructor(type: string, init: { code?: number; reason?: string; wasClean?: boolean } = {}) {
    super(type);
    this.code = init.code ?? 0;
    this.reason = init.reason ?? '';
    this.wasClean = init.wasClean ?? false;
  }
}

/** `ErrorEvent` where the realm has none. */
class ErrorEventShim extends Event {
  readonly message: string;
  readonly error: unknown;
  constructor(type: string, init: { message?: string; error?: unknown } = {}) {
    super(type);
    this.message = init.message ?? '';
    this.error = init.error;
  }
}

const g = globalThis as unknown as Record<string, unknown>;
const CloseEventClass = (typeof g.CloseEvent === 'function' ? g.CloseEvent : CloseEventShim) as typeof CloseEventShim;
const ErrorEventClass = (typeof g.ErrorEvent === 'function' ? g.ErrorEvent : ErrorEventShim) as typeof ErrorEventShim;

const kState = Symbol('fezz.websocket');
const kCreate = Symbol('fezz.websocket.create');
const kUpgrade = Symbol('fezz.websocket.upgrade');

/** A close the function asked for, queued behind the messages it sent before. */
interface CloseRequest { close: true; code: number | null; reason: string }

type Listener = ((ev: Event) => unknown) | { handleEvent(ev: Event): unknown };

/** Everything about one end, kept off the public object. */
class SocketState {
  readonly role: 'client' | 'server';
  peer: FezzWebSocket | null = null;
  readyState = OPEN;
  accepted = false;
  /** The function called close(): send() throws from now on. */
  closing = false;
  /** The client end went out in a 101 Response. */
  handedOut = false;
  binaryType: 'arraybuffer' | 'blob' = 'arraybuffer';
  protocol = '';
  /** Set once the host took the socket (see SocketHub.adopt). */
  hub: SocketHub | null = null;
  id = -1;
  requestId = '';
  maxMessageBytes = DEFAULT_WEBSOCKET_MAX_MESSAGE_BYTES;
  /** Outgoing messages and the close, not posted yet (no host yet, or no credit): a queue with a head index. */
  out: Array<WebSocketData | CloseRequest> = [];
  outHead = 0;
  /** Bytes in `out`. */
  outQueued = 0;
  /** Bytes the host may still take before it grants more (the producer's credit). */
  credit = WEBSOCKET_WINDOW_BYTES;
  /** Bytes posted and not granted back. */
  outUnacked = 0;
  /** Incoming messages (and the final close) not dispatched yet: before accept(), or while a dispatch is scheduled. */
  inbox: Array<WebSocketData | { code: number; reason: string }> = [];
  inboxScheduled = false;
  /** A grant of what is owed below window/4 is scheduled for the end of this turn. */
  grantScheduled = false;
  /** What the function has taken of the client's messages, granted back in batches. */
  readonly ledger = new CreditLedger(WEBSOCKET_WINDOW_BYTES);
  /** Listener wrappers by `type + capture flag`, so removeEventListener finds them. */
  readonly wrappers = new Map<string, Map<Listener, (ev: Event) => void>>();
  /** `on<type>` attribute handlers. */
  readonly handlers = new Map<string, ((ev: Event) => unknown) | null>();
  constructor(role: 'client' | 'server') { this.role = role; }
}

const CLIENT_END = 'this is the client end of a WebSocketPair: return it as new Response(null, { status: 101, webSocket: client }) and use the server end (pair[1])';

/** UTF-8 length of `s` (what one message costs in credit, and what the size limit counts). */
function byteSize(data: WebSocketData): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

/**
 * A WebSocket end as a function sees it: `accept`, `send`, `close`, `addEventListener`,
 * `readyState`, `binaryType`, `bufferedAmount`, `protocol`, `extensions`, `url`, the `on*`
 * handlers, and the four state constants. Made only by {@link WebSocketPair}.
 */
export class FezzWebSocket extends EventTarget {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;
  [kState]: SocketState;

  /** @throws TypeError: sockets come from `new WebSocketPair()` (an outbound `new WebSocket(url)` is not offered). */
  constructor(token?: unknown, role?: 'client' | 'server') {
    if (token !== kCreate) throw new TypeError('fezz functions get WebSockets from new WebSocketPair(); an outbound WebSocket client is not offered (docs/websockets.md)');
    super();
    this[kState] = new SocketState(role!);
  }

  get readyState(): number { return this[kState].readyState; }
  get binaryType(): 'arraybuffer' | 'blob' { return this[kState].binaryType; }
  set binaryType(v: 'arraybuffer' | 'blob') { if (v === 'arraybuffer' || v === 'blob') this[kState].binaryType = v; }
  /** Bytes sent and not yet written to the client by the host (queued here, or in flight). */
  get bufferedAmount(): number { const s = this[kState]; return s.outQueued + s.outUnacked; }
  /** The subprotocol the function chose (its 101 response's `Sec-WebSocket-Protocol`), or `''`. */
  get protocol(): string { return this[kState].protocol; }
  get extensions(): string { return ''; }
  get url(): string | null { return null; }

  /**
   * Start handling the socket here: events fire from now on (what arrived before is
   * delivered right after, not inside this call). Idempotent.
   * @throws TypeError on the client end.
   */
  accept(_options?: { allowHalfOpen?: boolean }): void {
    const s = this[kState];
    if (s.role === 'client') throw new TypeError(`accept(): ${CLIENT_END}`);
    if (s.accepted) return;
    s.accepted = true;
    if (s.inbox.length > 0) scheduleInbox(this, s);
  }

  /**
   * Send a message: text for a string, binary for an ArrayBuffer or ArrayBufferView (copied
   * now). Never blocks: see `bufferedAmount`. After the client closed, it is dropped.
   * @throws TypeError before `accept()`, after `close()`, on the client end, or for another
   *   type; RangeError over `limits.webSocketMaxMessageBytes`.
   */
  send(data: string | ArrayBuffer | ArrayBufferView): void {
    const s = this[kState];
    if (s.role === 'client') throw new TypeError(`send(): ${CLIENT_END}`);
    if (!s.accepted) throw new TypeError('You must call accept() on this WebSocket before sending messages.');
    if (s.closing) throw new TypeError("Can't call WebSocket send() after close().");
    let msg: WebSocketData;
    if (typeof data === 'string') msg = data;
    else if (data instanceof ArrayBuffer) msg = new Uint8Array(data.slice(0));
    else if (ArrayBuffer.isView(data)) msg = Uint8Array.prototype.slice.call(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else throw new TypeError('WebSocket send() takes a string, an ArrayBuffer or an ArrayBufferView');
    const n = byteSize(msg);
    if (n > s.maxMessageBytes) throw new RangeError(`WebSocket message of ${n} bytes is over the limit of ${s.maxMessageBytes} bytes (limits.webSocketMaxMessageBytes)`);
    if (s.readyState === CLOSED) return; // the client closed it: dropped, as a browser does
    s.out.push(msg);
    s.outQueued += n;
    pump(s);
  }

  /**
   * Close the socket (after the messages sent before): the client gets `code` (none: 1005)
   * and `reason`; this end's `close` event fires once the client answered. Idempotent; on a
   * closed socket it does nothing (a `close` listener may answer the client's close with it).
   * @throws TypeError for a code a close frame cannot carry (1000-1003, 1007-1014 and
   *   3000-4999 can), a reason over 123 UTF-8 bytes, or on the client end.
   */
  close(code?: number, reason?: string): void {
    const s = this[kState];
    if (s.role === 'client') throw new TypeError(`close(): ${CLIENT_END}`);
    if (s.readyState === CLOSED) return;
    if (code !== undefined && !sendableCloseCode(code)) {
      throw new TypeError(`WebSocket close code must be 1000-1003, 1007-1014 or 3000-4999, received ${String(code)}`);
    }
    const why = reason === undefined ? '' : String(reason);
    if (Buffer.byteLength(why) > MAX_CLOSE_REASON_BYTES) throw new TypeError(`WebSocket close reason must be at most ${MAX_CLOSE_REASON_BYTES} UTF-8 bytes`);
    if (s.closing || s.readyState === CLOSED) return;
    s.closing = true;
    s.readyState = CLOSING;
    s.out.push({ close: true, code: code ?? null, reason: why });
    pump(s);
  }

  override addEventListener(type: string, listener: Listener | null, options?: boolean | (EventListenerOptions & { once?: boolean; passive?: boolean; signal?: AbortSignal })): void {
    if (listener === null || listener === undefined) return;
    const s = this[kState];
    const key = type + (captureOf(options) ? '\u00011' : '\u00010');
    let byListener = s.wrappers.get(key);
    if (byListener === undefined) { byListener = new Map(); s.wrappers.set(key, byListener); }
    if (byListener.has(listener)) return;
    const wrapper = (ev: Event): void => invoke(s, this, listener, ev);
    byListener.set(listener, wrapper);
    super.addEventListener(type, wrapper, options);
  }

  override removeEventListener(type: string, listener: Listener | null, options?: boolean | EventListenerOptions): void {
    if (listener === null || listener === undefined) return;
    const byListener = this[kState].wrappers.get(type + (captureOf(options) ? '\u00011' : '\u00010'));
    const wrapper = byListener?.get(listener);
    if (wrapper === undefined) return;
    byListener!.delete(listener);
    super.removeEventListener(type, wrapper, options);
  }

  get onmessage(): ((ev: Event) => unknown) | null { return this[kState].handlers.get('message') ?? null; }
  set onmessage(fn: ((ev: Event) => unknown) | null) { setHandler(this, 'message', fn); }
  get onclose(): ((ev: Event) => unknown) | null { return this[kState].handlers.get('close') ?? null; }
  set onclose(fn: ((ev: Event) => unknown) | null) { setHandler(this, 'close', fn); }
  get onerror(): ((ev: Event) => unknown) | null { return this[kState].handlers.get('error') ?? null; }
  set onerror(fn: ((ev: Event) => unknown) | null) { setHandler(this, 'error', fn); }
  get onopen(): ((ev: Event) => unknown) | null { return this[kState].handlers.get('open') ?? null; }
  set onopen(fn: ((ev: Event) => unknown) | null) { setHandler(this, 'open', fn); }
}
Object.defineProperty(FezzWebSocket, 'name', { value: 'WebSocket' });
for (const [k, v] of [['CONNECTING', CONNECTING], ['OPEN', OPEN], ['CLOSING', CLOSING], ['CLOSED', CLOSED]] as const) {
  Object.defineProperty(FezzWebSocket.prototype, k, { value: v, enumerable: true });
}

function captureOf(options: boolean | EventListenerOptions | undefined): boolean {
  return typeof options === 'boolean' ? options : options?.capture === true;
}

/** `on<type>` handlers run through one listener per type, registered when the first is set. */
function setHandler(ws: FezzWebSocket, type: string, fn: ((ev: Event) => unknown) | null): void {
  const s = ws[kState];
  const had = s.handlers.has(type);
  s.handlers.set(type, typeof fn === 'function' ? fn : null);
  if (!had) {
    EventTarget.prototype.addEventListener.call(ws, type, (ev: Event) => {
      const h = s.handlers.get(type);
      if (typeof h === 'function') invoke(s, ws, h, ev);
    });
  }
}

/**
 * Call one listener. A throw, or a rejected promise it returns, is the function's unhandled
 * error: reported through the hub (logged with the upgrade's request id), never thrown into
 * the runtime (for an inline function that would be the host's own event loop).
 */
function invoke(s: SocketState, target: FezzWebSocket, listener: Listener, ev: Event): void {
  try {
    const r = typeof listener === 'function' ? listener.call(target, ev) : listener.handleEvent(ev);
    if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function') {
      (r as Promise<unknown>).then(undefined, (err: unknown) => report(s, err, 'unhandledRejection'));
    }
  } catch (err) {
    report(s, err, 'uncaughtException');
  }
}

function report(s: SocketState, err: unknown, kind: 'uncaughtException' | 'unhandledRejection'): void {
  // (Events fire only once the host took the socket, so there is always a hub; never rethrown.)
  if (s.hub !== null) s.hub.reportError(err, kind, s.requestId);
  else console.error(`uncaught error in a WebSocket listener (${kind}):`, err);
}

/** Post what credit allows (a close goes as soon as the messages before it went). */
function pump(s: SocketState): void {
  const hub = s.hub;
  if (hub === null || hub.closed(s.id)) return;
  while (s.outHead < s.out.length) {
    const m = s.out[s.outHead]!;
    if (typeof m === 'object' && !(m instanceof Uint8Array)) {
      s.out = [];
      s.outHead = 0;
      hub.post([FromWorker.WsClose, s.id, m.code, m.reason]);
      return;
    }
    if (s.credit <= 0) break;
    s.out[s.outHead++] = undefined as unknown as WebSocketData;
    const n = byteSize(m);
    s.credit -= n;
    s.outQueued -= n;
    s.outUnacked += n;
    if (typeof m === 'string') hub.post([FromWorker.WsMessage, s.id, m]);
    else hub.post([FromWorker.WsMessage, s.id, m], m.buffer as ArrayBuffer);
  }
  if (s.outHead === s.out.length) { s.out = []; s.outHead = 0; }
  else if (s.outHead > 1024 && s.outHead * 2 > s.out.length) { s.out = s.out.slice(s.outHead); s.outHead = 0; }
}

/**
 * Grant the host what the function took of the client's messages, unless its own backlog is
 * over a window: a window/4 at once, the rest when the turn's messages are done (so the
 * host's count of bytes on their way, `fezz_websocket_buffered_bytes`, drops to 0 when idle).
 */
function grantIn(s: SocketState): void {
  const hub = s.hub;
  if (hub === null || s.outQueued + s.outUnacked > WEBSOCKET_WINDOW_BYTES) return;
  const n = s.ledger.grant();
  if (n > 0) { if (!hub.closed(s.id)) hub.post([FromWorker.WsCredit, s.id, n]); return; }
  if (s.grantScheduled || s.ledger.owed === 0) return;
  s.grantScheduled = true;
  setImmediate(() => {
    s.grantScheduled = false;
    if (hub.closed(s.id) || s.outQueued + s.outUnacked > WEBSOCKET_WINDOW_BYTES) return;
    const owed = s.ledger.grant(1);
    if (owed > 0) hub.post([FromWorker.WsCredit, s.id, owed]);
  });
}

function scheduleInbox(ws: FezzWebSocket, s: SocketState): void {
  if (s.inboxScheduled) return;
  s.inboxScheduled = true;
  setImmediate(() => {
    s.inboxScheduled = false;
    const items = s.inbox;
    s.inbox = [];
    for (const item of items) deliver(ws, s, item);
    grantIn(s);
  });
}

/** Dispatch one arrival: a message event, or the final close. */
function deliver(ws: FezzWebSocket, s: SocketState, item: WebSocketData | { code: number; reason: string }): void {
  if (typeof item === 'string' || item instanceof Uint8Array) {
    if (s.readyState === CLOSED) return;
    let data: unknown = item;
    if (typeof item !== 'string') {
      // A whole buffer of its own (a thread transfer, an inline copy) is handed out as is.
      const own = item.byteOffset === 0 && item.byteLength === item.buffer.byteLength && !(item.buffer instanceof SharedArrayBuffer);
      const ab = own ? item.buffer as ArrayBuffer : Uint8Array.prototype.slice.call(item).buffer as ArrayBuffer;
      data = s.binaryType === 'blob' ? new Blob([ab]) : ab;
    }
    const ev = new MessageEvent('message', { data });
    run(s, () => ws.dispatchEvent(ev));
    s.ledger.consumed(byteSize(item));
    return;
  }
  finalClose(ws, s, item.code, item.reason);
}

function run(s: SocketState, fn: () => void): void {
  const hub = s.hub;
  if (hub === null) fn();
  else hub.run(s.requestId, fn);
}

function finalClose(ws: FezzWebSocket, s: SocketState, code: number, reason: string): void {
  if (s.readyState === CLOSED) return;
  s.readyState = CLOSED;
  s.out = [];
  s.outHead = 0;
  s.outQueued = 0;
  s.outUnacked = 0;
  if (code === 1006) {
    // The client's connection went away without a close frame: an error, then the close (as in a browser).
    const err = new ErrorEventClass('error', { message: 'the WebSocket connection was closed abnormally (1006)' });
    run(s, () => ws.dispatchEvent(err));
  }
  const ev = new CloseEventClass('close', { code, reason, wasClean: code !== 1006 });
  run(s, () => ws.dispatchEvent(ev));
}

/** Pairs made in this realm so far. */
let made = 0;

/** Whether a WebSocketPair was ever made in this realm (until then no response can be a WebSocket upgrade). */
export function pairsMade(): boolean { return made > 0; }

/** `{ 0: client, 1: server }`: Cloudflare Workers' WebSocketPair. */
export class WebSocketPair {
  0: FezzWebSocket;
  1: FezzWebSocket;
  constructor() {
    installUpgradeResponse();
    made++;
    const client = new FezzWebSocket(kCreate, 'client');
    const server = new FezzWebSocket(kCreate, 'server');
    client[kState].peer = server;
    server[kState].peer = client;
    this[0] = client;
    this[1] = server;
  }
}
// `const [client, server] = new WebSocketPair()` works too (not enumerable: Object.values gives the two ends).
Object.defineProperty(WebSocketPair.prototype, Symbol.iterator, {
  value: function* (this: WebSocketPair) { yield this[0]; yield this[1]; },
});

/** What a 101 Response carries: the client end and the function's response headers (flat). */
export interface UpgradeParts { socket: FezzWebSocket; headers: string[] }

/** The WebSocket upgrade a handler's result carries (a `Response` made with `{ status: 101, webSocket }`), or null. */
export function upgradeOf(value: unknown): UpgradeParts | null {
  if (value === null || typeof value !== 'object') return null;
  return (value as { [kUpgrade]?: UpgradeParts })[kUpgrade] ?? null;
}

/** The wrappers made for each `Response` constructor seen (the inline runtime may reinstall its own). */
const wrappers = new WeakMap<object, typeof Response>();
const wrapped = new WeakSet<object>();

/**
 * Make the realm's `Response` take `{ status: 101, webSocket: client }`: a constructor with
 * the same prototype (so `instanceof Response` and the statics hold) that builds the usual
 * Response for everything else. Idempotent.
 */
export function installUpgradeResponse(): void {
  const Base = globalThis.Response as unknown as typeof Response & object;
  if (wrapped.has(Base)) return;
  let W = wrappers.get(Base);
  if (W === undefined) {
    const Wrapper = function (this: unknown, body?: unknown, init?: ResponseInit & { webSocket?: unknown }): Response {
      if (new.target === undefined) throw new TypeError("Class constructor Response cannot be invoked without 'new'");
      if (init !== undefined && init !== null && init.webSocket !== undefined && init.webSocket !== null) return upgradeResponse(Base, body, init, new.target);
      // The common case without Reflect.construct's argument array.
      if ((new.target as unknown) === Wrapper) return new Base(body as ConstructorParameters<typeof Response>[0], init);
      return Reflect.construct(Base, [body, init], new.target) as Response;
    } as unknown as typeof Response;
    Object.defineProperty(Wrapper, 'name', { value: 'Response' });
    (Wrapper as { prototype: unknown }).prototype = Base.prototype;
    Object.setPrototypeOf(Wrapper, Base);
    W = Wrapper;
    wrappers.set(Base, W);
    wrapped.add(W);
  }
  Object.defineProperty(globalThis, 'Response', { value: W, writable: true, configurable: true });
}

function upgradeResponse(Base: typeof Response, body: unknown, init: ResponseInit & { webSocket?: unknown }, newTarget: unknown): Response {
  const ws = init.webSocket;
  if (init.status !== 101) throw new RangeError(`a Response with a webSocket must have status 101, received ${String(init.status)}`);
  if (body !== null && body !== undefined) throw new TypeError('a 101 Response with a webSocket has no body: new Response(null, { status: 101, webSocket: client })');
  if (!(ws instanceof FezzWebSocket) || ws[kState].role !== 'client') throw new TypeError('webSocket must be the client end (pair[0]) of a WebSocketPair');
  const headers: string[] = [];
  for (const [k, v] of new Headers(init.headers ?? undefined)) headers.push(k, v);
  const r = Reflect.construct(Base, [null, { headers: init.headers, statusText: init.statusText }], newTarget as typeof Response) as Response;
  Object.defineProperties(r, {
    status: { value: 101 },
    ok: { value: false },
    webSocket: { value: ws, enumerable: true },
    [kUpgrade]: { value: { socket: ws, headers } satisfies UpgradeParts },
  });
  return r;
}

/** How a hub reaches the host and its runtime. */
export interface SocketHubOptions {
  /** Post one message (FromWorker `Ws*`) to the host; `transfer` is the buffer of its bytes, if any. */
  post(msg: unknown[], transfer?: ArrayBuffer): void;
  /** `limits.webSocketMaxMessageBytes`. @default 1 MiB */
  maxMessageBytes?: number;
  /** Run `fn` in the async context of the upgrade request `requestId` (console lines get its id). @default runs it */
  run?(requestId: string, fn: () => void): void;
  /** A listener of a socket of request `requestId` threw, or its promise rejected. */
  reportError(err: unknown, kind: 'uncaughtException' | 'unhandledRejection', requestId: string): void;
}

/**
 * The sockets of one runtime in this realm (a worker's, a sandbox's, an inline function's),
 * by id (the upgrade request's): takes the host's messages (ToWorker `Ws*`) and posts the
 * functions' (FromWorker `Ws*`).
 */
export class SocketHub {
  readonly #o: SocketHubOptions;
  readonly #sockets = new Map<number, FezzWebSocket>();
  #maxMessageBytes: number;

  constructor(options: SocketHubOptions) {
    this.#o = options;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_WEBSOCKET_MAX_MESSAGE_BYTES;
  }

  /** Set `limits.webSocketMaxMessageBytes` (known once the function loads). */
  set maxMessageBytes(n: number) { this.#maxMessageBytes = n; }

  /** Open sockets. */
  get size(): number { return this.#sockets.size; }

  post(msg: unknown[], transfer?: ArrayBuffer): void { this.#o.post(msg, transfer); }

  run(requestId: string, fn: () => void): void {
    if (this.#o.run !== undefined) this.#o.run(requestId, fn);
    else fn();
  }

  reportError(err: unknown, kind: 'uncaughtException' | 'unhandledRejection', requestId: string): void {
    this.#o.reportError(err, kind, requestId);
  }

  /** Whether socket `id` is closed (or was never this hub's). */
  closed(id: number): boolean { return !this.#sockets.has(id); }

  /**
   * Take the socket of a 101 answer to upgrade request `id`: `upgrade` from {@link upgradeOf}.
   * `accepted` runs first (post the runtime's WsAccept there), then what the function sent
   * already is posted. Returns null, or why it cannot be taken (the request then fails).
   */
  adopt(id: number, requestId: string, upgrade: UpgradeParts, accepted: () => void): string | null {
    const client = upgrade.socket[kState];
    const server = client.peer;
    if (client.handedOut || server === null) return 'the client end of this WebSocketPair was returned in a response already';
    const s = server[kState];
    client.handedOut = true;
    s.hub = this;
    s.id = id;
    s.requestId = requestId;
    s.maxMessageBytes = this.#maxMessageBytes;
    for (let i = 0; i < upgrade.headers.length; i += 2) {
      if (upgrade.headers[i] === 'sec-websocket-protocol') s.protocol = upgrade.headers[i + 1]!;
    }
    this.#sockets.set(id, server);
    accepted();
    pump(s);
    return null;
  }

  /** A host message for a socket (ToWorker WsMessage, WsClose, WsCredit). */
  onMessage(msg: unknown[]): void {
    const ws = this.#sockets.get(msg[1] as number);
    if (ws === undefined) return;
    const s = ws[kState];
    switch (msg[0]) {
      case ToWorker.WsMessage: {
        const data = msg[2];
        if (typeof data !== 'string' && !(data instanceof Uint8Array)) return;
        if (!s.accepted || s.inbox.length > 0) {
          s.inbox.push(data);
          if (s.accepted) scheduleInbox(ws, s);
          return;
        }
        deliver(ws, s, data);
        grantIn(s);
        return;
      }
      case ToWorker.WsCredit: {
        const n = msg[2] as number;
        s.credit += n;
        s.outUnacked = Math.max(0, s.outUnacked - n);
        pump(s);
        grantIn(s);
        return;
      }
      case ToWorker.WsClose: {
        this.#sockets.delete(s.id);
        const item = { code: typeof msg[2] === 'number' ? msg[2] : 1005, reason: typeof msg[3] === 'string' ? msg[3] : '' };
        if (!s.accepted || s.inbox.length > 0) {
          s.inbox.push(item);
          if (s.accepted) scheduleInbox(ws, s);
          return;
        }
        deliver(ws, s, item);
        return;
      }
    }
  }
}

/** `CloseEvent`/`ErrorEvent` classes used (the realm's own where it has them). */
export { CloseEventClass as CloseEvent, ErrorEventClass as ErrorEvent };

/**
 * Install `WebSocketPair` in this realm (where missing). The `Response` that takes
 * `{ status: 101, webSocket }` comes with the first pair.
 */
export function installWebSocketGlobals(): void {
  if (g.WebSocketPair === undefined) {
    Object.defineProperty(globalThis, 'WebSocketPair', { value: WebSocketPair, writable: true, configurable: true, enumerable: false });
  }
}
