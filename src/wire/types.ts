/**
 * The wire form: how a request and its response cross a boundary (host thread <-> worker
 * thread, host <-> plugin). Plain data only, cheap to structured-clone, so that no web
 * `Request`/`Response` object has to be built on the host side.
 *
 * Headers travel as a flat array `[name0, value0, name1, value1, ...]`, the shape of Node's
 * `IncomingMessage.rawHeaders` and of the array `ServerResponse.writeHead` accepts, so the
 * host passes them through without conversion.
 *
 * Bodies are whole (`Uint8Array` or, for text responses, a `string`, which clones faster than
 * bytes and is encoded once by the socket): the one-message fast path. A body that arrives over
 * time is a {@link BodyStream} instead (`WireRequest.bodyStream`, `WireResponse.stream`), read
 * chunk by chunk with backpressure; across a thread or process boundary it travels as the
 * flow-controlled stream messages of stream-channel.ts, under the request's id.
 */
import type { BodyStream } from './stream-channel.js';
import type { WebSocketEnd } from './websocket.js';
export type { BodyStream } from './stream-channel.js';
export type { WebSocketEnd } from './websocket.js';

/** A request as the function sees it. */
export interface WireRequest {
  /** Upper-case method, e.g. `"GET"`. */
  method: string;
  /** Absolute URL the function sees, e.g. `"http://localhost:3000/todos/1?x=1"` (path rewritten for `/rpc`). */
  url: string;
  /** Flat `[name, value, ...]`, names as the client sent them. */
  headers: string[];
  /** The whole body, or `null` when there is none or when it is streamed. */
  body: Uint8Array | null;
  /**
   * The body as it arrives from the client (then `body` is null): large or chunked uploads.
   * `read()` rejects with a {@link BodyLimitError} past `limits.maxBodyBytes` (the host has
   * answered 413, or resets the response if it was already sent), or when the client stalls or
   * leaves. Absent: the body, if any, is whole in `body`.
   */
  bodyStream?: BodyStream;
  /**
   * `'websocket'` for a WebSocket upgrade request (`Upgrade: websocket`, handshake checked by
   * the host): the function may answer `101` with a WebSocket (then the response has
   * `webSocket`). Absent for every other request.
   */
  upgrade?: 'websocket';
}

/** Why a streamed request body failed: the client sent too much (413), stalled (408) or left. */
export class BodyLimitError extends Error {
  constructor(message: string, readonly status: 408 | 413 | 499) {
    super(message);
    this.name = 'BodyLimitError';
  }
}

/** A response as the host writes it. */
export interface WireResponse {
  /**
   * HTTP status, 200–599 (101 with `webSocket`); or 0 for a network error (the function returned `Response.error()`):
   * the host then resets the client's connection instead of answering (and counts status 0).
   */
  status: number;
  /**
   * The reason phrase the function gave (`new Response(body, { status, statusText })`), sent
   * on the status line instead of the standard one; absent when it gave none (or `''`).
   * Characters a status line cannot carry make the response a 500 (FEZZ_ERR_HANDLER_BAD_RESPONSE).
   */
  statusText?: string;
  /** Flat `[name, value, ...]`. `set-cookie` may appear several times. */
  headers: string[];
  /** Text (written as UTF-8), bytes, or `null` for an empty body (or a streamed one). */
  body: string | Uint8Array | null;
  /**
   * A body that is produced over time (then `body` is null): the host sends the status and
   * headers at once and each chunk as it is read, `transfer-encoding: chunked` unless the
   * headers give a `content-length`; a read that rejects resets the connection (the client
   * must not take a truncated body as complete). Bounded by `limits.streamIdleMs` between
   * chunks and `limits.streamMaxMs` in all.
   */
  stream?: BodyStream;
  /**
   * With status 101 (and no body): the function accepted the WebSocket upgrade; this is its
   * side of the socket (src/wire/websocket.ts), which the host joins to the client's. Only
   * ever set for a request with `upgrade`.
   */
  webSocket?: WebSocketEnd;
}
