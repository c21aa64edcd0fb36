/**
 * When a taken spare (a worker thread or a sandbox process) gets its replacement: once the
 * taken instance says its first word (Ready or LoadError) or exits, or after 1 s at the
 * latest. Starting the replacement at once made, on a small machine, the very import the
 * spare was meant to speed up 2-6x slower (cold start p50 9.8 -> 5.3 ms, p99 20 -> 7 ms, 2 cores).
 */

/** Longest wait before the replacement starts though the taken spare has said nothing, in ms. */
export const REFILL_AT_LATEST_MS = 1_000;

/** What both kinds of instance are, for this purpose. */
interface Talks {
  on(event: 'message', fn: () => void): unknown;
  once(event: 'exit', fn: () => void): unknown;
  off(event: 'message' | 'exit', fn: () => void): unknown;
}

/** Call `start` once (on a later turn), after `taken`'s first message or exit, or after 1 s. */
export function refillAfterFirstWord(taken: Talks, start: () => void): void {
  let refilled = false;
  const refill = (): void => {
    if (refilled) return;
    refilled = true;
    clearTimeout(timer);
    taken.off('message', refill);
    taken.off('exit', refill);
    setImmediate(start);
  };
  const timer = setTimeout(refill, REFILL_AT_LATEST_MS);
  timer.unref();
  taken.on('message', refill);
  taken.once('exit', refill);
}
