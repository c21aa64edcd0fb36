/**
 * Starting sandbox processes without stalling the host.
 *
 * On Linux, `child_process.spawn` forks the calling process before it execs, and a fork
 * copies the page tables of the whole process on the calling thread: measured on Node 20 and
 * 24, 1.4 ms for a 47 MB process, 8-10 ms at 150 MB, 31 ms at 470 MB. In the host, whose
 * RSS grows with every warm worker thread, each sandbox start (a cold start, a spare's
 * refill) held up every request of every function for that long.
 *
 * So the host starts one small helper process, the spawner (a bare Node process with an IPC
 * channel, ~40 MB), and asks it to start each sandbox (an isolate's, and a plugin's:
 * launched-process.ts). Its fork stays cheap and happens on another process. The spawner sends
 * back the sandbox's pipes (an isolate sandbox's fd-3 channel and stderr; a plugin's stdin,
 * stdout, stderr and, native, fd 3) as socket handles over IPC (sendHandle), then its pid and,
 * when it ends, its exit code or signal. The host talks to the sandbox over those directly, as
 * before: the spawner only spawns, signals (on request) and reports exits.
 *
 * Lifetime: the spawner is unref'd (it keeps the host alive only while a sandbox's pipes are on
 * their way, and while a plugin's sandbox runs, as a ChildProcess would) and exits when its IPC
 * channel closes, which is when the host exits, however it exits (even SIGKILL). It kills
 * every sandbox it started first, and the sandboxes' launchers have `--pdeathsig KILL` on the
 * spawner (bwrap.ts), so none outlives it. An exiting host also kills them itself, last
 * (launchers whose uid setpriv changed outlived a host through --die-with-parent alone). If the spawner cannot be started or dies, the
 * sandboxes it had report an exit (code 1, "the spawner stopped") and the next start
 * starts a new spawner.
 *
 * What crosses IPC is argv, the launcher's environment and the seccomp filter's path. For an
 * isolate sandbox that environment is PATH only (bwrap.ts `launchEnv`); for a plugin sandbox it
 * is the plugin's own (its scoped ABI token, the secrets its manifest grants), which bwrap hands
 * on. The IPC channel is a private socket pair between the host and its own helper, which runs
 * with the host's privileges and keeps nothing: it is not a sandbox boundary, bwrap is.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

/** How to launch one sandbox (what `spawn` would get in the host). */
export interface LaunchSpec {
  /** argv[0] is the program (sh, setpriv or bwrap), found on `env.PATH`. */
  argv: string[];
  /** The launcher's whole environment. */
  env: Record<string, string>;
  /** A seccomp filter file to open as the launcher's fd 4 (bwrap `--seccomp 4`), or null. */
  seccompFile: string | null;
  /**
   * fds 0 to 3: a pipe each (sent back to the host as a socket, event `'pipe'`) or nothing.
   * @default ['ignore', 'ignore', 'pipe', 'pipe'] (an isolate sandbox: stderr and its channel)
   */
  stdio?: readonly StdioSlot[];
  /**
   * Keep the host's event loop alive until the process exits, as a ChildProcess does (a
   * plugin's), instead of only until its pipes arrive (an isolate sandbox's, whose channel
   * then does it). @default false
   */
  refUntilExit?: boolean;
}

/** One of a launched process's fds 0 to 3. */
export type StdioSlot = 'pipe' | 'ignore';
const SANDBOX_STDIO: readonly StdioSlot[] = ['ignore', 'ignore', 'pipe', 'pipe'];

/**
 * A launched sandbox as the host sees it. Events, in this order: `'pipe'` (fd: number, Socket;
 * once per piped fd of `LaunchSpec.stdio`: fd 3 first, then 0, 1, 2), with `'channel'` (Socket)
 * for fd 3 and `'stderr'` (Socket) for fd 2 besides; `'spawn'` (pid known); `'exit'` (code:
 * number | null, signal: string | null, once; after a spawn error too, with code null);
 * `'error'` (Error: the spawn failed, or the spawner died).
 */
