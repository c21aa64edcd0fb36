/**
 * Process and native plugins under the sandbox profile (issue 11): the host side of
 * plugin-entry.ts. One {@link PluginSandboxHome} per plugin runtime (one function version)
 * holds, under the sandbox root (sandbox-runtime.ts):
 * - `plugin-runtime/` (shared by every plugin sandbox of the host, bound at /fezz):
 *   plugin-entry.mjs bundled by esbuild, and a copy of koffi and its native module for this
 *   platform (`node_modules/`), since the sandbox sees nothing of fezz's install;
 * - `plugin-<n>/inbox/` (bound read-only at /fn): `abi.sock`, a unix socket whose connections
 *   the host serves as the admin listener's (ABI routes, the runtime's scoped token; every
 *   other route 403); `egress.sock` when the manifest grants outbound hosts (the egress
 *   proxy, src/egress/proxy.ts); and `app/`, the mount point of the function's files;
 * - `plugin-<n>/app-<k>/`: the function's directory staged for uid 65534 (hard links where a
 *   file is world-readable, else copies made readable; symbolic links that leave the
 *   directory are left out), bound read-only at /fn/app. Staged again when the entry changes
 *   (a rebuilt binary is a new inode a hard link would not follow).
 *
 * Each child is then the bwrap profile of bwrap.ts (own uid, pid, net, ipc namespaces; no
 * capabilities; cgroup memory and pids limits; seccomp) without Node's permission model (the
 * plugin is native code: the kernel-level profile is the boundary), with AF_INET sockets
 * allowed by seccomp for the loopback relay. Its environment is the spawn's (bwrap keeps it):
 * what the manifest gives, FEZZ_HOST (the relay), FEZZ_TOKEN (the runtime's scoped ABI token),
 * and PATH, HOME, TMPDIR, LANG of its own; never a command line.
 */
import { chmodSync, copyFileSync, linkSync, lstatSync, mkdirSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import type { Logger } from 'pino';
import { sandboxCommand, INBOX_MOUNT } from './bwrap.js';
import { makeSandboxCgroups, removeCgroups } from './cgroup.js';
import { seccompFilter } from './seccomp.js';
import { sandboxRootDir } from './sandbox-runtime.js';
import { launchProcess, pluginStdio, type PluginProcess, type ProcessSpec } from './launched-process.js';
import { startEgressProxy, type EgressProxy } from '../../egress/proxy.js';
import { EGRESS_SOCKET } from '../../egress/connector.js';

/** The unix socket of the ABI in a plugin sandbox's inbox (`/fn/abi.sock` inside). */
export const ABI_SOCKET = 'abi.sock';
/** ABI connections one plugin runtime's sandboxes may hold open at once. */
const MAX_ABI_CONNECTIONS = 512;
/**
 * The ports of the relays on a plugin sandbox's own loopback (its network namespace is its
 * own, so fixed ports are free): the ABI (`FEZZ_HOST`), and the egress proxy (`HTTPS_PROXY`).
 */
export const SANDBOX_ABI_PORT = 7171;
export const SANDBOX_EGRESS_PORT = 7172;
const SANDBOX_PROXY = `http://127.0.0.1:${SANDBOX_EGRESS_PORT}`;
/** Heap of the launcher (the relay, and koffi for native plugins), in MB. */
const LAUNCHER_HEAP_MB = 64;

let runtimeDir: string | null = null;
let runtimeDirPending: Promise<string> | null = null;
let warnedNoPids = false;
let homes = 0;

/**
 * The plugin runtime directory, bundled and copied on the first call (~90 ms of esbuild and
 * copying, off the event loop), the same promise after; a failed preparation is tried again
 * by the next call.
 * @throws (rejects) an esbuild error, or a file system error if koffi cannot be copied.
 */
export function pluginRuntimeDir(): Promise<string> {
  if (runtimeDir !== null) return Promise.resolve(runtimeDir);
  runtimeDirPending ??= preparePluginRuntime().then(
    (dir) => { runtimeDir = dir; return dir; },
    (err: unknown) => { runtimeDirPending = null; throw err; },
  );
  return runtimeDirPending;
}

async function preparePluginRuntime(): Promise<string> {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const dir = path.join(sandboxRootDir(), 'plugin-runtime');
  await esbuild.build({
    entryPoints: { 'plugin-entry': fileURLToPath(new URL(`./plugin-entry${ext}`, import.meta.url)) },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['node:*', 'koffi'],
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    logLevel: 'silent',
  });
  // koffi finds its native module at ../../../@koromix/koffi-<platform>-<arch> from its
  // src/koffi/: copy both packages side by side, as npm lays them out.
  const koffiDir = path.dirname(fileURLToPath(import.meta.resolve('koffi')));
  const modules = path.join(dir, 'node_modules');
  await cp(koffiDir, path.join(modules, 'koffi'), { recursive: true, dereference: true });
  const nativePkg = path.join(koffiDir, '..', '@koromix', `koffi-${process.platform}-${process.arch}`);
  try {
    await cp(nativePkg, path.join(modules, '@koromix', path.basename(nativePkg)), { recursive: true, dereference: true });
  } catch { /* older koffi: the native module is inside its own package */ }
  chmodTree(dir);
  return dir;
}

/** Make a tree readable (and directories searchable) by every user: the sandbox is uid 65534. */
function chmodTree(dir: string): void {
  chmodSync(dir, 0o755);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chmodTree(p);
    else if (e.isFile()) chmodSync(p, statSync(p).mode & 0o100 ? 0o755 : 0o644);
  }
}

