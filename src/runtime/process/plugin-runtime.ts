/**
 * The `process` and `native` runtimes: functions outside JavaScript, speaking the
 * request-id ABI. Each instance is a long-lived child process told one request id per line
 * on stdin; it fetches the request from the admin listener and pushes the response back.
 *
 * - `process`: the manifest entry is any executable (Go, Python, Rust, ...).
 * - `native`: the entry is a `.so` exporting `int32_t fezz_handle_request(int64_t)`, loaded
 *   by a plugin-host child process (native/plugin-host.ts) so a segfault kills that process,
 *   not the host. The plugin host reports each call's return code on fd 3.
 *
 * A child that exits fails its in-flight requests with 502 and is restarted with backoff;
 * a request without an answer by `limits.timeoutMs` gets 504; idle children are stopped
 * after the idle TTL (for `native` that unloads the library); a changed entry file
 * replaces the children (old ones finish what they have, then exit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { watch, statSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errorResponse } from '../../wire/error-response.js';
import type { WireResponse } from '../../wire/types.js';
import type { Limits } from '../../manifest/schema.js';
import type { PendingStore } from '../../abi/pending-store.js';
import type { FunctionRuntime, InvokeRequest, RuntimeStats } from '../types.js';

/** How the host reaches the ABI, for the children's environment. */
export interface AbiEndpoint {
  store: PendingStore;
  /** The admin listener's URL (FEZZ_HOST); read when a child starts. */
  url(): string;
  token: string;
}

export interface PluginRuntimeOptions {
  fnKey: string;
  id: string;
  version: string;
  kind: 'process' | 'native';
  /** The function's directory: the children's working directory. */
  cwd: string;
  /** The file to watch for changes (the executable or the `.so`). */
  entryPath: string;
  /** What to run: `[command, ...args]`. */
  command: string[];
  env: Record<string, string>;
  limits: Limits;
  instances: { min: number; max: number };
  idleTtlMs: number;
  logger: Logger;
  abi: AbiEndpoint;  /** Deadline for an instance to load the function, in ms, whether or not a request waits. */
  startTimeoutMs: number;
}

/** Host environment variables a plugin may need to run at all; everything else is withheld. */
const PASS_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH', 'SYSTEMROOT'];
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A child that lived this long resets the crash backoff. */
const STABLE_AFTER_MS = 10_000;
const RETRY_AFTER = ['retry-after', '1'];
/** Extra time a request sent to a native child that is still loading gets, in ms. */
const START_ALLOWANCE_MS = 10_000;
/** A process plugin that is still running this long after its start counts as started. */
const PROCESS_SETTLE_MS = 150;

interface Child {
  readonly seq: number;
  readonly proc: ChildProcess;
  readonly startedAt: number;
  inflight: number;
  readonly ids: Set<string>;
  lastActive: number;
  stopping: boolean;
  /** native: the plugin host said its library is loaded. */
  ready: boolean;
  /** Ids waiting for this turn's stdin write: one write per burst, not one per request. */
  stdinQueue: string;
}

interface Waiting {
  req: InvokeRequest;
  done: Promise<WireResponse>;
}

export class PluginRuntime implements FunctionRuntime {
  readonly #o: PluginRuntimeOptions;
  #children: Child[] = [];
  #seq = 0;
  #queue: Waiting[] = [];
  #closed = false;
  #backoffMs = 0;
  #downUntil = 0;
  #lastExit = '';
  #restartTimer: NodeJS.Timeout | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  #watcher: FSWatcher | null = null;
  #entryStamp: string;
  #stats = { coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0 };
  #lastError: string | null = null;
  #readyWaiters: Array<(err: string | null) => void> = [];

  constructor(options: PluginRuntimeOptions) {
    this.#o = options;
    this.#entryStamp = stamp(options.entryPath);
  }

