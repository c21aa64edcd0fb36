/**
 * The pending-request store of the request-id ABI: requests waiting for a plugin's answer,
 * under their random 63-bit id (the host's request id). An entry leaves the map when it is
 * answered (push), failed (plugin down, bad push) or expires (its deadline): the map holds
 * only what is in flight. Answered ids are remembered for a minute so a second push gets 409
 * instead of 404. The waiting client is woken by the push itself (a resolved Promise).
 */
import type { WireRequest, WireResponse } from '../wire/types.js';

export interface PendingEntry {
  readonly id: string;
  readonly fnKey: string;
  readonly wire: WireRequest;
  /** Epoch ms after which the request gets `onExpire`'s answer. */
  readonly deadlineMs: number;
  /** Set once a plugin fetched the request (for stats and debugging). */
  fetched: boolean;
  /**
   * Set once `GET /admin/get-request-body` started reading `wire.bodyStream`: a streamed body
   * is read once (a second read is 409 FEZZ_ERR_ABI_BODY_CONSUMED).
   */
  bodyTaken: boolean;
  /**
   * Called once when the entry leaves the map (answered, failed or expired; `expired` tells
   * which), for calls still working on it (a push-response-stream waiting for its prelude).
   * Null when nobody listens. Set through {@link PendingStore.onGone}.
   */
  gone: Array<(expired: boolean) => void> | null;
  readonly resolve: (res: WireResponse) => void;
  readonly timer: NodeJS.Timeout;
}

/** How long an answered id keeps answering 409 to a second push, in ms. */
const ANSWERED_TTL_MS = 60_000;
const ANSWERED_MAX = 100_000;

/** A recently answered id: until when a second push is 409 (epoch ms), and whose it was. */
interface Answered { readonly until: number; readonly fnKey: string }

export class PendingStore {
  readonly #pending = new Map<string, PendingEntry>();
  /** id -> until when a second push is 409, and its function. Insertion-ordered, so oldest first. */
  readonly #answered = new Map<string, Answered>();
  readonly #sweep: NodeJS.Timeout;

  constructor() {
    this.#sweep = setInterval(() => this.#forgetAnswered(Date.now()), 10_000);
    this.#sweep.unref();
  }

  /** Requests in flight now. */
  get size(): number { return this.#pending.size; }

  /**
   * Register `wire` under `id` (the host's request id). The promise resolves with the pushed
   * response, or with `onExpire()` after `timeoutMs` ms.
   */
  add(id: string, fnKey: string, wire: WireRequest, timeoutMs: number, onExpire: () => WireResponse): Promise<WireResponse> {
    return new Promise<WireResponse>((resolve) => {
      const timer = setTimeout(() => {
        if (this.#pending.get(id) === entry) {
          this.#pending.delete(id);
          resolve(onExpire());
          notifyGone(entry, true);
        }
      }, timeoutMs);
      const entry: PendingEntry = { id, fnKey, wire, deadlineMs: Date.now() + timeoutMs, fetched: false, bodyTaken: false, gone: null, resolve, timer };
      this.#pending.set(id, entry);
    });
  }

  get(id: string): PendingEntry | undefined { return this.#pending.get(id); }

  /**
   * Whether `id` was answered recently (a second push gets 409). With `fnKey` (a plugin's
   * scope), only if it was that function's request: another's looks unknown (404).
   */
  wasAnswered(id: string, fnKey: string | null = null): boolean {
    const a = this.#answered.get(id);
    return a !== undefined && a.until > Date.now() && (fnKey === null || a.fnKey === fnKey);
  }

  /**
   * Answer `id` with `res` and forget it. `byPlugin` marks it answered, so a second push is
   * 409. Returns false when `id` is not pending.
   */
  settle(id: string, res: WireResponse, byPlugin: boolean): boolean {
    const entry = this.#pending.get(id);
    if (entry === undefined) return false;
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if (byPlugin) {
      this.#answered.set(id, { until: Date.now() + ANSWERED_TTL_MS, fnKey: entry.fnKey });
      if (this.#answered.size > ANSWERED_MAX) this.#forgetAnswered(Date.now());
    }
    entry.resolve(res);
    notifyGone(entry, false);
    return true;
  }

  /**
   * Call `listener` once when `entry` leaves the map (answered by anyone, or expired: then
   * `expired` is true). Returns the function that removes the listener.
   */
  onGone(entry: PendingEntry, listener: (expired: boolean) => void): () => void {
    (entry.gone ??= []).push(listener);
    return () => {
      const i = entry.gone?.indexOf(listener) ?? -1;
      if (i !== -1) entry.gone!.splice(i, 1);
    };
  }

  #forgetAnswered(now: number): void {
    for (const [id, { until }] of this.#answered) {
      if (until > now && this.#answered.size <= ANSWERED_MAX) break;
      this.#answered.delete(id);
    }
  }

  /** Stop the background sweep (host shutdown). Pending entries still expire on their own. */
  close(): void { clearInterval(this.#sweep); }
}

function notifyGone(entry: PendingEntry, expired: boolean): void {
  const listeners = entry.gone;
  if (listeners === null) return;
  entry.gone = null;
  for (const l of listeners) l(expired);
}
