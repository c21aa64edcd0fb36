/**
 * Typed messages between the pool (host thread) and a worker (worker-entry.ts).
 * Requests and responses are small arrays with a numeric tag first: cheaper to
 * structured-clone than objects with keys, and they are the per-request messages.
 */

/** Host -> worker. */
export enum ToWorker {
  /** `[Request, id, method, url, rawHeaders, body, handlerName, params, requestId]` */
  Request = 1,
  /** `[Ping]`: the worker answers `[Pong]` when its event loop turns. */
  Ping = 2,
  /** `[Abort, id, reason?]`: the request timed out (or, with reason `'client'`, its client left); its `request.signal` aborts. */
  Abort = 3,
  /** `[Drain]`: settle every `waitUntil`, then answer `[Drained]`. */
  Drain = 4,
  /** `[Load, WorkerLoadData]`: the first message; a (possibly pre-started) worker loads its function. */
  Load = 5,
  /** `[Batch, messages[]]`: several Request messages sent in one postMessage. */
  Batch = 6,
  /** `[StreamCredit, id, bytes]`: the host took `bytes` of request `id`'s response stream (stream-channel.ts). */
  StreamCredit = 7,
  /** `[StreamCancel, id, reason]`: the host no longer wants request `id`'s response stream (client gone, a limit). */
  StreamCancel = 8,
  /** `[BodyChunk, id, Uint8Array]`: the next bytes of request `id`'s streamed body. */
  BodyChunk = 9,
  /** `[BodyEnd, id]`: request `id`'s streamed body is complete. */
  BodyEnd = 10,
  /** `[BodyError, id, message]`: request `id`'s body failed (too large, stalled, client gone). */
  BodyError = 11,
  /** `[WsMessage, id, data]`: a client message (string, or Uint8Array for binary) for WebSocket `id` (src/websocket/). */
  WsMessage = 12,
  /**
   * `[WsClose, id, code, reason]`: WebSocket `id` is closed (the client closed it, the host
   * did, or the close the function started is done): its `close` event fires with `code`.
   */
  WsClose = 13,
  /** `[WsCredit, id, bytes]`: the host wrote `bytes` of WebSocket `id`'s messages to the client. */
  WsCredit = 14,
}

/** Worker -> host. */
export enum FromWorker {
  /**
   * `[Response, id, status, headers, body, statusText?]`: `statusText` only when the function
   * gave one; status 0 (no headers, null body) is a network error (`Response.error()`).
   */
  Response = 1,
  /** `[Error, id, code, message, stack]`: the handler threw or returned something bad. */
  Error = 2,
  Pong = 3,
  Drained = 4,
  /** `[Ready]`: the module is loaded and its handlers resolved. */
  Ready = 5,
  /** `[LoadError, code, message, stack]` */
  LoadError = 6,
  /** `[Log, level, text, requestId | null]`: a `console.*` call in the function. */
  Log = 7,
  /** `[Batch, messages[]]`: several Response/Error/Log messages sent in one postMessage. */
  Batch = 8,
  /**
   * `[Uncaught, kind, requestId | null, message, stack]`: an error nothing handled (a throw in
   * a timer, an unhandled rejection), with the request whose async context it came from. The
   * instance keeps serving; that request, if still running, was failed with an Error message.
   */
  Uncaught = 9,
  /** `[StreamHead, id, status, headers, statusText?]`: request `id` answered with a streamed body; its chunks follow. */
  StreamHead = 10,
  /** `[StreamChunk, id, Uint8Array]`: the next bytes of request `id`'s response body (sent while it has credit). */
  StreamChunk = 11,
  /** `[StreamEnd, id]`: request `id`'s response body is complete. */
  StreamEnd = 12,
  /** `[StreamError, id, message]`: request `id`'s response stream failed mid-way (the client's connection is reset). */
  StreamError = 13,
  /** `[BodyCredit, id, bytes]`: the function took `bytes` of request `id`'s streamed body. */
  BodyCredit = 14,
  /** `[BodyCancel, id, reason]`: the function cancelled request `id`'s body (the host discards the rest). */
  BodyCancel = 15,
  /**
   * `[WsAccept, id, headers]`: upgrade request `id` answered 101 with a WebSocket (`headers`:
   * the function's response headers, flat); from now on `id` names the socket, and the
   * request's slot is free.
   */
  WsAccept = 16,
  /** `[WsMessage, id, data]`: the function sent a message (string, or Uint8Array for binary) on WebSocket `id`. */
  WsMessage = 17,
  /** `[WsClose, id, code | null, reason]`: the function called `close(code?, reason?)` on WebSocket `id`. */
  WsClose = 18,
  /** `[WsCredit, id, bytes]`: the function took `bytes` of WebSocket `id`'s client messages. */
  WsCredit = 19,
}

/*
 * Streams: a response body the function produces over time goes as StreamHead, then
 * StreamChunk messages while the host grants credit (StreamCredit), then StreamEnd or
 * StreamError; a request body the host streams goes as BodyChunk/BodyEnd/BodyError against
 * BodyCredit. Both follow the window contract of src/wire/stream-channel.ts, so neither side
 * buffers more than a window, over a MessagePort or a sandbox's socket alike. A request whose
 * body is streamed has `true` as the tenth element of its Request message (and a null body).
 */

