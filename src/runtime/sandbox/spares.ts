/**
 * Pre-started blank sandbox processes ("spares"), one per heap limit and file grants in use,
 * as the thread tier's spares (../isolate/spares.ts): a spare has done the bwrap set-up,
 * Node's start and the instance bootstrap, so a cold start only imports the bundle. A spare
 * holds nothing of any function until it is taken: its inbox (bound at /fn) is empty, and the
 * bundle is hard-linked in by {@link admitSandboxBundle}. Spares are unref'd.
 */
import { SandboxProcess } from './sandbox-process.js';
import { admitToSandbox } from './sandbox-runtime.js';
import { refillAfterFirstWord } from '../isolate/spare-refill.js';

interface Spare { proc: SandboxProcess; forget: () => void }

const spares = new Map<string, Spare>();
/** Open pools per key (a key's spare is kept while a pool uses it). */
const users = new Map<string, number>();
let enabled = true;

const keyOf = (memoryMb: number, readPaths: readonly string[]): string => `${memoryMb}|${readPaths.join('|')}`;

/**
 * A new blank sandbox.
 * @throws if it cannot be spawned (see SandboxProcess).
 */
export function startSandbox(memoryMb: number, readPaths: readonly string[]): SandboxProcess {
  return new SandboxProcess(memoryMb, readPaths);
}

/** Link the bundle into `proc`'s inbox; returns the URL it must import. Call once, before Load. */
export function admitSandboxBundle(proc: SandboxProcess, moduleUrl: string): string {
  return admitToSandbox(proc.inbox, moduleUrl);
}

/** A pool with these settings opened: keep a spare ready. Pair with {@link dropSandboxSpare}. */
export function ensureSandboxSpare(memoryMb: number, readPaths: readonly string[]): void {
  const key = keyOf(memoryMb, readPaths);
  users.set(key, (users.get(key) ?? 0) + 1);
  startSpare(key, memoryMb, readPaths);
}

function startSpare(key: string, memoryMb: number, readPaths: readonly string[]): void {
  if (!enabled || spares.has(key) || !users.has(key)) return;
  let proc: SandboxProcess;
  try {
    proc = startSandbox(memoryMb, readPaths);
  } catch {
    return;
  }
  proc.unref();
  const forget = (): void => { if (spares.get(key)?.proc === proc) spares.delete(key); };
  proc.once('exit', forget);
  proc.on('error', () => undefined);
  spares.set(key, { proc, forget });
}

/** Take the spare for these settings, or null. */
export function takeSandboxSpare(memoryMb: number, readPaths: readonly string[]): SandboxProcess | null {
  const key = keyOf(memoryMb, readPaths);
  const spare = spares.get(key);
  if (spare === undefined) return null;
  spares.delete(key);
  const proc = spare.proc;
  proc.off('exit', spare.forget);
  proc.ref();
  refillAfterFirstWord(proc, () => startSpare(key, memoryMb, readPaths));
  return proc;
}

/** A pool closed: when it was the last with these settings, stop their spare. */
export function dropSandboxSpare(memoryMb: number, readPaths: readonly string[]): void {
  const key = keyOf(memoryMb, readPaths);
  const left = (users.get(key) ?? 1) - 1;
  if (left > 0) { users.set(key, left); return; }
  users.delete(key);
  const spare = spares.get(key);
  if (spare === undefined) return;
  spares.delete(key);
  void spare.proc.terminate();
}

/** Stop every sandbox spare and start no more (host shutdown); {@link enableSandboxSpares} undoes it. */
export async function closeSandboxSpares(): Promise<void> {
  enabled = false;
  const all = [...spares.values()];
  spares.clear();
  await Promise.all(all.map((s) => s.proc.terminate()));
}

export function enableSandboxSpares(): void { enabled = true; }
