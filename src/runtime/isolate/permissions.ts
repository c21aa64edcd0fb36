/**
 * The thread tier's permissions (issue 11): every isolate worker runs under Node's permission
 * model, turned on for that worker alone (`execArgv`) by the unrestricted host. A worker may
 * read fezz's own worker code, its inbox (a directory of its own that holds nothing but the
 * bundle of the function it runs) and the files its manifest grants (`permissions.files`),
 * nothing else: no file writes, no child processes, no workers, no native addons, no WASI, no
 * inspector. None of the `--allow-*` flags for those is ever given. The network stays open on
 * Node 20, which has no rule for it; on Node >= 25 only functions with `permissions.outbound`
 * get `--allow-net` (all or nothing: the hosts themselves are not enforced in a thread).
 *
 * Spares: a pre-started worker does not know its function yet, so it starts with an empty
 * inbox; when the pool hands it a function, the bundle is hard-linked into that inbox (copied
 * across file systems) and the worker imports it from there. So a shared spare never holds a
 * grant to the bundle cache, to another worker's inbox or to any function's directory. A
 * function with grants gets spares of its own (spares.ts keeps them per grants).
 *
 * Layout, under `<os tmpdir>/fezz-isolates-<pid>-XXXXXX/` (0700, removed at exit):
 * - `runtime/`: from sources only, the worker entry bundled by esbuild (tsx cannot run in a
 *   restricted worker: its loader hooks need a worker thread of their own). The compiled
 *   build grants its own `dist/` directory instead.
 * - `<n>/`: one inbox per worker, removed when that worker exits.
 *
 * Defense in depth for code the operator trusts, not a boundary: what a thread cannot be kept
 * from is listed in test/security/thread-escape.test.ts. `FEZZ_ISOLATION_HARDENING=off`
 * turns all of it off (for debugging).
 */
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

/**
 * Whether isolate workers start hardened: true unless the environment variable
 * `FEZZ_ISOLATION_HARDENING` is `off`, `0`, `false` or `no` (read at each worker start).
 */
export function hardeningEnabled(): boolean {
  const v = process.env.FEZZ_ISOLATION_HARDENING;
  return v === undefined || !/^(off|0|false|no)$/i.test(v.trim());
}

const flags = process.allowedNodeEnvironmentFlags;

/**
 * The flags that turn the permission model on: `--permission` where Node has it (22.13+, and
 * the only one Node 24 accepts), else Node 20's `--experimental-permission`, whose
 * "experimental" warning would otherwise be printed by every worker.
 */
export const PERMISSION_FLAGS: readonly string[] = flags.has('--permission')
  ? ['--permission']
  : ['--experimental-permission', '--disable-warning=ExperimentalWarning'];

/**
 * Newer Node (seen on 24) lets a process read its entry point, `argv[1]`, without a flag; a
 * worker has no `argv[1]`, so the empty path is granted, which resolves to the working
 * directory: all of it would be readable (the functions directory, often). An eval string
 * turns that implicit grant off, and a worker ignores it (it runs its own script). Harmless
 * on Node 20, which has no implicit grant.
 */
const NO_IMPLICIT_CWD: readonly string[] = ['--eval=void 0'];

/**
 * Node >= 25 also gates the network (all or nothing), sockets on inherited descriptors
 * included: given to thread-tier functions with `permissions.outbound`, and to every sandbox
 * (its channel to the host is one; bubblewrap's empty network namespace and the seccomp filter
 * are what keep a sandbox off the network).
 */
export const NET_FLAGS: readonly string[] = flags.has('--allow-net') ? ['--allow-net'] : [];

const fromSources = import.meta.url.endsWith('.ts');

let root: string | null = null;
let runtime: WorkerRuntime | null = null;

/** Where a hardened worker's own code is. */
interface WorkerRuntime {
  /** The directory it may read its code from. */
  dir: string;
  entry: URL;
  /** file: URL of the URLPattern polyfill it imports (readable, that file alone), or null when bundled in or not needed. */
  urlPattern: string | null;
}
let inboxSeq = 0;

/** The per-process directory (created on first use, removed at exit). */
function rootDir(): string {
  if (root !== null) return root;
  const dir = mkdtempSync(path.join(os.tmpdir(), `fezz-isolates-${process.pid}-`));
  process.once('exit', () => { rmSync(dir, { recursive: true, force: true }); });
  root = dir;
  void sweepStale();
  return dir;
}