  invoke(req: InvokeRequest): Promise<WireResponse> {
    if (this.#closed) return Promise.resolve(errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
    const o = this.#o;
    const child = this.#pick();
    if (child === null && this.#children.length === 0 && performance.now() < this.#downUntil) {
      return Promise.resolve(errorResponse('FEZZ_ERR_PLUGIN_DOWN', [o.fnKey, this.#lastExit || 'restarting']));
    }
    if (child === null && this.#queue.length >= o.limits.maxQueue) {
      return Promise.resolve(errorResponse('FEZZ_ERR_QUEUE_FULL', [o.fnKey, o.limits.maxQueue], RETRY_AFTER));
    }
    // The deadline runs from arrival: queued time counts, but a native child's cold start
    // (loading node and the library) does not, up to START_ALLOWANCE_MS.
    const starting = child !== null && o.kind === 'native' && !child.ready;
    const done = o.abi.store.add(req.requestId, o.fnKey, req.wire, o.limits.timeoutMs + (starting ? START_ALLOWANCE_MS : 0), () => {
      this.#stats.timeouts++;
      return errorResponse('FEZZ_ERR_HANDLER_TIMEOUT', [o.fnKey, o.limits.timeoutMs]);
    });
    if (child !== null) this.#send(child, req.requestId, done);
    else this.#queue.push({ req, done });
    return done;
  }

  #pick(): Child | null {
    const conc = this.#o.limits.concurrency;
    let best: Child | null = null;
    let idle = false;
    for (const c of this.#children) {
      if (c.inflight === 0) idle = true;
      if (c.inflight < conc && (best === null || c.inflight < best.inflight)) best = c;
    }
    if (!idle && this.#children.length < this.#o.instances.max && performance.now() >= this.#downUntil) {
      const fresh = this.#spawn();
      if (fresh !== null && (best === null || best.inflight > 0)) return fresh;
    }
    return best;
  }

  #send(child: Child, id: string, done: Promise<WireResponse>): void {
    child.inflight++;
    child.ids.add(id);
    if (child.stdinQueue === '') setImmediate(flushStdin, child);
    child.stdinQueue += `${id}\n`;
    void done.then(() => {
      child.inflight--;
      child.ids.delete(id);
      child.lastActive = performance.now();
      this.#dequeue(child);
    });
  }

  #dequeue(child: Child): void {
    while (this.#queue.length > 0 && !child.stopping && child.inflight < this.#o.limits.concurrency) {
      const w = this.#queue.shift()!;
      if (this.#o.abi.store.get(w.req.requestId) === undefined) continue; // expired while queued
      this.#send(child, w.req.requestId, w.done);
    }
  }

  #spawn(): Child | null {
    const o = this.#o;
    const env: Record<string, string> = {};
    for (const k of PASS_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    Object.assign(env, o.env, {
      FEZZ_HOST: o.abi.url(),
      FEZZ_TOKEN: o.abi.token,
      FEZZ_FUNCTION_ID: o.id,
      FEZZ_FUNCTION_VERSION: o.version,
      UV_THREADPOOL_SIZE: String(Math.min(1024, Math.max(4, o.limits.concurrency))),
    });
    let proc: ChildProcess;
    try {
      proc = spawn(o.command[0]!, o.command.slice(1), {
        cwd: o.cwd, env,
        stdio: ['pipe', 'pipe', 'pipe', o.kind === 'native' ? 'pipe' : 'ignore'],
      });
    } catch (err) {
      this.#crashed(`could not start: ${(err as Error).message}`);
      return null;
    }
    const now = performance.now();
    const child: Child = { seq: ++this.#seq, proc, startedAt: now, inflight: 0, ids: new Set(), lastActive: now, stopping: false, ready: false, stdinQueue: '' };
    this.#children.push(child);
    this.#stats.coldStarts++;
    const log = o.logger.child({ fn: o.fnKey, pid: proc.pid });
    proc.stdin!.on('error', () => { /* EPIPE when the child died; 'exit' handles it */ });
    createInterface({ input: proc.stdout! }).on('line', (line) => log.info({ stream: 'stdout' }, line));
    createInterface({ input: proc.stderr! }).on('line', (line) => log.warn({ stream: 'stderr' }, line));
    if (o.kind === 'native') {
      const results = proc.stdio[3] as NodeJS.ReadableStream;
      createInterface({ input: results }).on('line', (line) => {
        if (line === 'ready') child.ready = true;
        this.#onResult(line);
      });
    }
    proc.on('error', (err) => { log.error({ err }, 'plugin process error'); });
    proc.on('exit', (code, signal) => this.#onExit(child, code, signal));
    log.debug({ instance: child.seq, command: o.command }, 'plugin process started');
    this.#watchEntry();
    this.#ensureSweep();
    return child;
  }

  /** `native` only: `<id> <rc>` from the plugin host once a call returned. */
  #onResult(line: string): void {
    if (line === 'ready') { for (const w of this.#readyWaiters.splice(0)) w(null); return; }
    const sp = line.indexOf(' ');
    const id = line.slice(0, sp);
    const rc = Number(line.slice(sp + 1));
    const store = this.#o.abi.store;
    if (store.get(id) === undefined) return; // answered by its push, as it should be
    const why = rc === 0 ? 'returned 0 without pushing a response' : `fezz_handle_request returned ${rc}`;
    this.#o.logger.error({ fn: this.#o.fnKey, requestId: id, rc }, `plugin ${why}`);
    store.settle(id, errorResponse('FEZZ_ERR_PLUGIN_ERROR', [this.#o.fnKey, why]), false);
  }

  #onExit(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    const i = this.#children.indexOf(child);
    if (i !== -1) this.#children.splice(i, 1);
    const why = signal !== null ? `killed by ${signal}` : `exited with code ${code}`;
    const store = this.#o.abi.store;
    for (const id of child.ids) store.settle(id, errorResponse('FEZZ_ERR_PLUGIN_DOWN', [this.#o.fnKey, why]), false);
    for (const w of this.#readyWaiters.splice(0)) w(`plugin process ${why} before it was ready`);
    if (child.stopping) return;
    this.#o.logger.error({ fn: this.#o.fnKey, pid: child.proc.pid, code, signal, inflight: child.ids.size }, `plugin process ${why}`);
    this.#crashed(why, performance.now() - child.startedAt >= STABLE_AFTER_MS);
  }

  #crashed(why: string, stable = false): void {
    this.#stats.crashes++;
    this.#lastError = why;
    this.#lastExit = why;
    this.#backoffMs = stable || this.#backoffMs === 0 ? BACKOFF_MIN_MS : Math.min(BACKOFF_MAX_MS, this.#backoffMs * 2);
    this.#downUntil = performance.now() + this.#backoffMs;
    if (this.#closed || this.#restartTimer !== null) return;
    // Restart after the backoff if something needs a child: min instances or queued work.
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#closed) return;
      while (this.#children.length < Math.max(this.#o.instances.min, this.#queue.length > 0 ? 1 : 0)) {
        if (this.#spawn() === null) return;
      }
      for (const c of this.#children) this.#dequeue(c);
    }, this.#backoffMs);
  }

  /** Replace children when the entry file changes (a rebuilt binary or `.so`). */
  #watchEntry(): void {
    if (this.#watcher !== null) return;
    const dir = path.dirname(this.#o.entryPath);
    const base = path.basename(this.#o.entryPath);
    try {
      this.#watcher = watch(dir, (_event, file) => {
        if (file !== null && file !== base) return;
        const now = stamp(this.#o.entryPath);
        if (now === this.#entryStamp || now === '') return;
        this.#entryStamp = now;
        this.#o.logger.info({ fn: this.#o.fnKey, entry: this.#o.entryPath }, 'entry changed: replacing plugin processes');
        for (const c of [...this.#children]) this.#retire(c, this.#o.limits.timeoutMs);
        if (this.#o.instances.min > 0) this.#refillMin();
      });
      this.#watcher.unref();
    } catch {
      // Watching is best effort (e.g. inotify limits); a restart picks up the change.
    }
  }

  #refillMin(): void {
    while (!this.#closed && this.#children.length < this.#o.instances.min && performance.now() >= this.#downUntil) {
      if (this.#spawn() === null) return;
    }
  }

  /** Stop `child` taking work, close its stdin (it exits when done), kill it after `graceMs`. */
  #retire(child: Child, graceMs: number): Promise<void> {
    child.stopping = true;
    const i = this.#children.indexOf(child);
    if (i !== -1) this.#children.splice(i, 1);
    return new Promise((resolve) => {
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) { resolve(); return; }
      const kill = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
      child.proc.once('exit', () => { clearTimeout(kill); resolve(); });
      flushStdin(child);
      child.proc.stdin!.end();
      // A plugin that ignores stdin EOF gets SIGTERM once its work is done.
      const term = setInterval(() => {
        if (child.inflight === 0) { clearInterval(term); child.proc.kill('SIGTERM'); }
      }, 50);
      child.proc.once('exit', () => clearInterval(term));
    });
  }

  #ensureSweep(): void {
    if (this.#sweepTimer !== null) return;
    const every = Math.max(20, Math.min(this.#o.idleTtlMs / 2, 30_000));
    this.#sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const c of [...this.#children]) {
        if (this.#children.length <= this.#o.instances.min) break;
        if (c.inflight === 0 && now - c.lastActive >= this.#o.idleTtlMs) {
          this.#stats.evictions++;
          this.#o.logger.debug({ fn: this.#o.fnKey, pid: c.proc.pid }, 'stopping idle plugin process');
          void this.#retire(c, 5000);
        }
      }
    }, every);
    this.#sweepTimer.unref();
  }

  warm(): Promise<void> {
    this.#refillMin();
    return Promise.resolve();
  }

  /**
   * One child up: for `native`, once the plugin host reports the library loaded; for
   * `process`, once it has stayed up for PROCESS_SETTLE_MS (there is no ready signal).
   */
  ready(): Promise<string | null> {
    if (this.#children.length === 0 && this.#spawn() === null) return Promise.resolve(this.#lastError ?? 'could not start');
    const child = this.#children[0]!;
    if (this.#o.kind === 'process') {
      if (performance.now() - child.startedAt >= PROCESS_SETTLE_MS) return Promise.resolve(null);
      return new Promise((resolve) => {
        const t = setTimeout(() => { this.#readyWaiters = this.#readyWaiters.filter((w) => w !== resolve); resolve(null); }, PROCESS_SETTLE_MS);
        this.#readyWaiters.push((err) => { clearTimeout(t); resolve(err); });
      });
    }
    if (child.ready) return Promise.resolve(null);
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  stats(): RuntimeStats {
    let inflight = 0;
    for (const c of this.#children) inflight += c.inflight;
    return { instances: this.#children.length, inflight, queued: this.#queue.length, ...this.#stats, lastError: this.#lastError };
  }

  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    this.#watcher?.close();
    const store = this.#o.abi.store;
    for (const w of this.#queue.splice(0)) store.settle(w.req.requestId, errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER), false);
    await Promise.all([...this.#children].map((c) => this.#retire(c, graceMs)));
  }
}

function flushStdin(child: Child): void {
  const text = child.stdinQueue;
  child.stdinQueue = '';
  if (text !== '' && child.proc.stdin!.writable) child.proc.stdin!.write(text);
}

function stamp(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '';
  }
}
