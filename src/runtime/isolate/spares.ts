/**
 * Pre-started blank workers ("spares"), one per heap limit in use. Starting a worker thread
 * (a V8 isolate, Node's bootstrap, the worker entry) is most of a cold start; a spare has
 * done all that already, so a cold start only imports the function's bundle. Spares are
 * unref'd (they never keep the process alive) and the taker gets a fresh one started behind it.
 *
 * Workers start hardened (permissions.ts): under Node's permission model, reading only fezz's
 * worker code and an inbox of their own, into which {@link admitBundle} links the function's
 * bundle once the worker is given one. So a spare, shared by every function with the same
 * heap limit, holds no grant to any function's files until it is taken. A function whose
 * manifest grants files (or, on Node >= 25, the network) gets spares of its own, kept per
 * grants and dropped with {@link dropSpare} when its pool closes.
 */
import { Worker } from 'node:worker_threads';
import { closeSandboxSpares, enableSandboxSpares } from '../sandbox/spares.js';
import { refillAfterFirstWord } from './spare-refill.js';
import { admitToInbox, grantsKey, hardenedLaunch, hardeningEnabled, NO_GRANTS, releaseInbox, type WorkerGrants } from './permissions.js';
import { YOUNG_GENERATION_MB } from './protocol.js';

/**
 * The worker script when hardening is off: compiled `.js` beside this file, or a tsx
 * bootstrap when run from sources.
 */
export const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './worker-entry.source.mjs' : './worker-entry.js', import.meta.url);

/** What a worker gets as `workerData`. */
export interface WorkerStartData {
  /** Run the in-thread lockdown (lockdown.ts) before anything else: set with the permission model. */
  hardened: boolean;
  /**
   * file: URL of the URLPattern polyfill to import where Node has none, for a hardened worker
   * of the compiled build (it may read that one file, not resolve packages: permissions.ts).
   */
  urlPattern?: string;
}

interface Spare { worker: Worker; forget: () => void }

/** Spares by hardening, heap limit and grants (a spare started with other settings would not do). */
const spares = new Map<string, Spare>();
/** Open pools per key of spares for a function's own grants (see {@link dropSpare}). */
const users = new Map<string, number>();
/** The inbox of each hardened worker. */
const inboxes = new WeakMap<Worker, string>();
let enabled = true;

/** Whether workers with `grants` differ from the shared spares (no grants, or hardening off). */
const hasOwnGrants = (grants: WorkerGrants): boolean => hardeningEnabled() && grantsKey(grants) !== grantsKey(NO_GRANTS);
const spareKey = (memoryMb: number, grants: WorkerGrants): string =>
  hardeningEnabled() ? `h:${memoryMb}:${grantsKey(grants)}` : `u:${memoryMb}`;

/**
 * A new blank worker with `memoryMb` of old-generation heap, hardened with `grants` (unless
 * hardening is off); it waits for a Load message, whose module URL must come from
 * {@link admitBundle}.
 */
export function startWorker(memoryMb: number, grants: WorkerGrants = NO_GRANTS): Worker {
  const common = {
    // The function's env arrives with the Load message; never the host's environment.
    env: {},
    resourceLimits: { maxOldGenerationSizeMb: memoryMb, maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    name: 'fezz:isolate',
  };
  if (!hardeningEnabled()) return new Worker(WORKER_URL, { ...common, workerData: { hardened: false } satisfies WorkerStartData });
  const launch = hardenedLaunch(grants);
  let w: Worker;
  try {
    const workerData: WorkerStartData = launch.urlPattern === null ? { hardened: true } : { hardened: true, urlPattern: launch.urlPattern };
    w = new Worker(launch.url, { ...common, execArgv: launch.execArgv, workerData });
  } catch (err) {
    releaseInbox(launch.inbox);
    throw err;
  }
  inboxes.set(w, launch.inbox);
  w.once('exit', () => releaseInbox(launch.inbox));
  return w;
}

/**
 * Make the bundle at `moduleUrl` readable by `worker` and return the URL it must import:
 * for a hardened worker, the bundle linked into its inbox (a hard link, microseconds); else
 * `moduleUrl` itself. Call once, just before posting the Load message.
 */
export function admitBundle(worker: Worker, moduleUrl: string): string {
  const inbox = inboxes.get(worker);
  return inbox === undefined ? moduleUrl : admitToInbox(inbox, moduleUrl);
}

/**
 * Keep one spare with this heap limit and grants ready (started in the background, unref'd).
 * A pool calls it once, and {@link dropSpare} once when it closes: spares for a function's
 * own grants are kept only while a pool with those grants is open.
 */
export function ensureSpare(memoryMb: number, grants: WorkerGrants = NO_GRANTS): void {
  const key = spareKey(memoryMb, grants);
  if (hasOwnGrants(grants)) users.set(key, (users.get(key) ?? 0) + 1);
  startSpare(key, memoryMb, grants);
}

function startSpare(key: string, memoryMb: number, grants: WorkerGrants): void {
  if (!enabled || spares.has(key) || (hasOwnGrants(grants) && !users.has(key))) return;
  let w: Worker;
  try {
    w = startWorker(memoryMb, grants);
  } catch {
    return;
  }
  w.unref();
  // A spare that dies before it is taken is just forgotten.
  const forget = (): void => { if (spares.get(key)?.worker === w) spares.delete(key); };
  w.once('exit', forget);
  w.once('error', forget);
  spares.set(key, { worker: w, forget });
}

/**
 * Take the spare for `memoryMb`, or null if there is none. Its replacement starts once the
 * taken worker says its first word or exits, or after 1 s (spare-refill.ts says why).
 */
export function takeSpare(memoryMb: number, grants: WorkerGrants = NO_GRANTS): Worker | null {
  const key = spareKey(memoryMb, grants);
  const spare = spares.get(key);
  if (spare === undefined) return null;
  spares.delete(key);
  const w = spare.worker;
  w.off('exit', spare.forget);
  w.off('error', spare.forget);
  w.ref();
  refillAfterFirstWord(w, () => startSpare(key, memoryMb, grants));
  return w;
}

/** A pool with these grants closed: when it was the last, stop their spare (shared spares stay). */
export function dropSpare(memoryMb: number, grants: WorkerGrants): void {
  if (!hasOwnGrants(grants)) return;
  const key = spareKey(memoryMb, grants);
  const left = (users.get(key) ?? 1) - 1;
  if (left > 0) { users.set(key, left); return; }
  users.delete(key);
  const spare = spares.get(key);
  if (spare === undefined) return;
  spares.delete(key);
  void spare.worker.terminate().catch(() => undefined);
}

/**
 * Stop every spare, worker threads and sandbox processes, and start no more (host shutdown).
 * `enableSpares()` turns them back on.
 */
export async function closeSpares(): Promise<void> {
  enabled = false;
  const all = [...spares.values()];
  spares.clear();
  await Promise.all([...all.map((s) => s.worker.terminate().catch(() => undefined)), closeSandboxSpares()]);
}

export function enableSpares(): void { enabled = true; enableSandboxSpares(); }