export interface Launched extends EventEmitter {
  /** Outermost process id (sh, setpriv or bwrap), once known. */
  readonly pid: number | undefined;
  /** Signal the sandbox's outermost process (now if started, else as soon as it is). @default 'SIGKILL' */
  kill(signal?: NodeJS.Signals): void;
  /**
   * Whether the host's event loop is kept alive while this sandbox's channel is on its way
   * (after that, the channel socket's own ref does it). @default true
   */
  setRef(ref: boolean): void;
}

type ToSpawner =
  | { op: 'spawn'; id: number; argv: string[]; env: Record<string, string>; seccompFile: string | null; stdio: readonly StdioSlot[] }
  | { op: 'kill'; id: number; signal: NodeJS.Signals };
type FromSpawner =
  | { op: 'pipe'; id: number; fd: number; pid: number }
  | { op: 'started'; id: number; pid: number }
  | { op: 'exit'; id: number; code: number | null; signal: string | null }
  | { op: 'error'; id: number; message: string; code?: string };

/**
 * The spawner's program, run with `node -e` (no file to resolve from src/ or dist/, no
 * loader flags inherited). It forks bwrap on its own (small) process; see the module doc.
 */
const SPAWNER_SOURCE = String.raw`
'use strict';
const { spawn } = require('node:child_process');
const { openSync, closeSync } = require('node:fs');
const children = new Map();
process.on('message', (m) => {
  if (m.op === 'kill') { const c = children.get(m.id); if (c) { try { c.kill(m.signal); } catch {} } return; }
  if (m.op !== 'spawn') return;
  let fd = null;
  let c;
  try {
    if (m.seccompFile !== null) fd = openSync(m.seccompFile, 'r');
    c = spawn(m.argv[0], m.argv.slice(1), { stdio: [...m.stdio, ...(fd !== null ? [fd] : [])], env: m.env, cwd: '/' });
  } catch (err) {
    process.send({ op: 'error', id: m.id, message: String(err && err.message), code: err && err.code });
    process.send({ op: 'exit', id: m.id, code: null, signal: null });
    return;
  } finally {
    if (fd !== null) closeSync(fd);
  }
  let failed = false;
  c.once('error', (err) => {
    failed = true;
    children.delete(m.id);
    process.send({ op: 'error', id: m.id, message: String(err && err.message), code: err && err.code });
    process.send({ op: 'exit', id: m.id, code: null, signal: null });
  });
  if (c.pid === undefined) return;
  children.set(m.id, c);
  c.once('exit', (code, signal) => {
    children.delete(m.id);
    if (!failed) process.send({ op: 'exit', id: m.id, code, signal });
  });
  // The spawner must not read what the sandbox writes before its pipe reaches the host (the
  // handles go one at a time, each after the host's ack): stop reading now, in the same tick
  // as the spawn, so every byte stays in the pipe for the host.
  for (const n of [1, 2, 3]) { const s = c.stdio[n]; if (s && s._handle && typeof s._handle.readStop === 'function') s._handle.readStop(); }
  for (const n of [3, 0, 1, 2]) if (m.stdio[n] === 'pipe') process.send({ op: 'pipe', id: m.id, fd: n, pid: c.pid }, c.stdio[n]);
  process.send({ op: 'started', id: m.id, pid: c.pid });
});
process.on('disconnect', () => {
  for (const c of children.values()) { try { c.kill('SIGKILL'); } catch {} }
  process.exit(0);
});
`;

