/**
 * One sandbox process, seen from the host as an {@link InstanceTransport} (what a Worker is to
 * the pool): `postMessage` writes a frame (framing.ts) on the process's fd 3, a unix socket;
 * frames it sends back are `'message'` events; its end is one `'exit'` event (after every
 * message it sent), with its exit code, or 128 + the signal number when killed. A V8 heap
 * out of memory (seen on its stderr) is reported as an `'error'` with code
 * `ERR_WORKER_OUT_OF_MEMORY` first, as a worker's would be. Its stdout is discarded; the tail
 * of its stderr (4 KiB) is kept for the error message of an unexpected exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { seccompFilter } from './seccomp.js';
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { Readable, Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder } from './framing.js';
import { launchEnv, sandboxCommand, type SandboxSpec } from './bwrap.js';
import { makeSandboxCgroups, removeCgroups } from './cgroup.js';
import { newInbox, releaseSandboxInbox, sandboxRuntimeDir } from './sandbox-runtime.js';
import type { InstanceTransport } from '../isolate/protocol.js';

const STDERR_TAIL = 4096;

/**
 * Every sandbox still running, so that none outlives the host: bwrap's --die-with-parent is
 * not enough once setpriv changed the launcher's uid (seen: orphaned bwrap processes after a
 * host exited with spares up). On the host's exit they are killed, synchronously.
 */
const live = new Set<ChildProcess>();
let exitHook = false;
/**
 * Kill `child` (a sandbox launcher: sh, setpriv or bwrap) when the host process exits, however
 * it exits; forgotten at its own 'close'. Plugin sandboxes (plugin-sandbox.ts) use it too.
 */
export function trackSandboxChild(child: ChildProcess): void {
  track(child);
  child.once('close', () => live.delete(child));
}
function track(child: ChildProcess): void {
  live.add(child);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const c of live) {
      try { c.kill('SIGKILL'); } catch { /* already gone */ }
    }
  });
}
let warnedNoSeccomp = false;

export class SandboxProcess extends EventEmitter implements InstanceTransport {
  /** The host directory bound at /fn in this sandbox. */
  readonly inbox: string;
  readonly #child: ChildProcess;
  readonly #channel: Duplex;
  #stderr = '';
  #exitCode: number | null = null;
  readonly #exited: Promise<number>;

  /**
   * Start a blank sandbox with `memoryMb` of heap that may read `readPaths`; it waits for a
   * Load message.
   * @throws if the runtime cannot be bundled or the process cannot be spawned.
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
    const bpf = filter.file !== null ? openSync(filter.file, 'r') : null;
    const spec: SandboxSpec = { runtimeDir, inbox: this.inbox, memoryMb, readPaths, cgroupDirs, pidsCgroup: cgroups.pids, ...(bpf !== null ? { seccompFd: 4 } : {}) };
    const argv = sandboxCommand(spec);
    try {
      this.#child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe', ...(bpf !== null ? [bpf] : [])], env: launchEnv(), cwd: '/' });
    } finally {
      if (bpf !== null) closeSync(bpf);
    }
    this.#channel = this.#child.stdio[3] as Duplex;
    // What the sandbox sends is untrusted: a frame larger than twice its memory limit (32 MiB
    // at least) ends it, before the host buffers it.
    const maxFrame = Math.max(32, 2 * memoryMb) * 1024 * 1024;
    const decoder = new FrameDecoder((m) => this.emit('message', m), maxFrame);
    this.#channel.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (err) {
        this.#stderr += `\nfezz: ${(err as Error).message}: the sandbox was stopped`;
        this.#child.kill('SIGKILL');
      }
    });
    this.#channel.on('error', () => undefined);
    (this.#child.stdout as Readable).resume();
    (this.#child.stderr as Readable).setEncoding('utf8').on('data', (s: string) => {
      this.#stderr = (this.#stderr + s).slice(-STDERR_TAIL);
    });
    this.#exited = new Promise((resolve) => {
      let spawnError: Error | null = null;
      this.#child.once('error', (err) => { spawnError = err; });
      // 'close': after its stdio (the channel included) is drained, so every message is in.
      track(this.#child);
      this.#child.once('close', (code, signal) => {
        live.delete(this.#child);
        const n = code ?? (signal !== null ? 128 + (constants.signals[signal] ?? 0) : 1);
        this.#exitCode = n;
        releaseSandboxInbox(this.inbox);
        removeCgroups(cgroupDirs);
        if (spawnError !== null) this.emit('error', spawnError);
        else if (/JavaScript heap out of memory|Reached heap limit/.test(this.#stderr)) {
          this.emit('error', Object.assign(new Error(`sandbox out of V8 heap (limit ${memoryMb} MB)`), { code: 'ERR_WORKER_OUT_OF_MEMORY' }));
        } else if (n !== 0 && this.#stderr.trim() !== '') {
          const last = this.#stderr.trim().split('\n').slice(-3).join(' | ');
          this.emit('error', new Error(`sandbox process exited with code ${n}: ${last}`));
        }
        this.emit('exit', n);
        resolve(n);
      });
    });
  }

  /** The process id of the outermost process (sh, setpriv or bwrap), for diagnostics. */
  get pid(): number | undefined { return this.#child.pid; }

  postMessage(message: unknown): void {
    if (this.#exitCode !== null || this.#channel.destroyed) return;
    this.#channel.write(encodeFrame(message));
  }

  terminate(): Promise<number> {
    // bwrap is the child (sh and setpriv exec it); its sandbox dies with it (--die-with-parent
    // of the sandbox's pid 1, and the pid namespace with its pid 1).
    if (this.#exitCode === null) this.#child.kill('SIGKILL');
    return this.#exited;
  }

  ref(): void {
    this.#child.ref();
    (this.#channel as unknown as { ref?: () => void }).ref?.();
    (this.#child.stdout as unknown as { ref?: () => void }).ref?.();
    (this.#child.stderr as unknown as { ref?: () => void }).ref?.();
  }

  unref(): void {
    this.#child.unref();
    (this.#channel as unknown as { unref?: () => void }).unref?.();
    (this.#child.stdout as unknown as { unref?: () => void }).unref?.();
    (this.#child.stderr as unknown as { unref?: () => void }).unref?.();
  }
}
