/**
 * One sandbox process, seen from the host as an {@link InstanceTransport} (what a Worker is to
 * the pool): `postMessage` writes a frame (framing.ts) on the process's fd 3, a unix socket;
 * frames it sends back are `'message'` events; its end is one `'exit'` event (after every
 * message it sent), with its exit code, or 128 + the signal number when killed. A V8 heap
 * out of memory (seen on its stderr) is reported as an `'error'` with code
 * `ERR_WORKER_OUT_OF_MEMORY` first, as a worker's would be. Its stdout is /dev/null; the tail
 * of its stderr (4 KiB) is kept for the error message of an unexpected exit.
 */
import path from 'node:path';
import type { Socket } from 'node:net';
import { seccompFilter } from './seccomp.js';
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { encodeFrame, FrameDecoder } from './framing.js';
import { launchEnv, sandboxCommand, type SandboxSpec } from './bwrap.js';
import { killCgroupMembers, makeSandboxCgroups, removeCgroups } from './cgroup.js';
import { newInbox, releaseSandboxInbox, sandboxRuntimeDir } from './sandbox-runtime.js';
import { launchSandbox, type Launched } from './spawner.js';
import type { InstanceTransport } from '../isolate/protocol.js';

const STDERR_TAIL = 4096;

let warnedNoSeccomp = false;

export class SandboxProcess extends EventEmitter implements InstanceTransport {
  /** The host directory bound at /fn in this sandbox. */
  readonly inbox: string;
  readonly #launched: Launched;
  /** Its fd 3, once the spawner handed it over; frames posted before that wait in #queued. */
  #channel: Socket | null = null;
  #queued: Buffer[] = [];
  #stderrSocket: Socket | null = null;
  #stderr = '';
  #exitCode: number | null = null;
  #refed = true;
  readonly #exited: Promise<number>;

