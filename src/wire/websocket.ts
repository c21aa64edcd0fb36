/**
 * WebSockets between the host and a runtime (docs/websockets.md). A function answers an
 * upgrade request `101` with a WebSocket; its runtime then gives the host a
 * {@link WebSocketEnd} in `WireResponse.webSocket`: the function's side of the socket as the
 * host sees it, whatever carries the messages (a worker port, a sandbox's socket, a direct
 * call for an inline function). The host joins it to the client's socket (src/websocket/
 * gateway.ts) through a {@link WebSocketSink}.
 *
 * Flow control in both directions follows the credit contract of stream-channel.ts, with a
 * window of {@link WEBSOCKET_WINDOW_BYTES} and messages of at most the function's
 * `limits.webSocketMaxMessageBytes`: the host has at most a window (plus one message) of
 * client messages on their way to the function, and at most a window of the function's
 * messages waiting to be written to the client, whatever the speeds of either.
 */
import { STREAM_WINDOW_BYTES } from './stream-channel.js';

/** Bytes of messages one direction of one WebSocket may have in flight, unacknowledged. */
export const WEBSOCKET_WINDOW_BYTES = STREAM_WINDOW_BYTES;

/** One WebSocket message: text, or bytes for a binary message. */
export type WebSocketData = string | Uint8Array;

/**
 * Why a WebSocket ended, the `reason` label of `fezz_websocket_closes_total`:
 * - `client`: the client closed it (its close frame); `abnormal`: the client's connection
 *   went away without a close frame (1006);
 * - `function`: the function called `close()`;
 * - `instance`: the function's instance stopped (crash, out of memory, unresponsive): 1011;
 * - `idle`: no message or ping either way for `limits.webSocketIdleMs`: 1001;
 * - `shutdown`: the host is shutting down: 1001; `retired`: its function version was
 *   replaced or removed and the grace (`shutdownGraceMs`) ended: 1001;
 * - `message-too-big`: the client sent a message over `limits.webSocketMaxMessageBytes`: 1009;
 * - `protocol`: the client broke the WebSocket protocol (1002, 1007);
 * - `violation`: the function's instance broke the host's message or credit contract: 1011.
 * A refused upgrade is counted too: `refused-cap` (`limits.maxWebSockets` open already, 503).
 */
export type WebSocketCloseReason = 'client' | 'abnormal' | 'function' | 'instance' | 'idle' | 'shutdown' | 'retired'
  | 'message-too-big' | 'protocol' | 'violation' | 'refused-cap';

/** Close codes the host uses itself (RFC 6455 section 7.4.1). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_INTERNAL_ERROR = 1011;

/** What the host gives the function's side of a socket: its messages, its close, more credit. */
export interface WebSocketSink {
  /** The function sent `data`; write it to the client and {@link WebSocketEnd.ack} its bytes once written. */
  message(data: WebSocketData): void;
  /**
   * The function's side asks to close: the function called `close(code, reason)` (`code`
   * null: it gave none) with `why` `function`; or the host side must end it (`instance`,
   * `retired`, `violation`, with the code to send). Close the client's socket with it.
   */
  close(code: number | null, reason: string, why: WebSocketCloseReason): void;
  /** The function took enough of the client's messages: read the client again (see {@link WebSocketEnd.send}). */
  resume(): void;
}

/** The function's side of one accepted WebSocket, as the host sees it (`WireResponse.webSocket`). */
export interface WebSocketEnd {
  /**
   * Join the client's socket: from now on the function's messages and close go to `sink`
   * (what the function sent before is delivered at once, in order). Call once.
   */
  attach(sink: WebSocketSink): void;
  /**
   * A client message for the function. Returns false once the function has a window of them
   * not yet taken: stop reading the client until `sink.resume()`.
   */
  send(data: WebSocketData): boolean;
  /** `bytes` of the function's messages were written to the client (credit back to the function). */
  ack(bytes: number): void;
  /**
   * The client's socket is closed, with `code` and `reason` as the function's `close` event
   * reports them (the client's close frame, 1005 for none, 1006 when it vanished, or the
   * code the host or the function closed with). Final; idempotent.
   */
  close(code: number, reason: string): void;
  /**
   * The host ends the socket from the function's side (its version is retired, or shut
   * down): the function's `close` event fires with `code` now, and `sink.close` is asked to
   * close the client's socket with the same code, counted as `why`.
   */
  terminate(code: number, reason: string, why: WebSocketCloseReason): void;
  /** Bytes the host holds for this socket now: client messages not taken by the function, function messages not yet written. */
  readonly bufferedBytes: number;
}

/** Longest close reason, in UTF-8 bytes (a close frame's payload is at most 125 bytes, 2 of them the code). */
export const MAX_CLOSE_REASON_BYTES = 123;

/** `reason` cut to fit a close frame ({@link MAX_CLOSE_REASON_BYTES}), on a character boundary. */
export function closeReason(reason: string): string {
  if (reason.length <= MAX_CLOSE_REASON_BYTES / 3 || Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES) return reason;
  let out = reason.slice(0, MAX_CLOSE_REASON_BYTES);
  while (Buffer.byteLength(out) > MAX_CLOSE_REASON_BYTES) out = out.slice(0, -1);
  // A cut through a surrogate pair leaves half of it: drop that half too.
  const last = out.charCodeAt(out.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) out = out.slice(0, -1);
  return out;
}

/** A close code a WebSocket endpoint may send in a close frame: 1000, 1001-1003, 1007-1014, 3000-4999. */
export function sendableCloseCode(code: number): boolean {
  return Number.isInteger(code) && (code === 1000 || code === 1001 || code === 1002 || code === 1003 ||
    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999));
}