/** Remove the directories of fezz processes that are gone (killed before their exit handler ran). */
async function sweepStale(): Promise<void> {
  try {
    for (const name of await readdir(os.tmpdir())) {
      const pid = Number(/^fezz-isolates-(\d+)-/.exec(name)?.[1] ?? NaN);
      if (Number.isNaN(pid) || pid === process.pid || isAlive(pid)) continue;
      await rm(path.join(os.tmpdir(), name), { recursive: true, force: true });
    }
  } catch { /* best effort */ }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The worker code a hardened worker runs and the directory it may read it from: `dist/` when
 * compiled; from sources, worker-entry.ts and loader-warmup.ts bundled once per process
 * (~60 ms, blocking, on the first worker start).
 */
function workerRuntime(): WorkerRuntime {
  if (runtime !== null) return runtime;
  if (!fromSources) {
    // Where Node has no URLPattern the compiled worker imports the polyfill (platform-globals.ts)
    // by its file URL, resolved here: a worker may read that one file (public code), and need
    // not resolve a package (which would read node_modules itself).
    let urlPattern: string | null = null;
    if (typeof (globalThis as { URLPattern?: unknown }).URLPattern !== 'function') {
      try { urlPattern = import.meta.resolve('urlpattern-polyfill/urlpattern'); } catch { /* the worker's own import reports it */ }
    }
    runtime = { dir: fileURLToPath(new URL('../../', import.meta.url)), entry: new URL('./worker-entry.js', import.meta.url), urlPattern };
    return runtime;
  }
  const dir = path.join(rootDir(), 'runtime');
  esbuild.buildSync({
    entryPoints: {
      'worker-entry': fileURLToPath(new URL('./worker-entry.ts', import.meta.url)),
      'loader-warmup': fileURLToPath(new URL('./loader-warmup.ts', import.meta.url)),
    },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Kept as imports (the warm-up file is nothing but `import 'node:module'`).
    external: ['node:*'],
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    logLevel: 'silent',
  });
  runtime = { dir, entry: pathToFileURL(path.join(dir, 'worker-entry.mjs')), urlPattern: null };
  return runtime;
}

/** What a worker may reach beyond fezz's worker code and its inbox: its function's grants. */
export interface WorkerGrants {
  /** Absolute paths it may read: the function's `permissions.files`, inside its directory. */
  readonly read: readonly string[];
  /** Network access where Node gates it (>= 25): the function has `permissions.outbound`. */
  readonly net: boolean;
}

/** No grants: what most functions have, and what the shared spares start with. */
export const NO_GRANTS: WorkerGrants = Object.freeze({ read: Object.freeze([]), net: false });

/** A string equal for grants that start equal workers (spares are kept per grants). */
export function grantsKey(g: WorkerGrants): string {
  return `${g.net && NET_FLAGS.length > 0 ? 'net' : ''}|${g.read.join('|')}`;
}

/** How to start one hardened worker. */
export interface HardenedLaunch {
  /** The worker script. */
  url: URL;
  /**
   * Node flags for this worker alone. Never empty: `execArgv: []` under a process-wide
   * permission flag would start the worker unrestricted.
   */
  execArgv: string[];
  /** The worker's own directory (created, empty): its function's bundle is linked there. */
  inbox: string;
  /** file: URL of the URLPattern polyfill the worker imports (WorkerStartData.urlPattern), or null. */
  urlPattern: string | null;
}

/**
 * Prepare a hardened worker with `grants`: its inbox and its flags.
 * @throws if the runtime cannot be prepared (from sources: an esbuild error) or the inbox made.
 */
export function hardenedLaunch(grants: WorkerGrants): HardenedLaunch {
  const rt = workerRuntime();
  const inbox = path.join(rootDir(), String(++inboxSeq));
  mkdirSync(inbox, { mode: 0o700 });
  const read = [rt.dir, ...(rt.urlPattern === null ? [] : [fileURLToPath(rt.urlPattern)]), inbox, ...grants.read].map((p) => `--allow-fs-read=${p}`);
  return { url: rt.entry, execArgv: [...PERMISSION_FLAGS, ...NO_IMPLICIT_CWD, ...read, ...(grants.net ? NET_FLAGS : [])], inbox, urlPattern: rt.urlPattern };
}

/**
 * Put the bundle at `moduleUrl` (a file: URL) into `inbox`, where its worker may read it, and
 * return the URL the worker imports. A hard link (microseconds; the bundle cache is
 * content-addressed, so the linked file never changes), or a copy across file systems. If
 * both fail, the worker's import fails and the pool reports the start as failed.
 */
export function admitToInbox(inbox: string, moduleUrl: string): string {
  if (!moduleUrl.startsWith('file:')) return moduleUrl;
  const from = fileURLToPath(moduleUrl);
  const to = path.join(inbox, path.basename(from));
  try {
    linkSync(from, to);
  } catch {
    try { copyFileSync(from, to); } catch { /* reported by the worker's import */ }
  }
  return pathToFileURL(to).href;
}

/** Remove a worker's inbox once the worker has exited (in the background). */
export function releaseInbox(inbox: string): void {
  void rm(inbox, { recursive: true, force: true }).catch(() => undefined);
}