  /**
   * Start a blank sandbox with `memoryMb` of heap that may read `readPaths`; it waits for a
   * Load message. The process is started by the spawner (spawner.ts), off the host's thread.
   * @throws if the runtime cannot be bundled; a launch that fails later is an `'error'` then
   *   an `'exit'` event.
   */
  constructor(memoryMb: number, readPaths: readonly string[]) {
    super();
    const runtimeDir = sandboxRuntimeDir();
    this.inbox = newInbox();
    const cgroups = makeSandboxCgroups(memoryMb);
    const cgroupDirs = cgroups.dirs;
    const filter = seccompFilter(path.dirname(runtimeDir));
    if (filter.file === null && !warnedNoSeccomp) {
      warnedNoSeccomp = true;
      process.emitWarning(`fezz sandbox: ${filter.reason}`);
    }
    // The filter goes to bwrap as fd 4 (after stdin, stdout, stderr and the channel).
    const spec: SandboxSpec = { runtimeDir, inbox: this.inbox, memoryMb, readPaths, cgroupDirs, pidsCgroup: cgroups.pids, ...(filter.file !== null ? { seccompFd: 4 } : {}) };
    const launched = launchSandbox({ argv: sandboxCommand(spec), env: launchEnv(), seccompFile: filter.file });
    this.#launched = launched;
    // What the sandbox sends is untrusted: a frame larger than twice its memory limit (32 MiB
    // at least) ends it, before the host buffers it.
    const maxFrame = Math.max(32, 2 * memoryMb) * 1024 * 1024;
    const decoder = new FrameDecoder((m) => this.emit('message', m), maxFrame);
    // The end: the process exited, and its channel and stderr are read to the end (so every
    // message is in, and the stderr tail is whole), whichever comes last.
    let exit: { code: number | null; signal: string | null } | null = null;
    let channelOpen = false;
    let stderrOpen = false;
    let spawnError: Error | null = null;
    let settle: () => void = () => undefined;
    this.#exited = new Promise((resolve) => {
      settle = () => {
        if (exit === null || channelOpen || stderrOpen || this.#exitCode !== null) return;
        const n = exit.code ?? (exit.signal !== null ? 128 + (constants.signals[exit.signal as NodeJS.Signals] ?? 0) : 1);
        this.#exitCode = n;
        releaseSandboxInbox(this.inbox);
        removeCgroups(cgroupDirs);
        if (spawnError !== null) this.emit('error', spawnError);
        else if (/JavaScript heap out of memory|Reached heap limit/.test(this.#stderr)) {
          this.emit('error', Object.assign(new Error(`sandbox out of V8 heap (limit ${memoryMb} MB)`), { code: 'ERR_WORKER_OUT_OF_MEMORY' }));
        } else if (n !== 0 && this.#stderr.trim() !== '') {
          // The error line itself (Node prints the source line and a caret above it, the stack
          // and the error's properties below), then the last lines.
          const lines = this.#stderr.trim().split('\n');
          const error = lines.find((l) => /^\w*Error\b|^\w*Error:/.test(l.trim()));
          const last = [...(error !== undefined && !lines.slice(-3).includes(error) ? [error.trim(), '…'] : []), ...lines.slice(-3)].join(' | ');
          this.emit('error', new Error(`sandbox process exited with code ${n}: ${last}`));
        }
        this.emit('exit', n);
        resolve(n);
      };
    });
    launched.once('channel', (channel: Socket) => {
      channelOpen = true;
      this.#channel = channel;
      channel.on('data', (chunk: Buffer) => {
        try {
          decoder.push(chunk);
        } catch (err) {
          this.#stderr += `\nfezz: ${(err as Error).message}: the sandbox was stopped`;
          launched.kill();
        }
      });
      channel.on('error', () => undefined);
      channel.once('close', () => { channelOpen = false; settle(); });
      if (!this.#refed) channel.unref();
      if (this.#exitCode === null && this.#queued.length > 0) channel.write(this.#queued.length === 1 ? this.#queued[0]! : Buffer.concat(this.#queued));
      this.#queued = [];
    });
    launched.once('stderr', (stderr: Socket) => {
      stderrOpen = true;
      this.#stderrSocket = stderr;
      stderr.setEncoding('utf8').on('data', (text: string) => {
        this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL);
      });
      stderr.on('error', () => undefined);
      stderr.once('close', () => { stderrOpen = false; settle(); });
      if (!this.#refed) stderr.unref();
    });
    launched.on('error', (err: Error) => { spawnError ??= err; });
    launched.once('exit', (code: number | null, signal: string | null) => {
      exit = { code, signal };
      // The launcher is gone: whatever of the sandbox is left (an inner bwrap stuck in its
      // set-up holds the channel open, and would wait forever) ends with it. What it wrote
      // before is still in the host's end of the channel.
      killCgroupMembers(cgroupDirs);
      // A spawner that died: nothing more comes on the channel either.
      if (spawnError !== null) { this.#channel?.destroy(); this.#stderrSocket?.destroy(); }
      settle();
    });
  }

  /** The process id of the outermost process (sh, setpriv or bwrap), for diagnostics. */
  get pid(): number | undefined { return this.#launched.pid; }

  postMessage(message: unknown): void {
    if (this.#exitCode !== null) return;
    const channel = this.#channel;
    if (channel === null) { this.#queued.push(encodeFrame(message)); return; }
    if (channel.destroyed) return;
    channel.write(encodeFrame(message));
  }

  terminate(): Promise<number> {
    // bwrap is the launched process (sh and setpriv exec it); its sandbox dies with it
    // (--die-with-parent of the sandbox's pid 1, and the pid namespace with its pid 1).
    if (this.#exitCode === null) this.#launched.kill();
    return this.#exited;
  }

  ref(): void {
    this.#refed = true;
    this.#launched.setRef(true);
    this.#channel?.ref();
    this.#stderrSocket?.ref();
  }

  unref(): void {
    this.#refed = false;
    this.#launched.setRef(false);
    this.#channel?.unref();
    this.#stderrSocket?.unref();
  }
}
