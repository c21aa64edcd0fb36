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
 * Each runtime has its own ABI token (src/abi/tokens.ts), issued when its first child starts
 * and given to every child as FEZZ_TOKEN (never the admin token): it reaches only this
 * function version's requests. `close()` revokes it once the children are gone.
 *
 * A request without an answer by `limits.timeoutMs` gets 504; idle children are stopped
 * after the idle TTL (for `native` that unloads the library); a changed entry file
 * replaces the children (old ones finish what they have, then exit).
 *
 * Starts, crashes and restarts:
 * - A child has started once the plugin host says `ready` (native: its library is loaded),
 *   or once it stayed up PROCESS_SETTLE_MS (process: there is no ready signal). A start has
 *   `startTimeoutMs`: past it the child gets SIGKILL and the start has failed.
 * - A failed start (spawn error such as EMFILE, ENOENT, EACCES, EAGAIN or ENOMEM; an exit
 *   before the child started; the start deadline) backs off: no new child for 100 ms,
 *   doubling up to 10 s. Meanwhile a request that no live child can take gets 502
 *   (FEZZ_ERR_PLUGIN_DOWN) at once, and so do the queued ones once no child is left.
 * - A started child that crashes fails its in-flight requests with 502 and is replaced at
 *   once: no window of 502s. Other requests go to the other children or wait for the
 *   replacement (bounded by `limits.maxQueue` and their deadline). From the first crash on,
 *   `max(instances.min, 2)` children (at most `instances.max`) are kept warm, so one crash
 *   does not stall the function.
 * - Unless crashes are frequent: more than CRASH_BURST (5) crashes within a window of
 *   CRASH_WINDOW_MS (10 s, counted from the first crash after the previous window) that are
 *   also more than CRASH_SHARE (1 in 5) of the requests sent in that window — a crash loop,
 *   not a rare bad request. Then a crash backs off like a failed start. The backoff starts
 *   again from 100 ms after a crash that is not frequent, or once a child that lived
 *   STABLE_AFTER_MS after its start exits.
 * Every failure is logged once with the function and the reason, and counted in
 * `stats().crashes` (with the reason in `lastError`). A spawn failure never throws and never
 * goes unhandled: every child process, stdio stream and readline interface has its
 * 'error' listener before anything can emit.
 */