/**
 * Copy the tree `from` into `to` for the sandbox user: hard links for files every user may
 * read (and execute, when the owner may), copies made so otherwise; directories 0755. A
 * symbolic link is followed when its target is inside `root`, else left out.
 */
function stageTree(from: string, to: string, root: string): void {
  mkdirSync(to, { mode: 0o755 });
  chmodSync(to, 0o755);
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    const dst = path.join(to, name);
    let st = lstatSync(src);
    let real = src;
    if (st.isSymbolicLink()) {
      try { real = realpathSync(src); } catch { continue; }
      if (real !== root && !real.startsWith(root + path.sep)) continue;
      st = statSync(real);
    }
    if (st.isDirectory()) { stageTree(real, dst, root); continue; }
    if (!st.isFile()) continue;
    const exec = (st.mode & 0o100) !== 0;
    const readable = (st.mode & 0o004) !== 0 && (!exec || (st.mode & 0o001) !== 0);
    if (readable) {
      try { linkSync(real, dst); continue; } catch { /* another file system: copy */ }
    }
    copyFileSync(real, dst);
    chmodSync(dst, exec ? 0o755 : 0o644);
  }
}

/** What a plugin runtime's sandboxes need. */
export interface PluginSandboxOptions {
  fnKey: string;
  kind: 'process' | 'native';
  /** The function's directory on the host (staged into the sandbox at /fn/app). */
  fnDir: string;
  /** The entry (executable or `.so`), an absolute host path inside `fnDir`. */
  entryPath: string;
  /** `limits.memoryMb`: the cgroup memory limit is 2 x this + 128 MB. */
  memoryMb: number;
  /** `permissions.outbound`; empty: no network at all. */
  outbound: readonly string[];
  /** Serve one connection of the ABI socket as the admin listener's (AdminServer.acceptConnection). */
  abiConnection(socket: net.Socket): void;
  logger: Logger;
}

/**
 * The host-side files and sockets of one plugin runtime's sandboxes, and how to start one.
 * Not thread-safe across hosts; one per PluginRuntime.
 */
export class PluginSandboxHome {
  readonly #o: PluginSandboxOptions;
  readonly #dir: string;
  readonly #inbox: string;
  readonly #entryRel: string;
  #app: string | null = null;
  #appSeq = 0;
  #abiServer: net.Server | null = null;
  #egress: Promise<EgressProxy | null> | null = null;
  #closed = false;

