/**
 * The host's side of one accepted WebSocket's messages to and from the function
 * ({@link WebSocketEnd}): what the isolate pool (both tiers) and the inline runtime hand the
 * host in a 101 response. It speaks the `Ws*` messages of protocol.ts over whatever the
 * runtime gives it (`post`), checks what the function's side sends (a sandbox is untrusted:
 * message types and sizes, the credit window), and keeps the host's flow control: client
 * messages stop once the function has a window of them not taken; the function's messages
 * are granted back only once written to the client.
 */
import { Buffer } from 'node:buffer';
import { FromWorker, ToWorker } from '../runtime/isolate/protocol.js';
import { CreditLedger } from '../wire/stream-channel.js';
import {
  CLOSE_INTERNAL_ERROR, WEBSOCKET_WINDOW_BYTES, MAX_CLOSE_REASON_BYTES, sendableCloseCode,
  type WebSocketCloseReason, type WebSocketData, type WebSocketEnd, type WebSocketSink,
} from '../wire/websocket.js';

/** What a {@link HostSocketEnd} needs from its runtime. */
export interface HostEndOptions {
  /** The socket's id: the upgrade request's id in the runtime. */
  id: number;
  /** Post one message (ToWorker `Ws*`) to the function's side; `transfer`: the buffer of its bytes (ours alone), if any. */
  post(msg: unknown[], transfer?: ArrayBuffer): void;
  /** `limits.webSocketMaxMessageBytes`: a larger message from the function's side breaks the contract. */
  maxMessageBytes: number;
  /** Runs once, when the socket is over (the client's socket closed, or the runtime ended it). */
  onDone(end: HostSocketEnd): void;
  /** The function's side broke the message or credit contract (logged by the runtime; the socket closes with 1011). */
  onViolation(end: HostSocketEnd, what: string): void;
}

type SinkOp =
  | { op: 'message'; data: WebSocketData }
  | { op: 'close'; code: number | null; reason: string; why: WebSocketCloseReason }
  | { op: 'resume' };

function byteSize(data: WebSocketData): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
}

export class HostSocketEnd implements WebSocketEnd {
  readonly id: number;
  readonly #o: HostEndOptions;
  #sink: WebSocketSink | null = null;
  /** What the function's side sent before {@link attach} (bounded by the credit window). */
  #early: SinkOp[] = [];
  /** The function's side was told the socket is closed, or is gone: nothing more is posted to it. */
  #functionGone = false;
  /** The client's socket was asked to close (sink.close): nothing more goes to the sink but that. */
  #closeAsked = false;
  #done = false;
  /** Client bytes posted to the function and not granted back. */
  #inUnacked = 0;
  #blocked = false;
  /** The function's messages: received, written to the client (consumed), granted back. */
  readonly #out: CreditLedger;
  #quietFlush = false;

  constructor(options: HostEndOptions) {
    this.id = options.id;
    this.#o = options;
    this.#out = new CreditLedger(WEBSOCKET_WINDOW_BYTES, options.maxMessageBytes);
  }

