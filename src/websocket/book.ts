/**
 * The open WebSockets of one function version (its runtime's `webSockets`): the per-function
 * cap (`limits.maxWebSockets`), what a retiring runtime waits for and closes, and the
 * counters `/metrics` and the admin API report. Shared by the host (src/websocket/gateway.ts
 * reserves, adopts and counts closes) and the runtime (its `close(graceMs)` waits while
 * `open` > 0, then terminates what is left with 1001).
 */
import type { WebSocketCloseReason, WebSocketEnd } from '../wire/websocket.js';

/** A runtime's WebSocket counters, as `RuntimeStats.webSockets` reports them. */
export interface WebSocketStats {
  /** Open now (accepted by the function, not closed yet). */
  open: number;
  /** Bytes the host holds for them now (client messages on their way to the function, function messages not yet written). */
  bufferedBytes: number;
  /** The most {@link bufferedBytes} one socket ever held (bounded by about two windows plus two messages). */
  peakSocketBufferedBytes: number;
  /** Times the host stopped reading a client because the function had a window of its messages not taken (backpressure). */
  pauses: number;
  /** Ended sockets (and refused upgrades) by reason ({@link WebSocketCloseReason}). */
  closes: Record<string, number>;
}

/** The open WebSockets and WebSocket counters of one runtime (see the module comment). */
export class SocketBook {
  /** `limits.maxWebSockets`. */
  readonly max: number;
  /** Upgrades admitted and still running in the function (not answered yet). */
  #reserved = 0;
  readonly #open = new Set<WebSocketEnd>();
  readonly #closes = new Map<WebSocketCloseReason, number>();
  #pauses = 0;
  #peak = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Open sockets now. */
  get open(): number { return this.#open.size; }

  /** Admit one more upgrade, unless `max` are open or admitted already. */
  reserve(): boolean {
    if (this.#reserved + this.#open.size >= this.max) {
      this.#count('refused-cap');
      return false;
    }
    this.#reserved++;
    return true;
  }

  /** An admitted upgrade did not become a socket (the function answered otherwise, the client left). */
  unreserve(): void {
    if (this.#reserved > 0) this.#reserved--;
  }

  /** An admitted upgrade became socket `end`. */
  adopt(end: WebSocketEnd): void {
    if (this.#reserved > 0) this.#reserved--;
    this.#open.add(end);
  }

  /** Socket `end` ended, for `why`. */
  closed(end: WebSocketEnd, why: WebSocketCloseReason): void {
    if (!this.#open.delete(end)) return;
    this.#count(why);
  }

  /** The host stopped reading a client (backpressure); `held` is that socket's buffered bytes. */
  paused(held: number): void {
    this.#pauses++;
    this.sample(held);
  }

  /** Note that one socket holds `held` bytes now (for the peak). */
  sample(held: number): void {
    if (held > this.#peak) this.#peak = held;
  }

  /** End every open socket from the function's side with `code` (see {@link WebSocketEnd.terminate}). */
  terminateAll(code: number, reason: string, why: WebSocketCloseReason): void {
    for (const end of [...this.#open]) end.terminate(code, reason, why);
  }

  /** Sockets ended (or upgrades refused) for `why` so far. */
  closesOf(why: WebSocketCloseReason): number {
    return this.#closes.get(why) ?? 0;
  }

  stats(): WebSocketStats {
    let buffered = 0;
    for (const end of this.#open) buffered += end.bufferedBytes;
    const closes: Record<string, number> = {};
    for (const [why, n] of this.#closes) closes[why] = n;
    return { open: this.#open.size, bufferedBytes: buffered, peakSocketBufferedBytes: this.#peak, pauses: this.#pauses, closes };
  }

  #count(why: WebSocketCloseReason): void {
    this.#closes.set(why, (this.#closes.get(why) ?? 0) + 1);
  }
}