  /** @throws if the entry is not inside the function's directory. */
  constructor(options: PluginSandboxOptions) {
    this.#o = options;
    const rel = path.relative(options.fnDir, options.entryPath);
    if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`the entry ${options.entryPath} is outside the function's directory ${options.fnDir}`);
    this.#entryRel = rel;
    this.#dir = path.join(sandboxRootDir(), `plugin-${++homes}`);
    this.#inbox = path.join(this.#dir, 'inbox');
    mkdirSync(path.join(this.#inbox, 'app'), { recursive: true, mode: 0o755 });
    chmodSync(this.#dir, 0o755);
    chmodSync(this.#inbox, 0o755);
    chmodSync(path.join(this.#inbox, 'app'), 0o755);
  }

  /** The function's files changed (a rebuilt entry): the next child gets a fresh copy. */
  restage(): void {
    this.#app = null;
  }

  #listen(): void {
    if (this.#abiServer !== null) return;
    const socketPath = path.join(this.#inbox, ABI_SOCKET);
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      this.#o.abiConnection(socket);
    });
    server.maxConnections = MAX_ABI_CONNECTIONS;
    server.on('error', (err) => this.#o.logger.error({ fn: this.#o.fnKey, err }, 'plugin sandbox ABI socket failed'));
    // A unix socket is bound synchronously inside listen(): the umask makes it 0666 from its
    // first moment (the sandbox's uid is another), in a directory only this runtime's
    // sandboxes see (the sandbox root is 0711 and not listable).
    const umask = process.umask(0o111);
    try {
      // exclusive: bound here, synchronously, even in a cluster worker (src/cluster/).
      server.listen({ path: socketPath, exclusive: true });
    } finally {
      process.umask(umask);
    }
    this.#abiServer = server;
    if (this.#o.outbound.length > 0) {
      this.#egress = startEgressProxy({ socketPath: path.join(this.#inbox, EGRESS_SOCKET), mode: 0o666, outbound: this.#o.outbound, fnKey: this.#o.fnKey, logger: this.#o.logger })
        .catch((err: unknown) => { this.#o.logger.error({ fn: this.#o.fnKey, err }, 'egress proxy could not start: this plugin has no outbound network'); return null; });
    }
  }

  /**
   * Start one sandboxed child with `env` (its environment, never on a command line), through
   * the spawner process (launched-process.ts: the host does not fork). stdio: 0-2 pipes
   * (request ids in; logs out), fd 3 a pipe for `native` (the plugin host's results).
   * Cleans up its cgroups at its exit. The first start of a host waits for the plugin runtime
   * to be prepared ({@link pluginRuntimeDir}), without holding up the event loop.
   * @throws if staging fails (a failed preparation or spawn comes as the child's 'error').
   */
  spawn(env: Record<string, string>): PluginProcess {
    if (this.#closed) throw new Error('plugin sandbox closed');
    const slots = pluginStdio(this.#o.kind === 'native');
    if (runtimeDir !== null) return launchProcess(slots, this.#launchSpec(runtimeDir, env));
    return launchProcess(slots, pluginRuntimeDir().then((dir) => {
      if (this.#closed) throw new Error('plugin sandbox closed');
      return this.#launchSpec(dir, env);
    }));
  }

  /** How to launch one sandbox of this plugin on the runtime in `runtime`; stages its files and makes its cgroups. */
  #launchSpec(runtime: string, env: Record<string, string>): ProcessSpec {
    const o = this.#o;
    this.#listen();
    if (this.#app === null) {
      const app = path.join(this.#dir, `app-${++this.#appSeq}`);
      rmSync(app, { recursive: true, force: true });
      stageTree(o.fnDir, app, realpathSync(o.fnDir));
      this.#app = app;
    }
    const cgroups = makeSandboxCgroups(o.memoryMb);
    if (!cgroups.pids && !warnedNoPids) {
      warnedNoPids = true;
      o.logger.warn('plugin sandboxes: no pids cgroup can be made here, so the processes a sandboxed plugin starts are not limited (run fezz as root, or in a delegated cgroup: systemd-run --user -p Delegate=yes)');
    }
    const filter = seccompFilter(path.dirname(runtime), { inet: true });
    const argv = sandboxCommand({
      runtimeDir: runtime, inbox: this.#inbox, memoryMb: LAUNCHER_HEAP_MB, readPaths: [], cgroupDirs: cgroups.dirs, pidsCgroup: cgroups.pids,
      nodePermissions: false, ...(filter.file !== null ? { seccompFd: 4 } : {}),
      script: 'plugin-entry.mjs', args: [o.kind, `${INBOX_MOUNT}/app/${this.#entryRel}`, String(SANDBOX_ABI_PORT), ...(o.outbound.length > 0 ? [String(SANDBOX_EGRESS_PORT)] : [])],
      binds: [[this.#app, `${INBOX_MOUNT}/app`]], chdir: `${INBOX_MOUNT}/app`, keepEnv: true,
    });
    // The environment goes to bwrap, which passes it on (no --clearenv): a native library
    // reads it as it was at exec (Go's c-shared runtime does). Never on a command line.
    const childEnv: Record<string, string> = {
      PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp', TMPDIR: '/tmp', LANG: 'C.UTF-8',
      ...env,
      FEZZ_HOST: `http://127.0.0.1:${SANDBOX_ABI_PORT}`,
      ...(o.outbound.length > 0 ? { HTTPS_PROXY: SANDBOX_PROXY, https_proxy: SANDBOX_PROXY, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' } : {}),
    };
    // The spawner opens the seccomp filter as the launcher's fd 4, and kills the sandbox if the
    // host goes, even one that crashes (setpriv breaks --die-with-parent's chain).
    return {
      argv, env: childEnv, seccompFile: filter.file,
      cleanup: () => removeCgroups(cgroups.dirs),
    };
  }

  /** Stop the sockets and remove the files (after the children are gone). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abiServer?.close();
    const egress = await this.#egress;
    await egress?.close();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
