/**
 * The messages between the primary of a `--workers N` host and its host processes, over
 * node:cluster's IPC channel (JSON). The primary calls an operation on a process and gets
 * one reply; a process also sends events on its own (loaded, log lines of followed
 * functions). Every message carries `fezz` so that nothing else on the channel is taken
 * for one of ours.
 */
import type { Worker } from 'node:cluster';
import { FezzError, type FezzErrorCode } from '../errors.js';

/** Operations a host process serves for its primary. */
export type WorkerOp =
  /** `[]` → HostSnapshot. */
  | 'snapshot'
  /** `[pkg, { replace }]` → `{ key }` (Host.deploy). */
  | 'deploy'
  /** `[id, version]` → `{ key }` (Host.remove). */
  | 'remove'
  /** `[]` → LoadProblem[] (Host.reload). */
  | 'reload'
  /**
   * `['list', id]` → SecretInfo[]; `['put', id, name, valueBase64]` → SecretChange & { updatedAt, created };
   * `['delete', id, name]` → SecretChange (Host.listSecrets/putSecret/deleteSecret). The
   * value crosses the channel as base64 and is never logged.
   */
  | 'secrets'
  /** `[id, cron | null]` → ScheduledRun (Host.runScheduled: `fezz trigger`). */
  | 'scheduled'
  /** `[id, n]` → LogLine[]. */
  | 'logs'
  /** `[]` → prom-client `getMetricsAsJSON()` of the process. */
  | 'metrics'
  /** `[sub, id]`: send each new log line of function `id` as a `log` event tagged `sub`. */
  | 'follow'
  /** `[sub]`: stop that. */
  | 'unfollow'
  /** `[port, 'reusePort' | 'handed']` → `{ port, url }`: bind the port with SO_REUSEPORT, or take connections the primary hands over (balancer.ts). */
  | 'listen'
  /** `[]`: drain, close, exit 0 (a second one skips what is left of the drain delay). */
  | 'shutdown';

export interface CallMessage { fezz: 'call'; id: number; op: WorkerOp; args: unknown[] }
/** An error as it crosses the channel: a FezzError keeps its code and status. */
export interface WireError { message: string; code?: string; statusCode?: number }
export type ReplyMessage = { fezz: 'reply'; id: number; ok: true; value: unknown } | { fezz: 'reply'; id: number; ok: false; error: WireError };
/** Events a process sends on its own. */
export type EventMessage =
  /** The host is created and prepared (admin listener up, `instances.min` started); it waits for `listen`. */
  | { fezz: 'loaded'; pid: number }
  | { fezz: 'log'; sub: number; line: unknown }
  /** SIGTERM reached this process alone: it drains, then exits (and is started again). */
  | { fezz: 'draining' }
  /** A connection handed over (balancer.ts) is held by this process now. */
  | { fezz: 'took'; id: number };
export type FromWorker = ReplyMessage | EventMessage;

export function isFezzMessage(m: unknown): m is { fezz: string } {
  return typeof m === 'object' && m !== null && typeof (m as { fezz?: unknown }).fezz === 'string';
}

export function toWireError(err: unknown): WireError {
  if (err instanceof FezzError) return { message: err.message, code: err.code, statusCode: err.statusCode };
  return { message: err instanceof Error ? err.message : String(err) };
}

/** The error a reply carried, as a FezzError again when it was one (so the admin API answers with its status). */
export function fromWireError(e: WireError): Error {
  if (e.code !== undefined && e.statusCode !== undefined) return new FezzError(e.code as FezzErrorCode, e.message, e.statusCode);
  return new Error(e.message);
}

interface Pending { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }

/**
 * The primary's end of one process's channel: `call()` with a deadline; every call still
 * waiting fails at once when the process exits.
 */
export class WorkerChannel {
  readonly worker: Worker;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #gone: string | null = null;

  constructor(worker: Worker, onEvent: (m: EventMessage) => void) {
    this.worker = worker;
    worker.on('message', (m: unknown) => {
      if (!isFezzMessage(m)) return;
      const msg = m as FromWorker;
      if (msg.fezz === 'reply') {
        const p = this.#pending.get(msg.id);
        if (p === undefined) return;
        this.#pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(fromWireError(msg.error));
        return;
      }
      onEvent(msg);
    });
  }

  /**
   * Run `op` in the process.
   * @param timeoutMs how long to wait for the reply, in ms.
   * @throws Error when the process is gone, exits meanwhile, or does not answer in time;
   *   the process's own error (a FezzError keeps code and status) when the op failed.
   */
  call<T>(op: WorkerOp, args: unknown[], timeoutMs: number): Promise<T> {
    if (this.#gone !== null) return Promise.reject(new Error(this.#gone));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`host process ${this.worker.process.pid} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const msg: CallMessage = { fezz: 'call', id, op, args };
      try {
        this.worker.send(msg, (err: Error | null) => { if (err) this.#fail(id, err); });
      } catch (err) {
        this.#fail(id, err as Error);
      }
    });
  }

  /** Send `op` without waiting for its reply (follow, unfollow, shutdown). */
  tell(op: WorkerOp, args: unknown[]): void {
    if (this.#gone !== null) return;
    const msg: CallMessage = { fezz: 'call', id: 0, op, args };
    try { this.worker.send(msg); } catch { /* the process is going; its exit is handled */ }
  }

  /** The process exited: fail every call still waiting. */
  gone(why: string): void {
    this.#gone = why;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
      p.reject(new Error(why));
    }
  }

  #fail(id: number, err: Error): void {
    const p = this.#pending.get(id);
    if (p === undefined) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    p.reject(err);
  }
}

/**
 * A host process's end: run `handlers[op]` for each call from the primary and reply (calls
 * with id 0 get no reply).
 */
export function serveCalls(handlers: Record<WorkerOp, (...args: never[]) => unknown>): void {
  process.on('message', (m: unknown) => {
    if (!isFezzMessage(m) || m.fezz !== 'call') return;
    const call = m as CallMessage;
    const handler = handlers[call.op] as ((...args: unknown[]) => unknown) | undefined;
    const reply = (r: ReplyMessage): void => {
      if (call.id === 0 || !process.connected) return;
      process.send!(r, undefined, undefined, () => undefined);
    };
    if (handler === undefined) {
      reply({ fezz: 'reply', id: call.id, ok: false, error: { message: `unknown operation ${String(call.op)}` } });
      return;
    }
    Promise.resolve()
      .then(() => handler(...(Array.isArray(call.args) ? call.args : [])))
      .then((value) => reply({ fezz: 'reply', id: call.id, ok: true, value: value ?? null }),
        (err: unknown) => reply({ fezz: 'reply', id: call.id, ok: false, error: toWireError(err) }));
  });
}

/** Send an event to the primary (dropped when the channel is closed). */
export function sendEvent(e: EventMessage): void {
  if (process.connected) process.send!(e, undefined, undefined, () => undefined);
}
