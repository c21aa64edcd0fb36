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
 * channel, ~40 MB), and asks it to start each sandbox. Its fork stays cheap and happens on
 * another process. The spawner sends back the sandbox's fd-3 channel and its stderr as socket
 * handles over IPC (sendHandle), then its pid and, when it ends, its exit code or signal. The
 * host talks to the sandbox over the channel directly, as before: the spawner only spawns,
 * kills (on request) and reports exits.
 *
 * Lifetime: the spawner is unref'd (it never keeps the host alive) and exits when its IPC
 * channel closes, which is when the host exits, however it exits (even SIGKILL). It kills
 * every sandbox it started first, and the sandboxes' launchers have `--pdeathsig KILL` on the
 * spawner (bwrap.ts), so none outlives it. If the spawner cannot be started or dies, the
 * sandboxes it had report an exit (code 1, "the spawner stopped") and the next start
 * starts a new spawner.
 *
 * What crosses IPC is argv, the launcher's environment (PATH only, bwrap.ts `launchEnv`) and
 * the seccomp filter's path: nothing secret, and the spawner runs with the host's own
 * privileges (it is not a sandbox boundary, bwrap is).
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
}

/**
 * A launched sandbox as the host sees it. Events: `'channel'` (Socket: its fd 3, once),
 * `'stderr'` (Socket, once), `'exit'` (code: number | null, signal: string | null, once; after
 * a spawn error too, with code null), `'error'` (Error: the spawn failed, or the spawner died).
 */
export interface Launched extends EventEmitter {
  /** Outermost process id (sh, setpriv or bwrap), once known. */
  readonly pid: number | undefined;
  /** SIGKILL the sandbox (now if started, else as soon as it is). */
  kill(): void;
  /**
   * Whether the host's event loop is kept alive while this sandbox's channel is on its way
   * (after that, the channel socket's own ref does it). @default true
   */
  setRef(ref: boolean): void;
}

type ToSpawner =
  | { op: 'spawn'; id: number; argv: string[]; env: Record<string, string>; seccompFile: string | null }
  | { op: 'kill'; id: number };
type FromSpawner =
  | { op: 'channel'; id: number; pid: number }
  | { op: 'stderr'; id: number }
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
  if (m.op === 'kill') { const c = children.get(m.id); if (c) { try { c.kill('SIGKILL'); } catch {} } return; }
  if (m.op !== 'spawn') return;
  let fd = null;
  let c;
  try {
    if (m.seccompFile !== null) fd = openSync(m.seccompFile, 'r');
    c = spawn(m.argv[0], m.argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', 'pipe', ...(fd !== null ? [fd] : [])], env: m.env, cwd: '/' });
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
  process.send({ op: 'channel', id: m.id, pid: c.pid }, c.stdio[3]);
  process.send({ op: 'stderr', id: m.id }, c.stderr);
});
process.on('disconnect', () => {
  for (const c of children.values()) { try { c.kill('SIGKILL'); } catch {} }
  process.exit(0);
});
`;

class LaunchedSandbox extends EventEmitter implements Launched {
  pid: number | undefined;
  #kill: () => void;
  #killed = false;
  #ended = false;
  #holding = false;
  #started = false;
  constructor(kill: () => void) {
    super();
    this.#kill = kill;
    this.setRef(true);
  }
  setRef(ref: boolean): void {
    const hold = ref && !this.#started && !this.#ended;
    if (hold === this.#holding) return;
    this.#holding = hold;
    holdSpawner(hold ? 1 : -1);
  }
  kill(): void {
    if (this.#ended) return;
    this.#killed = true;
    if (this.pid !== undefined) this.#kill();
  }
  /** Called by the spawner client. */
  started(pid: number): void {
    this.pid = pid;
    this.#started = true;
    if (this.#holding) { this.#holding = false; holdSpawner(-1); }
    if (this.#killed) this.#kill();
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
      case 'channel':
        l.started(m.pid);
        if (handle !== undefined) l.emit('channel', handle);
        return;
      case 'stderr':
        if (handle !== undefined) l.emit('stderr', handle);
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
  const sp = spawner;
  const id = ++seq;
  const l = new LaunchedSandbox(() => { if (sp.connected) sp.send({ op: 'kill', id } satisfies ToSpawner); });
  launched.set(id, l);
  sp.send({ op: 'spawn', id, argv: spec.argv, env: spec.env, seccompFile: spec.seccompFile } satisfies ToSpawner);
  return l;
}

/** Pids of every sandbox launched and not yet ended (for the host's last-resort kill at exit). */
export function launchedPids(): number[] {
  const out: number[] = [];
  for (const l of launched.values()) if (l.pid !== undefined) out.push(l.pid);
  return out;
}