import { spawn } from 'node:child_process';
import { watch, statSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { errorResponse } from '../../wire/error-response.js';
import type { BodyStream, WireRequest, WireResponse } from '../../wire/types.js';
import type { Limits } from '../../manifest/schema.js';
import type { PendingStore } from '../../abi/pending-store.js';
import type { AbiTokens } from '../../abi/tokens.js';
import { CRON_HEADER, SCHEDULED_HANDLER, SCHEDULED_TIME_HEADER, type FunctionRuntime, type InvokeRequest, type RuntimeStats } from '../types.js';
import type { Socket } from 'node:net';
import { PluginSandboxHome } from '../sandbox/plugin-sandbox.js';
import type { PluginProcess } from '../sandbox/launched-process.js';

/** How the host reaches the ABI, for the children's environment. */
export interface AbiEndpoint {
  store: PendingStore;
  /** The admin listener's URL (FEZZ_HOST); read when a child starts. */
  url(): string;
  /** Issues each runtime's FEZZ_TOKEN, scoped to its function key, and revokes it at close. */
  tokens: AbiTokens;
  /**
   * Serve a connection as the admin listener's (AdminServer.acceptConnection): how a
   * sandboxed plugin's ABI socket reaches the ABI routes. Needed by `sandbox` runtimes only.
   */
  connection?(socket: Socket): void;
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
  abi: AbiEndpoint;
  /**
   * Deadline for a child to start, in ms (native: until the plugin host says `ready`).
   * Past it the child is killed, the start counts as failed (backoff) and its requests get 502.
   */
  startTimeoutMs: number;
  /**
   * Run every child under the sandbox profile (sandbox/plugin-sandbox.ts): own uid, pid and
   * network namespaces, no capabilities, cgroup limits, seccomp; the ABI reached through a
   * relay on the sandbox's loopback; `outbound` hosts through the egress proxy (https only).
   * Absent: children run as the host's user with the host's network (thread tier hosts).
   */
  sandbox?: { outbound: readonly string[] };
}

/** Host environment variables a plugin may need to run at all; everything else is withheld. */
const PASS_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH', 'SYSTEMROOT'];
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;
/** A child that lived this long after its start resets the backoff when it exits, in ms. */
const STABLE_AFTER_MS = 10_000;
/** Crashes are frequent past CRASH_BURST of them in CRASH_WINDOW_MS ms, if also past CRASH_SHARE of the requests. */
const CRASH_WINDOW_MS = 10_000;
const CRASH_BURST = 5;
const CRASH_SHARE = 1 / 5;
const RETRY_AFTER = ['retry-after', '1'];
/** A process plugin that is still running this long after its start counts as started, in ms. */
const PROCESS_SETTLE_MS = 150;
/** libuv threads of a sandboxed plugin (its pids cgroup allows 64 threads in all). */
const SANDBOX_POOL_MAX = 24;
/** After SIGKILL, how long `close()` still waits for the child's 'exit', in ms. */
const KILL_WAIT_MS = 200;

interface Child {
  readonly seq: number;
  /** A ChildProcess (unsandboxed), or a sandbox started through the spawner (launched-process.ts). */
  readonly proc: PluginProcess;
  readonly startedAt: number;
  inflight: number;
  readonly ids: Set<string>;
  lastActive: number;
  stopping: boolean;
  /** It started: native, the plugin host said `ready`; process, it stayed up PROCESS_SETTLE_MS. */
  ready: boolean;
  /** performance.now() when it started, in ms; 0 before. */
  readyAt: number;
  /** Exited, failed to spawn or was killed at its start deadline: #lost has run. */
  gone: boolean;
  /** Until it started: the settle timer (process) or the start deadline (native). */
  startTimer: NodeJS.Timeout | null;
  /** Ids waiting for this turn's stdin write: one write per burst, not one per request. */
  stdinQueue: string;
}

interface Waiting {
  req: InvokeRequest;
  done: Promise<WireResponse>;
}

const ignore = (): void => {};

export class PluginRuntime implements FunctionRuntime {
  readonly #o: PluginRuntimeOptions;
  #children: Child[] = [];
  #seq = 0;
  #queue: Waiting[] = [];
  #closed = false;
  #backoffMs = 0;
  /** No new child before this performance.now() time, in ms (backoff). */
  #downUntil = 0;
  /** Children kept warm: instances.min, then max(instances.min, 2) once a started child crashed. */
  #warmTarget: number;
  /** The crash window (see the module comment): its start, its crashes, the requests sent in it. */
  #windowStart = -Infinity;
  #windowCrashes = 0;
  #windowSent = 0;
  #restartTimer: NodeJS.Timeout | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  #watcher: FSWatcher | null = null;
  #entryStamp: string;
  #stats = { coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0 };
  #lastError: string | null = null;
  #readyWaiters: Array<(err: string | null) => void> = [];
  /** This runtime's ABI token (FEZZ_TOKEN): issued at the first spawn, revoked by close(). */
  #token: string | null = null;
  /** The sandbox's files and sockets (sandbox runtimes only), made at the first spawn. */
  #home: PluginSandboxHome | null = null;

  constructor(options: PluginRuntimeOptions) {
    this.#o = options;
    this.#warmTarget = options.instances.min;
    this.#entryStamp = stamp(options.entryPath);
  }

  /**
   * Send one request to a child (starting one if needed). Never rejects: 502
   * FEZZ_ERR_PLUGIN_DOWN when no child is up and none can start now (backoff) or when its
   * child dies, 503 + Retry-After when the queue is full or the runtime closed, 504 past
   * `limits.timeoutMs`, else the plugin's answer.
   */
  /** Large and chunked request bodies reach the plugin through `GET /admin/get-request-body` as they arrive. */
  readonly streamsRequestBody = true;

  invoke(req: InvokeRequest): Promise<WireResponse> {
    if (this.#closed) return Promise.resolve(errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
    const o = this.#o;
    const child = this.#pick();
    if (child === null) {
      // No child at all: backing off, or the spawn just failed.
      if (this.#children.length === 0) return Promise.resolve(errorResponse('FEZZ_ERR_PLUGIN_DOWN', [o.fnKey, this.#lastError ?? 'restarting']));
      if (this.#queue.length >= o.limits.maxQueue) return Promise.resolve(errorResponse('FEZZ_ERR_QUEUE_FULL', [o.fnKey, o.limits.maxQueue], RETRY_AFTER));
    }
    // The deadline runs from arrival: queued time counts, but a native child's cold start
    // (loading node and the library) does not, up to startTimeoutMs.
    const starting = child !== null && o.kind === 'native' && !child.ready;
    // A scheduled event's headers are the host's word: an HTTP client cannot send them (so a
    // plugin may trust them, docs/abi.md "Scheduled events").
    const wire = req.handler === SCHEDULED_HANDLER ? req.wire : withoutScheduledHeaders(req.wire);
    const done = o.abi.store.add(req.requestId, o.fnKey, wire, o.limits.timeoutMs + (starting ? o.startTimeoutMs : 0), () => {
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
    this.#windowSent++;
    if (child.stdinQueue === '') setImmediate(flushStdin, child);
    child.stdinQueue += `${id}\n`;
    const release = (): void => {
      child.inflight--;
      child.ids.delete(id);
      child.lastActive = performance.now();
      this.#dequeue(child);
    };
    void done.then((r) => {
      // A streamed answer (push-response-stream) is still being produced by this child: its
      // slot stays taken, and the child is not idle, until the stream ends.
      if (r.stream === undefined) release();
      else r.stream = untilEnd(r.stream, release);
    });
  }

  #dequeue(child: Child): void {
    while (this.#queue.length > 0 && !child.stopping && !child.gone && child.inflight < this.#o.limits.concurrency) {
      const w = this.#queue.shift()!;
      if (this.#o.abi.store.get(w.req.requestId) === undefined) continue; // expired while queued
      this.#send(child, w.req.requestId, w.done);
    }
  }

  /** Start a child. Returns null (and backs off) when spawn throws; an async spawn error comes as 'error'. */
  #spawn(): Child | null {
    const o = this.#o;
    const env: Record<string, string> = {};
    // A sandboxed child gets none of the host's environment (plugin-sandbox.ts sets PATH, HOME, TMPDIR, LANG).
    if (o.sandbox === undefined) for (const k of PASS_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    Object.assign(env, o.env, {
      FEZZ_HOST: o.abi.url(),
      FEZZ_TOKEN: this.#token ??= o.abi.tokens.issue(o.fnKey),
      FEZZ_FUNCTION_ID: o.id,
      FEZZ_FUNCTION_VERSION: o.version,
      // Native calls run on libuv's pool. A sandbox has at most PIDS_MAX (64) threads in all:
      // its pool stops at SANDBOX_POOL_MAX, and calls past that wait for a thread.
      UV_THREADPOOL_SIZE: String(Math.min(o.sandbox !== undefined ? SANDBOX_POOL_MAX : 1024, Math.max(4, o.limits.concurrency))),
    });
    let proc: PluginProcess;
    try {
      if (o.sandbox !== undefined) {
        const connection = o.abi.connection;
        if (connection === undefined) throw new Error('this host cannot serve the ABI to a sandbox (no ABI connection handler)');
        this.#home ??= new PluginSandboxHome({
          fnKey: o.fnKey, kind: o.kind, fnDir: o.cwd, entryPath: o.entryPath, memoryMb: o.limits.memoryMb,
          outbound: o.sandbox.outbound, abiConnection: (socket) => connection(socket), logger: o.logger,
        });
        proc = this.#home.spawn(env);
      } else {
        proc = spawn(o.command[0]!, o.command.slice(1), {
          cwd: o.cwd, env,
          stdio: ['pipe', 'pipe', 'pipe', o.kind === 'native' ? 'pipe' : 'ignore'],
        });
      }
    } catch (err) {
      this.#failed((err as Error).message, false, undefined, 0);
      return null;
    }
    const now = performance.now();
    const child: Child = {
      seq: ++this.#seq, proc, startedAt: now, inflight: 0, ids: new Set(), lastActive: now,
      stopping: false, ready: false, readyAt: 0, gone: false, startTimer: null, stdinQueue: '',
    };
    // Listeners first: a failed spawn (EMFILE, ENOENT, EACCES, EAGAIN) emits 'error' on the
    // next tick, with no pid and no 'exit'; out of descriptors, stdin/stdio are undefined.
    proc.on('error', (err) => this.#onError(child, err));
    proc.on('exit', (code, signal) => this.#lost(child, signal !== null ? `killed by ${signal}` : `exited with code ${code}`));
    this.#children.push(child);
    this.#stats.coldStarts++;
    // A sandbox started through the spawner has its pid a moment later, before its first line.
    let logger: Logger | null = null;
    const log = (): Logger => (logger ??= o.logger.child({ fn: o.fnKey, pid: proc.pid }));
    proc.stdin?.on('error', ignore); // EPIPE when the child died; 'exit' handles it
    lines(proc.stdout, (line) => log().info({ stream: 'stdout' }, line));
    lines(proc.stderr, (line) => log().warn({ stream: 'stderr' }, line));
    if (o.kind === 'native') {
      lines(proc.stdio?.[3] as Readable | null | undefined, (line) => this.#onResult(child, line));
      child.startTimer = setTimeout(() => this.#startExpired(child), o.startTimeoutMs);
    } else {
      child.startTimer = setTimeout(() => this.#started(child), Math.min(PROCESS_SETTLE_MS, o.startTimeoutMs));
    }
    o.logger.debug({ fn: o.fnKey, pid: proc.pid, instance: child.seq, command: o.command }, 'plugin process started');
    this.#watchEntry();
    this.#ensureSweep();
    return child;
  }

  #onError(child: Child, err: Error): void {
    // No pid: the spawn failed, and no 'exit' follows. Otherwise (a failed kill) the process
    // lives on, and its 'exit' is what counts.
    if (child.proc.pid === undefined) this.#lost(child, err.message); // e.g. `spawn ./main EMFILE`
    else this.#o.logger.warn({ fn: this.#o.fnKey, pid: child.proc.pid, err }, 'plugin process error');
  }

  /** The child has started: requests waiting in ready() may go. */
  #started(child: Child): void {
    if (child.gone || child.ready) return;
    if (child.startTimer !== null) { clearTimeout(child.startTimer); child.startTimer = null; }
    child.ready = true;
    child.readyAt = performance.now();
    for (const w of this.#readyWaiters.splice(0)) w(null);
  }

  /** `native` only: no `ready` within startTimeoutMs. */
  #startExpired(child: Child): void {
    child.startTimer = null;
    if (child.gone || child.ready) return;
    child.proc.kill('SIGKILL');
    // Gone now, not at its 'exit': the requests and ready() waiters must not wait for that.
    this.#lost(child, `not ready within ${this.#o.startTimeoutMs} ms (killed)`);
  }

  /** `native` only: `ready`, then `<id> <rc>` from the plugin host once a call returned. */
  #onResult(child: Child, line: string): void {
    if (line === 'ready') { this.#started(child); return; }
    const sp = line.indexOf(' ');
    const id = line.slice(0, sp);
    const rc = Number(line.slice(sp + 1));
    const store = this.#o.abi.store;
    if (store.get(id) === undefined) return; // answered by its push, as it should be
    const why = rc === 0 ? 'returned 0 without pushing a response' : `fezz_handle_request returned ${rc}`;
    this.#o.logger.error({ fn: this.#o.fnKey, requestId: id, rc }, `plugin ${why}`);
    store.settle(id, errorResponse('FEZZ_ERR_PLUGIN_ERROR', [this.#o.fnKey, why]), false);
  }

  /**
   * `child` is gone (exited, failed to spawn, killed at its start deadline): fail its
   * in-flight requests with 502, then replace it or back off. Runs once per child.
   */
  #lost(child: Child, why: string): void {
    if (child.gone) return;
    child.gone = true;
    if (child.startTimer !== null) { clearTimeout(child.startTimer); child.startTimer = null; }
    const i = this.#children.indexOf(child);
    if (i !== -1) this.#children.splice(i, 1);
    const o = this.#o;
    const store = o.abi.store;
    // A process child that fetched one of its requests was up and speaking the ABI, even if
    // younger than PROCESS_SETTLE_MS: a request crashed it, not its start.
    let started = child.ready;
    for (const id of child.ids) {
      if (!started && store.get(id)?.fetched === true) started = true;
      store.settle(id, errorResponse('FEZZ_ERR_PLUGIN_DOWN', [o.fnKey, why]), false);
    }
    if (child.ready && performance.now() - child.readyAt >= STABLE_AFTER_MS) this.#backoffMs = 0;
    if (child.stopping || this.#closed) {
      if (this.#children.length === 0) for (const w of this.#readyWaiters.splice(0)) w(`plugin process ${why}`);
      return;
    }
    this.#failed(why, started, child.proc.pid, child.ids.size);
    this.#refill();
  }

  /**
   * Count and log one failure, then decide: a crash of a started child, while crashes are
   * rare, is replaced at once (by the caller's #refill); anything else backs off, and with no
   * child left the queued requests get 502 and ready() gets the reason.
   */
  #failed(why: string, started: boolean, pid: number | undefined, inflight: number): void {
    const o = this.#o;
    this.#stats.crashes++;
    this.#lastError = why;
    let backOff = !started;
    if (started) {
      this.#warmTarget = Math.min(Math.max(o.instances.min, 2), o.instances.max);
      const now = performance.now();
      if (now - this.#windowStart > CRASH_WINDOW_MS) { this.#windowStart = now; this.#windowCrashes = 0; this.#windowSent = 0; }
      this.#windowCrashes++;
      backOff = this.#windowCrashes > CRASH_BURST && this.#windowCrashes > this.#windowSent * CRASH_SHARE;
    }
    if (backOff) {
      this.#backoffMs = this.#backoffMs === 0 ? BACKOFF_MIN_MS : Math.min(BACKOFF_MAX_MS, this.#backoffMs * 2);
      this.#downUntil = performance.now() + this.#backoffMs;
    } else {
      this.#backoffMs = 0;
      this.#downUntil = 0;
    }
    const what = started ? `plugin process ${why}` : `plugin process failed to start: ${why}`;
    o.logger.error({ fn: o.fnKey, pid, inflight, backoffMs: backOff ? this.#backoffMs : 0 }, backOff ? `${what}; no new process for ${this.#backoffMs} ms` : `${what}; replacing it`);
    if (this.#children.length > 0 || !backOff) return;
    for (const w of this.#readyWaiters.splice(0)) w(what);
    const store = o.abi.store;
    for (const w of this.#queue.splice(0)) store.settle(w.req.requestId, errorResponse('FEZZ_ERR_PLUGIN_DOWN', [o.fnKey, why]), false);
  }

  /** Start children up to the warm target (one at least while requests wait); when backing off, once the backoff ends. */
  #refill(): void {
    if (this.#closed) return;
    const need = Math.max(this.#warmTarget, this.#queue.length > 0 ? 1 : 0);
    if (this.#children.length >= need) return;
    const wait = this.#downUntil - performance.now();
    if (wait > 0) {
      this.#restartTimer ??= setTimeout(() => { this.#restartTimer = null; this.#refill(); }, wait);
      return;
    }
    while (this.#children.length < need) if (this.#spawn() === null) return;
    for (const c of this.#children) this.#dequeue(c);
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
        this.#home?.restage();
        this.#o.logger.info({ fn: this.#o.fnKey, entry: this.#o.entryPath }, 'entry changed: replacing plugin processes');
        for (const c of [...this.#children]) void this.#retire(c, this.#o.limits.timeoutMs);
        this.#refill();
      });
      // Best effort: a watcher that fails later (directory removed, inotify limits) just stops.
      this.#watcher.on('error', () => this.#watcher?.close());
      this.#watcher.unref();
    } catch {
      // Watching is best effort (e.g. inotify limits); a restart picks up the change.
    }
  }

  /**
   * Stop `child` taking work, close its stdin (it exits when done), SIGTERM it once idle,
   * SIGKILL it after `graceMs` ms. Resolves at its exit, or KILL_WAIT_MS after the SIGKILL.
   */
  #retire(child: Child, graceMs: number): Promise<void> {
    child.stopping = true;
    if (child.startTimer !== null) { clearTimeout(child.startTimer); child.startTimer = null; }
    const i = this.#children.indexOf(child);
    if (i !== -1) this.#children.splice(i, 1);
    const proc = child.proc;
    if (child.gone || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(kill); clearInterval(term); resolve(); };
      let kill = setTimeout(() => {
        proc.kill('SIGKILL');
        kill = setTimeout(done, KILL_WAIT_MS);
      }, graceMs);
      // A plugin that ignores stdin EOF gets SIGTERM once its work is done.
      const term = setInterval(() => {
        if (child.inflight === 0) { clearInterval(term); proc.kill('SIGTERM'); }
      }, 50);
      proc.once('exit', done);
      flushStdin(child);
      proc.stdin?.end();
    });
  }

  #ensureSweep(): void {
    if (this.#sweepTimer !== null) return;
    const every = Math.max(20, Math.min(this.#o.idleTtlMs / 2, 30_000));
    this.#sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const c of [...this.#children]) {
        if (this.#children.length <= this.#warmTarget) break;
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
    this.#refill();
    return Promise.resolve();
  }

  /**
   * One child started (starting one if there is none): for `native`, once the plugin host
   * reports the library loaded; for `process`, once it has stayed up PROCESS_SETTLE_MS.
   * Resolves null, or the reason the start failed, within startTimeoutMs (+ the kill).
   */
  ready(): Promise<string | null> {
    if (this.#closed) return Promise.resolve('shutting down');
    for (const c of this.#children) if (c.ready) return Promise.resolve(null);
    if (this.#children.length === 0 && this.#spawn() === null) return Promise.resolve(this.#lastError ?? 'could not start');
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /**
   * The client left: answer its pending id now (a queued id is then skipped; a running one
   * frees its child's slot, and the plugin's late fetch or push gets 404).
   */
  cancel(req: InvokeRequest): void {
    this.#o.abi.store.settle(req.requestId, errorResponse('FEZZ_ERR_CLIENT_GONE', [this.#o.fnKey]), false);
  }

  stats(): RuntimeStats {
    let inflight = 0;
    for (const c of this.#children) inflight += c.inflight;
    return { instances: this.#children.length, inflight, queued: this.#queue.length, ...this.#stats, lastError: this.#lastError };
  }

  /**
   * Stop: queued requests get 503, in-flight ones have up to `graceMs` ms, then every child
   * gets SIGKILL; then the ABI token is revoked (401 from then on). Resolves within
   * graceMs + KILL_WAIT_MS whatever the children do.
   */
  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    this.#watcher?.close();
    for (const w of this.#readyWaiters.splice(0)) w('shutting down');
    const store = this.#o.abi.store;
    for (const w of this.#queue.splice(0)) store.settle(w.req.requestId, errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER), false);
    await Promise.all([...this.#children].map((c) => this.#retire(c, graceMs)));
    if (this.#token !== null) this.#o.abi.tokens.revoke(this.#token);
    this.#token = null;
    await this.#home?.close();
  }
}

/** `stream`, calling `onEnd` once when it ends, fails or is cancelled. */
function untilEnd(stream: BodyStream, onEnd: () => void): BodyStream {
  let ended = false;
  const end = (): void => { if (!ended) { ended = true; onEnd(); } };
  const tryRead = stream.tryRead?.bind(stream);
  return {
    read: () => stream.read().then((c) => { if (c === null) end(); return c; }, (err: unknown) => { end(); throw err; }),
    cancel: (reason) => { end(); stream.cancel(reason); },
    ...(tryRead !== undefined ? { tryRead: () => { const c = tryRead(); if (c === null) end(); return c; } } : {}),
  };
}

/** Log lines of a child's stream; a stream that is missing or fails (EIO, reset) is ignored. */
function lines(stream: Readable | null | undefined, onLine: (line: string) => void): void {
  if (stream == null) return;
  stream.on('error', ignore);
  // readline re-emits its input's errors: without a listener they would be uncaught.
  createInterface({ input: stream, crlfDelay: Infinity }).on('line', onLine).on('error', ignore);
}

function flushStdin(child: Child): void {
  const text = child.stdinQueue;
  child.stdinQueue = '';
  const stdin = child.proc.stdin;
  if (text !== '' && stdin != null && stdin.writable) stdin.write(text); // no stdin: the spawn failed
}

function stamp(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '';
  }
}

/**
 * `wire` without the headers of a scheduled event (`fezz-cron`, `fezz-scheduled-time`, any
 * case), which only the host's scheduler may send to a plugin; `wire` itself when it has none.
 */
function withoutScheduledHeaders(wire: WireRequest): WireRequest {
  const h = wire.headers;
  const reserved = (name: string): boolean => (name.length === CRON_HEADER.length || name.length === SCHEDULED_TIME_HEADER.length) &&
    (name.toLowerCase() === CRON_HEADER || name.toLowerCase() === SCHEDULED_TIME_HEADER);
  let found = false;
  for (let i = 0; i < h.length; i += 2) if (reserved(h[i]!)) { found = true; break; }
  if (!found) return wire;
  const headers: string[] = [];
  for (let i = 0; i < h.length; i += 2) if (!reserved(h[i]!)) headers.push(h[i]!, h[i + 1]!);
  return { ...wire, headers };
}
