/**
 * When a taken spare (a worker thread or a sandbox process) gets its replacement: once the
 * taken instance has said its first word (LoadError, or a response) or exited, or after 1 s at
 * the latest. Starting the replacement at once made, on a small machine, the very import the
 * spare was meant to speed up 2-6x slower (cold start p50 9.8 -> 5.3 ms, p99 20 -> 7 ms, 2 cores).
 *
 * A lone Ready is not the word waited for when something follows soon: the request that woke
 * the function is usually answered a moment later, and starting a sandbox blocks the host's
 * thread for 3-6 ms (spawn() forks the host process), which landed between Ready and that
 * response half of the time (sandbox cold start p50 14.5 ms; 7-8 ms without it). So after a
 * lone Ready the replacement waits for the next message, at most {@link REFILL_AFTER_READY_MS}.
 */
import { FromWorker } from './protocol.js';

/** Longest wait before the replacement starts though the taken spare has said nothing, in ms. */
export const REFILL_AT_LATEST_MS = 1_000;

/** Longest wait after a lone Ready for the next message (the first response), in ms. */
export const REFILL_AFTER_READY_MS = 50;

/** What both kinds of instance are, for this purpose. */
interface Talks {
  on(event: 'message', fn: (m: unknown) => void): unknown;
  once(event: 'exit', fn: () => void): unknown;
  off(event: 'message' | 'exit', fn: (m?: unknown) => void): unknown;
}

/** Call `start` once (on a later turn), after `taken`'s first word or exit, or after 1 s. */
export function refillAfterFirstWord(taken: Talks, start: () => void): void {
  let refilled = false;
  let sawReady = false;
  const refill = (): void => {
    if (refilled) return;
    refilled = true;
    clearTimeout(timer);
    taken.off('message', onMessage);
    taken.off('exit', refill);
    setImmediate(start);
  };
  const onMessage = (m: unknown): void => {
    if (!sawReady && Array.isArray(m) && m[0] === FromWorker.Ready) {
      sawReady = true;
      clearTimeout(timer);
      timer = setTimeout(refill, REFILL_AFTER_READY_MS);
      timer.unref();
      return;
    }
    refill();
  };
  let timer = setTimeout(refill, REFILL_AT_LATEST_MS);
  timer.unref();
  taken.on('message', onMessage);
  taken.once('exit', refill);
}
