/**
 * A plugin's sandbox started through the spawner process (spawner.ts) instead of
 * `child_process.spawn` in the host, whose fork stalls every request of every function for
 * 16-30 ms at a host RSS of ~250 MB (measured on Node 20 here), once per plugin start.
 *
 * It looks like the part of a `ChildProcess` the plugin runtime uses ({@link PluginProcess}):
 * `stdin`, `stdout`, `stderr` and `stdio[3]` are streams from the start, joined to the real
 * pipes when the spawner hands them over (what is written to `stdin` before that waits). It
 * keeps the event loop alive until it exits. The events follow Node's: `'spawn'`, `'exit'`
 * (code, signal), then at once `'close'` (its pipes end on their own, once read to their end);
 * a spawn that fails is `'error'` with no pid and no `'exit'`, then `'close'`. The spec may
 * still be on its way (a promise: files to stage, a runtime to prepare): a rejected one is such
 * an `'error'`, and a `kill` before it arrives ends the process before it starts (`'exit'` with
 * the signal).
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { launchSandbox, type LaunchSpec, type StdioSlot } from './spawner.js';

/**
 * What the plugin runtime uses of a child process: a `ChildProcess` from `spawn`, or a
 * {@link LaunchedProcess}.
 */
export interface PluginProcess extends EventEmitter {
  /** Its process id; undefined until it started (and for good if it failed to). */
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** fds 0 to 3 (and more for a ChildProcess); null where not piped. */
  readonly stdio: readonly (Readable | Writable | null | undefined)[];
  /** The exit code once it exited by itself, else null. */
  readonly exitCode: number | null;
  /** The signal that ended it, else null. */
  readonly signalCode: NodeJS.Signals | null;
  /** Send `signal` (default SIGTERM, as `ChildProcess.kill`). */
  kill(signal?: NodeJS.Signals): boolean;
}

/** How to start one process: the spawner's launch (its pipe layout is the process's), and what to do at its end. */
export interface ProcessSpec extends Omit<LaunchSpec, 'stdio' | 'refUntilExit'> {
  /** Called once at `'close'`, whatever ended it (cgroups to remove). */
  readonly cleanup?: () => void;
}

/** See the module doc. Start one with {@link launchProcess}. */
export class LaunchedProcess extends EventEmitter implements PluginProcess {
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: readonly (Readable | Writable | null)[];
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  #launched: ReturnType<typeof launchSandbox> | null = null;
  /** A signal asked for before the spec arrived. */
  #early: NodeJS.Signals | null = null;

  /** `slots`: the layout of fds 0 to 3, known before the spec itself. */
  constructor(slots: readonly StdioSlot[], spec: ProcessSpec | Promise<ProcessSpec>) {
    super();
    const stdio: (PassThrough | null)[] = [0, 1, 2, 3].map((n) => (slots[n] === 'pipe' ? new PassThrough() : null));
    this.stdio = stdio;
    this.stdin = stdio[0] ?? null;
    this.stdout = stdio[1] ?? null;
    this.stderr = stdio[2] ?? null;
    if (!(spec instanceof Promise)) { this.#start(spec, slots, stdio); return; }
    spec.then(
      (s) => {
        if (this.#early === null) { this.#start(s, slots, stdio); return; }
        // Killed while it was being prepared: it never starts.
        s.cleanup?.();
        this.signalCode = this.#early;
        this.emit('exit', null, this.#early);
        this.#endPipes(stdio, new Set());
        this.emit('close', null, this.#early);
      },
      (err: unknown) => {
        this.emit('error', err instanceof Error ? err : new Error(String(err)));
        this.#endPipes(stdio, new Set());
        this.emit('close', null, null);
      },
    );
  }

  #endPipes(stdio: readonly (PassThrough | null)[], joined: ReadonlySet<number>): void {
    stdio.forEach((s, fd) => { if (s !== null && !joined.has(fd)) s.end(); });
  }

  #start(spec: ProcessSpec, slots: readonly StdioSlot[], stdio: readonly (PassThrough | null)[]): void {
    // Like a ChildProcess, it keeps the event loop alive until it exits.
    const launched = launchSandbox({ ...spec, stdio: slots, refUntilExit: true });
    this.#launched = launched;
    const joined = new Set<number>();
    launched.on('pipe', (fd: number, socket: Socket) => {
      const stream = stdio[fd];
      if (stream === null || stream === undefined) { socket.destroy(); return; }
      joined.add(fd);
      // EPIPE and resets come with the process's end, which 'exit' reports.
      socket.on('error', () => undefined);
      if (fd === 0) {
        // Whatever was written before the pipe arrived goes first; ending stdin ends the pipe.
        stream.pipe(socket);
      } else {
        socket.pipe(stream);
      }
    });
    let started = false;
    let failed = false;
    launched.once('spawn', () => { started = true; this.emit('spawn'); });
    launched.on('error', (err: Error) => {
      if (!started) failed = true;
      this.emit('error', err);
    });
    launched.once('exit', (code: number | null, signal: string | null) => {
      if (!failed) {
        this.exitCode = code;
        this.signalCode = signal as NodeJS.Signals | null;
        this.emit('exit', code, signal);
      }
      // A pipe that never arrived (the spawn failed) ends here; the others end with their socket.
      this.#endPipes(stdio, joined);
      spec.cleanup?.();
      this.emit('close', code, signal);
    });
  }

  get pid(): number | undefined { return this.#launched?.pid; }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    if (this.#launched !== null) this.#launched.kill(signal);
    else if (this.#early === null || signal === 'SIGKILL') this.#early = signal;
    return true;
  }
}

/** The pipe layout every plugin sandbox has: stdin, stdout, stderr, and fd 3 for a native plugin. */
export function pluginStdio(native: boolean): readonly StdioSlot[] {
  return ['pipe', 'pipe', 'pipe', native ? 'pipe' : 'ignore'];
}

/**
 * Start `spec.argv` through the spawner with pipes on `slots` (fds 0 to 3) and
 * `spec.seccompFile` as fd 4; `spec` may still be on its way.
 * Never throws: a failure is the result's `'error'` event.
 */
export function launchProcess(slots: readonly StdioSlot[], spec: ProcessSpec | Promise<ProcessSpec>): LaunchedProcess {
  return new LaunchedProcess(slots, spec);
}