class LaunchedSandbox extends EventEmitter implements Launched {
  pid: number | undefined;
  #kill: (signal: NodeJS.Signals) => void;
  #killed = false;
  #ended = false;
  #holding = false;
  #started = false;
  #pendingSignal: NodeJS.Signals = 'SIGKILL';
  readonly #untilExit: boolean;
  constructor(kill: (signal: NodeJS.Signals) => void, untilExit: boolean) {
    super();
    this.#kill = kill;
    this.#untilExit = untilExit;
    this.setRef(true);
  }
  setRef(ref: boolean): void {
    const hold = ref && (this.#untilExit || !this.#started) && !this.#ended;
    if (hold === this.#holding) return;
    this.#holding = hold;
    holdSpawner(hold ? 1 : -1);
  }
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.#ended) return;
    if (this.pid !== undefined) { this.#kill(signal); return; }
    // Not started yet: the strongest signal asked for goes as soon as it is.
    if (!this.#killed || signal === 'SIGKILL') this.#pendingSignal = signal;
    this.#killed = true;
  }
  /** Called by the spawner client. */
  /** Its pid is known (it runs; its pipes are on their way): a kill asked for meanwhile goes now. */
  running(pid: number): void {
    if (this.pid !== undefined) return;
    this.pid = pid;
    if (this.#killed) this.#kill(this.#pendingSignal);
  }
  started(pid: number): void {
    this.#started = true;
    if (this.#holding && !this.#untilExit) { this.#holding = false; holdSpawner(-1); }
    this.emit('spawn');
    this.running(pid);
  }
  ended(code: number | null, signal: string | null): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#holding) { this.#holding = false; holdSpawner(-1); }
    this.emit('exit', code, signal);
  }
}

let spawner: ChildProcess | null = null;
let seq = 0;
const launched = new Map<number, LaunchedSandbox>();
/** Launches whose channel is on its way and that keep the host alive meanwhile. */
let held = 0;

function holdSpawner(delta: number): void {
  held += delta;
  const channel = spawner?.channel as { ref?: () => void; unref?: () => void } | null | undefined;
  if (held > 0) channel?.ref?.();
  else channel?.unref?.();
}

function startSpawner(): ChildProcess {
  const child = spawn(process.execPath, ['-e', SPAWNER_SOURCE], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  child.unref();
  (child.channel as { unref?: () => void } | undefined)?.unref?.();
  child.on('message', (m: FromSpawner, handle?: Socket) => {
    const l = launched.get(m.id);
    if (l === undefined) { handle?.destroy(); return; }
    switch (m.op) {
      case 'pipe':
        l.running(m.pid);
        if (handle === undefined) return;
        l.emit('pipe', m.fd, handle);
        if (m.fd === 3) l.emit('channel', handle);
        else if (m.fd === 2) l.emit('stderr', handle);
        return;
      case 'started':
        l.started(m.pid);
        return;
      case 'error':
        l.emit('error', Object.assign(new Error(m.message), m.code !== undefined ? { code: m.code } : {}));
        return;
      case 'exit':
        launched.delete(m.id);
        l.ended(m.code, m.signal);
        return;
    }
  });
  const gone = (): void => {
    if (spawner !== child) return;
    spawner = null;
    for (const [id, l] of launched) {
      launched.delete(id);
      l.emit('error', new Error('the sandbox spawner stopped'));
      l.ended(1, null);
    }
  };
  child.once('exit', gone);
  child.once('error', gone);
  child.once('disconnect', gone);
  return child;
}

/**
 * Launch a sandbox through the spawner process (started on first use).
 * Errors are events on the result (`'error'`, then `'exit'`), never throws.
 */
export function launchSandbox(spec: LaunchSpec): Launched {
  if (spawner === null || !spawner.connected) spawner = startSpawner();
  ensureExitHook();
  const sp = spawner;
  const id = ++seq;
  const l = new LaunchedSandbox((signal) => { if (sp.connected) sp.send({ op: 'kill', id, signal } satisfies ToSpawner); }, spec.refUntilExit === true);
  launched.set(id, l);
  sp.send({ op: 'spawn', id, argv: spec.argv, env: spec.env, seccompFile: spec.seccompFile, stdio: spec.stdio ?? SANDBOX_STDIO } satisfies ToSpawner);
  return l;
}

let exitHook = false;
/** On the host's exit, SIGKILL every sandbox still running, synchronously (see the module doc). */
function ensureExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const pid of launchedPids()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  });
}

/** Pids of every sandbox launched and not yet ended (for the host's last-resort kill at exit). */
export function launchedPids(): number[] {
  const out: number[] = [];
  for (const l of launched.values()) if (l.pid !== undefined) out.push(l.pid);
  return out;
}
