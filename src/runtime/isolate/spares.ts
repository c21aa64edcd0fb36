/**
 * Pre-started blank workers ("spares"), one per heap limit in use. Starting a worker thread
 * (a V8 isolate, Node's bootstrap, the worker entry) is most of a cold start; a spare has
 * done all that already, so a cold start only imports the function's bundle. Spares are
 * unref'd (they never keep the process alive) and the taker gets a fresh one started behind it.
 */
import { Worker } from 'node:worker_threads';

/** The worker script: compiled `.js` beside this file, or a tsx bootstrap when run from sources. */
export const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './worker-entry.source.mjs' : './worker-entry.js', import.meta.url);

const spares = new Map<number, Worker>();
let enabled = true;

/** A new blank worker with `memoryMb` of old-generation heap; it waits for a Load message. */
export function startWorker(memoryMb: number): Worker {
  return new Worker(WORKER_URL, {
    // The function's env arrives with the Load message; never the host's environment.
    env: {},
    resourceLimits: { maxOldGenerationSizeMb: memoryMb },
    name: 'fezz:isolate',
  });
}

/** Keep one spare with this heap limit ready (started in the background, unref'd). */
export function ensureSpare(memoryMb: number): void {
  if (!enabled || spares.has(memoryMb)) return;
  let w: Worker;
  try {
    w = startWorker(memoryMb);
  } catch {
    return;
  }
  w.unref();
  // A spare that dies before it is taken is just forgotten.
  const forget = (): void => { if (spares.get(memoryMb) === w) spares.delete(memoryMb); };
  w.once('exit', forget);
  w.once('error', forget);
  spares.set(memoryMb, w);
}

/**
 * Longest wait, in ms, before a taken spare's replacement starts even though the taker has not
 * said a word yet (a function whose top level takes long to evaluate).
 */
const REFILL_AT_LATEST_MS = 1_000;

/**
 * Take the spare for `memoryMb`, or null if there is none. Its replacement starts once the
 * taken worker sends its first message (Ready or LoadError) or exits, or after 1 s: starting
 * a worker is ~40 ms of CPU, and on a small machine starting it at once made the very import
 * it was meant to speed up 2-6x slower (cold start p50 9.8 -> 5.3 ms, p99 20 -> 7 ms, 2 cores).
 */
export function takeSpare(memoryMb: number): Worker | null {
  const w = spares.get(memoryMb);
  if (w === undefined) return null;
  spares.delete(memoryMb);
  w.removeAllListeners('exit');
  w.removeAllListeners('error');
  w.ref();
  let refilled = false;
  const refill = (): void => {
    if (refilled) return;
    refilled = true;
    clearTimeout(timer);
    w.off('message', refill);
    w.off('exit', refill);
    setImmediate(() => ensureSpare(memoryMb));
  };
  const timer = setTimeout(refill, REFILL_AT_LATEST_MS);
  timer.unref();
  w.on('message', refill);
  w.once('exit', refill);
  return w;
}

/** Stop every spare and start no more (host shutdown). `enable()` turns them back on. */
export async function closeSpares(): Promise<void> {
  enabled = false;
  const all = [...spares.values()];
  spares.clear();
  await Promise.all(all.map((w) => w.terminate().catch(() => undefined)));
}

export function enableSpares(): void { enabled = true; }