/*
 * WebSockets (src/websocket/, docs/websockets.md): an upgrade request has `true` as the
 * eleventh element of its Request message. A function that answers it `101` with a WebSocket
 * sends WsAccept under the request's id, which names the socket from then on; messages go
 * both ways as WsMessage, each direction under the same credit contract (WsCredit back, a
 * window of STREAM_WINDOW_BYTES); a close the function starts is its WsClose, and the host's
 * WsClose ends the socket on the function's side (its `close` event).
 */

/*
 * Batching: each side queues its per-request messages and posts them together once per
 * event-loop turn (setImmediate), so a burst of N requests costs one postMessage and one
 * thread wake-up each way instead of N. The host also posts as soon as
 * {@link EARLY_FLUSH_REQUESTS} requests are queued, so the worker starts on the first of a
 * large burst while the host is still parsing the rest (pool.ts). Control messages (Ping,
 * Abort, Drain, Load, Pong, Drained, Ready, LoadError) flush the queue first, so ordering is
 * kept.
 */

/**
 * Requests the host queues for one instance before it posts them without waiting for the end
 * of the event-loop turn. With one batch per turn, a turn that read 64 requests left the
 * worker idle while the host parsed them, then the host idle while the worker ran them: the
 * host's thread was 89% busy at 41-43k RPS (hello, wrk -c64, 2 cores). Posting every 8 keeps
 * both busy at once: 97-99% and 46-49k RPS; 4 cost more wake-ups than it saved, 12-16 were
 * no better than 8 (measured with per-thread CPU from /proc, bench hello).
 */
export const EARLY_FLUSH_REQUESTS = 8;

/**
 * The young generation of every instance's V8 heap, MB: worker `resourceLimits.
 * maxYoungGenerationSizeMb`, and `--max-semi-space-size` (a third of it) for a sandbox's node.
 * Left to V8, it grows with the heap limit and the Node line: up to 32 MB (16 MB semi-spaces)
 * on Node 20, up to 192 MB (64 MB semi-spaces) on Node 24. Objects there are collected only
 * when it fills, and so are the ArrayBuffers they hold: a 1 GiB upload streamed through a
 * worker left 44-79 MB of read chunks awaiting collection on Node 24 (17 MB on Node 20), and a
 * warm instance's memory was not what `limits.memoryMb` suggests. Fixed here, every Node line
 * behaves as Node 20 did (measured: test/integration/streaming-limits.test.ts).
 */
export const YOUNG_GENERATION_MB = 48;

/**
 * Exit code of a worker that stopped itself because its ArrayBuffer/Buffer memory (outside
 * the V8 heap, so outside `resourceLimits`) passed `limits.memoryMb`.
 */
export const EXIT_EXTERNAL_OUT_OF_MEMORY = 87;

/** What a worker gets in its Load message: the function to load. */
export interface WorkerLoadData {
  /** `limits.memoryMb`: also the cap on ArrayBuffer/Buffer memory, checked by the worker. */
  memoryMb: number;
  /** `id@version`, for messages. */
  fnKey: string;
  /** file:// URL of the bundled module. */
  moduleUrl: string;
  env: Record<string, string>;
  /** Named handlers the routes use; all must exist. */
  handlerNames: string[];
  /** Whether the default `fetch` must exist (it serves `/rpc`, so always true for now). */
  requireFetch: boolean;
  /** `limits.webSocketMaxMessageBytes`: the largest WebSocket message the function may send, in bytes. @default 1 MiB */
  webSocketMaxMessageBytes?: number;
}

export type RequestMessage = [ToWorker.Request, number, string, string, string[], Uint8Array | null, string | null, Record<string, string> | null, string, (true | undefined)?, (true | undefined)?];
export type ResponseMessage = [FromWorker.Response, number, number, string[], string | Uint8Array | null, string?];
export type ErrorMessage = [FromWorker.Error, number, string, string, string];

/**
 * What the pool talks to: one instance, whatever carries its messages. A `worker_threads`
 * Worker satisfies it as is (the thread tier); a sandbox process (src/runtime/sandbox/
 * sandbox-process.ts) frames the same messages over a unix socket. Events: `'message'`
 * (one message, as posted by the instance), `'error'` (an Error; an instance out of V8 heap
 * has `code: 'ERR_WORKER_OUT_OF_MEMORY'`), `'exit'` (the exit code, once, after every
 * message the instance sent).
 */
export interface InstanceTransport {
  /** Send one message (structured-clone types). A transfer list moves (thread) or copies (process). */
  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (message: any) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'exit', listener: (code: number) => void): this;
  once(event: 'exit', listener: (code: number) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
  off(event: 'message' | 'error' | 'exit', listener: (...args: any[]) => void): this;
  /** Stop the instance now; resolves with its exit code once it is gone. */
  terminate(): Promise<number>;
  /** Whether it keeps the host's event loop alive (spares do not). */
  ref(): void;
  unref(): void;
}

/**
 * The instance's side of the same channel, as worker-entry.ts uses it: `parentPort` in a
 * worker thread, the fd-3 adapter in a sandbox process (src/runtime/sandbox/port.ts).
 */
export interface InstancePort {
  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (message: any) => void): unknown;
}