  get bufferedBytes(): number { return this.#inUnacked + this.#out.unacked; }

  /** Whether the socket is over ({@link close} ran). */
  get done(): boolean { return this.#done; }

  attach(sink: WebSocketSink): void {
    if (this.#sink !== null) return;
    this.#sink = sink;
    const early = this.#early;
    this.#early = [];
    for (const op of early) this.#apply(op);
  }

  send(data: WebSocketData): boolean {
    if (this.#functionGone) return true;
    const n = byteSize(data);
    if (typeof data === 'string') this.#o.post([ToWorker.WsMessage, this.id, data]);
    else this.#o.post([ToWorker.WsMessage, this.id, data], data.buffer as ArrayBuffer);
    this.#inUnacked += n;
    if (this.#inUnacked >= WEBSOCKET_WINDOW_BYTES) { this.#blocked = true; return false; }
    return true;
  }

  ack(bytes: number): void {
    if (this.#done) return;
    this.#out.consumed(bytes);
    const n = this.#out.grant();
    if (n > 0) { this.#credit(n); return; }
    // Under a window/4 written: granted once this turn's writes are done, so a function that
    // sent a little sees its bufferedAmount drop to 0 soon, without a message per message.
    if (!this.#quietFlush && this.#out.owed > 0) {
      this.#quietFlush = true;
      setImmediate(() => {
        this.#quietFlush = false;
        if (this.#done) return;
        const owed = this.#out.grant(1);
        if (owed > 0) this.#credit(owed);
      });
    }
  }

  #credit(n: number): void {
    if (!this.#functionGone) this.#o.post([ToWorker.WsCredit, this.id, n]);
  }

  close(code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    if (!this.#functionGone) {
      this.#functionGone = true;
      this.#o.post([ToWorker.WsClose, this.id, code, reason]);
    }
    this.#early = [];
    this.#o.onDone(this);
  }

  terminate(code: number, reason: string, why: WebSocketCloseReason): void {
    if (!this.#functionGone) {
      this.#functionGone = true;
      this.#o.post([ToWorker.WsClose, this.id, code, reason]);
    }
    this.#askClose(code, reason, why);
  }

  /**
   * The function's side is gone (its instance stopped): nothing more is posted to it, and the
   * client's socket closes with `code` (1011), counted as `why`.
   */
  fail(code: number, reason: string, why: WebSocketCloseReason): void {
    this.#functionGone = true;
    this.#askClose(code, reason, why);
  }

  /**
   * A message from the function's side (FromWorker WsMessage, WsClose, WsCredit), checked:
   * anything malformed, too large or past the credit window ends the socket with 1011.
   */
  fromFunction(m: unknown[]): void {
    if (this.#done) return;
    switch (m[0]) {
      case FromWorker.WsMessage: {
        if (this.#closeAsked) return; // closing: what the function still sends is dropped
        const data = m[2];
        if (typeof data !== 'string' && !(data instanceof Uint8Array)) { this.#violation('a malformed message'); return; }
        const n = byteSize(data);
        if (n > this.#o.maxMessageBytes) { this.#violation(`a message of ${n} bytes, over limits.webSocketMaxMessageBytes (${this.#o.maxMessageBytes})`); return; }
        if (!this.#out.received(n)) { this.#violation(`${this.#out.unacked} bytes of messages unacknowledged, past the credit window`); return; }
        this.#toSink({ op: 'message', data });
        return;
      }
      case FromWorker.WsClose: {
        if (this.#closeAsked) return;
        const code = m[2];
        const reason = m[3];
        if ((code !== null && !(typeof code === 'number' && sendableCloseCode(code))) ||
          typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) {
          this.#violation('a malformed close');
          return;
        }
        this.#askClose(code as number | null, reason, 'function');
        return;
      }
      case FromWorker.WsCredit: {
        const n = m[2];
        if (typeof n !== 'number' || !(n > 0) || !Number.isFinite(n)) { this.#violation('a malformed credit'); return; }
        this.#inUnacked = Math.max(0, this.#inUnacked - n);
        if (this.#blocked && this.#inUnacked < WEBSOCKET_WINDOW_BYTES) {
          this.#blocked = false;
          this.#toSink({ op: 'resume' });
        }
        return;
      }
    }
  }

  #violation(what: string): void {
    this.#o.onViolation(this, what);
    this.terminate(CLOSE_INTERNAL_ERROR, 'internal error', 'violation');
  }

  #askClose(code: number | null, reason: string, why: WebSocketCloseReason): void {
    if (this.#closeAsked || this.#done) return;
    this.#closeAsked = true;
    this.#toSink({ op: 'close', code, reason, why });
  }

  #toSink(op: SinkOp): void {
    if (this.#sink === null) this.#early.push(op);
    else this.#apply(op);
  }

  #apply(op: SinkOp): void {
    const sink = this.#sink!;
    switch (op.op) {
      case 'message': sink.message(op.data); return;
      case 'close': sink.close(op.code, op.reason, op.why); return;
      case 'resume': sink.resume(); return;
    }
  }
}
