/**
 * The registry: the functions directory turned into loaded function versions, each with its
 * runtime, plus the router over them. A registry is a snapshot: it is built whole by
 * {@link loadRegistry} and never changes afterwards, so a reload can build a new one beside
 * it and swap it in atomically.
 *
 * A function that cannot be served (bad manifest, missing entry, build error, route conflict,
 * unknown runtime) is left out and reported in `problems`; it never stops the host.
 */
import { access, constants, readdir, readlink, realpath, stat } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { loadFunctionDir, type ResolvedFunction } from '../manifest/load.js';
import { bundleEntry } from '../build/bundle.js';
import { checkBuiltins, functionEnv } from '../manifest/permissions.js';
import { HostRouter } from '../router/router.js';
import { IsolatePool } from '../runtime/isolate/pool.js';
import { probeSandbox } from '../runtime/sandbox/bwrap.js';
import type { WorkerGrants } from '../runtime/isolate/permissions.js';
import { InlineRuntime } from '../runtime/inline/inline-runtime.js';
import type { FunctionRuntime } from '../runtime/types.js';
import { PluginRuntime, type AbiEndpoint } from '../runtime/process/plugin-runtime.js';
import { pluginHostCommand } from '../runtime/native/plugin-host-command.js';
import type { FunctionStats, StatsBook } from '../observability/function-stats.js';
import type { SecretSource } from '../secrets/store.js';
import { deliveredEnv } from '../secrets/env.js';

/** One loaded function version and the runtime that runs it. */
export interface FunctionVersion {
  readonly fn: ResolvedFunction;
  readonly runtime: FunctionRuntime;
  /** Identifies the code and manifest: equal fingerprints let a reload keep the runtime. */
  readonly fingerprint: string;
  /** Request counts and latency (kept by key across reloads). */
  readonly stats: FunctionStats;
  /** Whether this is the version `<id>` (without `@version`) resolves to. */
  latest: boolean;
}

/** Why a directory or function is not served. */
export interface LoadProblem {
  /** The directory or manifest the problem is in, relative to the working directory. */
  file: string;
  code: string;
  message: string;
}

export interface RegistryOptions {
  /** The functions directory (absolute). */
  dir: string;
  /** Where bundles are cached (absolute). */
  cacheDir: string;
  logger: Logger;
  dev: boolean;
  /** Where `process` and `native` plugins reach the request-id ABI. */
  abi: AbiEndpoint;
  /** Per-function stats, by key. */
  stats: StatsBook;
  /** Deadline for an instance to load its function, in ms (options.startTimeoutMs). */
  startTimeoutMs: number;
  /**
   * Fingerprints of versions whose start failed in an earlier reload, with the problem: a
   * reload reports them again without retrying until their files change (so one module that
   * never loads costs one start deadline, not one per reload). Absent: always retry.
   */
  failedStarts?: Map<string, LoadProblem & { at: number }>;
  /**
   * The weakest isolation the host allows (options.isolation): with `'sandbox'`, every isolate
   * function runs sandboxed whatever its manifest says, and inline functions (no isolation at
   * all) are not served. @default 'thread' (each function's manifest decides)
   */
  isolation?: 'thread' | 'sandbox';
  /** Told of each runtime this load creates, before it starts (so a shutdown can stop it). */
  onCreate?: (runtime: FunctionRuntime) => void;
  /**
   * Where functions' secrets come from (secrets/store.ts); they join `env` (secrets/env.ts:
   * JS functions get all, plugins only those their manifest's `secrets` grants) and their
   * digest joins the fingerprint, so a changed secret restarts that function on the next
   * reload. In `dev`, `.dev.vars` too. @default none (no secrets)
   */
  secrets?: SecretSource | null;
}

/** A loaded snapshot of the functions directory. */
export class Registry {
  readonly versions: ReadonlyMap<string, FunctionVersion>;
  readonly latest: ReadonlyMap<string, FunctionVersion>;
  readonly router: HostRouter<FunctionVersion>;
  readonly problems: readonly LoadProblem[];

  constructor(versions: Map<string, FunctionVersion>, latest: Map<string, FunctionVersion>, router: HostRouter<FunctionVersion>, problems: LoadProblem[]) {
    this.versions = versions;
    this.latest = latest;
    this.router = router;
    this.problems = problems;
  }

  /** `id@version`, or the latest of `id` when `version` is null. */
  resolve(id: string, version: string | null): FunctionVersion | undefined {
    return version === null ? this.latest.get(id) : this.versions.get(`${id}@${version}`);
  }

  /** Start `instances.min` of every function; resolves when all are up or failed. */
  async warm(): Promise<void> {
    await Promise.all([...this.versions.values()].map((v) => v.runtime.warm()));
  }

  /** Stop every runtime, letting in-flight requests finish for up to `graceMs` ms. */
  async close(graceMs: number): Promise<void> {
    await Promise.all([...this.versions.values()].map((v) => v.runtime.close(graceMs)));
  }
}

/**
 * Scan `options.dir`, load every `<id>@<version>/` in it and build the router.
 * Never throws for a bad function; only an unreadable functions directory rejects.
 *
 * With `previous` (a hot reload): a version whose fingerprint (manifest + code) is
 * unchanged keeps its runtime and warm instances; a new or changed one must start an
 * instance before it is included; one that cannot load or start is reported, and if
 * `previous` had that version it keeps serving it.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID when `dir` cannot be read.
 */
export async function loadRegistry(options: RegistryOptions, previous?: Registry): Promise<Registry> {
  const { dir, logger } = options;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['dir', 'a readable functions directory', `${dir} (${(err as NodeJS.ErrnoException).code})`], err);
  }
  const problems: LoadProblem[] = [];
  const report = (file: string, err: unknown): void => {
    const code = err instanceof FezzError ? err.code : 'FEZZ_ERR_MANIFEST_INVALID';
    const message = err instanceof Error ? err.message : String(err);
    problems.push({ file, code, message });
    logger.error({ file, code }, `function not served: ${message}`);
  };

  const dirs = await functionDirs(dir, entries, report);
  const loaded = await Promise.all(dirs.map(async (name): Promise<FunctionVersion | null> => {
    const fnDir = path.join(dir, name);
    const old = previous?.versions.get(name);
    const keepOld = (): FunctionVersion | null => (old !== undefined && old.fn.dir === path.resolve(fnDir) ? old : null);
    let fn: ResolvedFunction;
    try {
      fn = await loadFunctionDir(fnDir);
    } catch (err) {
      report(path.relative(process.cwd(), fnDir) || fnDir, err);
      return keepOld();
    }
    try {
      const prepared = await prepareRuntime(fn, options);
      if (old !== undefined && old.fingerprint === prepared.fingerprint) return old;
      const known = options.failedStarts?.get(prepared.fingerprint);
      if (known !== undefined) {
        problems.push({ file: known.file, code: known.code, message: known.message });
        return keepOld();
      }
      const runtime = prepared.create();
      options.onCreate?.(runtime);
      const v: FunctionVersion = { fn, runtime, fingerprint: prepared.fingerprint, stats: options.stats.for(fn.key), latest: false };
      if (previous !== undefined) {
        // Bounded by startTimeoutMs: the runtime fails a start that does not finish in time.
        const failed = await runtime.ready();
        if (failed !== null) {
          await runtime.close(0);
          const file = path.relative(process.cwd(), fn.manifestPath);
          const err = fezzError('FEZZ_ERR_INSTANCE_START_FAILED', [fn.key, failed]);
          options.failedStarts?.set(prepared.fingerprint, { file, code: err.code, message: err.message, at: Date.now() });
          throw err;
        }
      }
      return v;
    } catch (err) {
      report(path.relative(process.cwd(), fn.manifestPath), err);
      return keepOld();
    }
  }));

  const byId = new Map<string, FunctionVersion[]>();
  for (const v of loaded) {
    if (v === null) continue;
    const list = byId.get(v.fn.id) ?? [];
    list.push(v);
    byId.set(v.fn.id, list);
  }

  const versions = new Map<string, FunctionVersion>();
  const latest = new Map<string, FunctionVersion>();
  const router = new HostRouter<FunctionVersion>((id, version) => (version === null ? latest.get(id) : versions.get(`${id}@${version}`)));
  for (const id of claimOrder([...byId.keys()], byId, previous)) {
    let list = byId.get(id)!;
    let top = pickLatest(list);
    try {
      router.check(top.fn.manifest.routes, top.fn.key);
    } catch (err) {
      report(path.relative(process.cwd(), top.fn.manifestPath), err);
      // A function already serving keeps its last good version rather than go dark because
      // its new version collides; a newcomer that collides is not served at all.
      const incumbent = previous?.latest.get(id);
      const fallback = incumbent !== undefined && list.includes(incumbent) && incumbent !== top ? incumbent : null;
      const dropped = fallback === null ? list : list.filter((v) => v !== fallback);
      // Close only runtimes this load created; reused ones belong to `previous`.
      await Promise.all(dropped.filter((v) => previous?.versions.get(v.fn.key) !== v).map((v) => v.runtime.close(0)));
      if (fallback === null) continue;
      list = [fallback];
      top = fallback;
      try {
        router.check(top.fn.manifest.routes, top.fn.key);
      } catch (again) {
        report(path.relative(process.cwd(), top.fn.manifestPath), again);
        continue;
      }
    }
    for (const r of top.fn.manifest.routes) router.add(r.method, r.path, { fn: top, handler: r.handler ?? null }, top.fn.key);
    for (const v of list) { v.latest = v === top; versions.set(v.fn.key, v); }
    latest.set(id, top);
  }
  return new Registry(versions, latest, router, problems);
}

/**
 * The names of the function directories among `entries` (the listing of `dir`), sorted: real
 * directories, and symbolic links to a directory whose real path is inside the real path of
 * `dir`. That is how a Kubernetes projected volume mounted at `dir` shows a function
 * (`<id>@<version> -> ..data/<id>@<version>`, `..data -> ..<timestamp>`), and how an operator
 * can point a name at another directory of the functions directory. A link that resolves
 * outside it (`/etc`, another volume, `../x`) or to nothing is never followed: it is reported
 * (an error log line and an entry of `problems`, FEZZ_ERR_MANIFEST_INVALID) and not loaded.
 * Names starting with `.` (`..data`, staging) and `node_modules` are skipped; so are files
 * and links to files, as before.
 */
async function functionDirs(dir: string, entries: Dirent[], report: (file: string, err: unknown) => void): Promise<string[]> {
  const names: string[] = [];
  let root: string | null = null;
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name === 'node_modules') continue;
    if (e.isDirectory()) {
      names.push(e.name);
      continue;
    }
    if (!e.isSymbolicLink()) continue;
    const link = path.join(dir, e.name);
    const shown = path.relative(process.cwd(), link) || link;
    const to = await readlink(link).catch(() => '?');
    let target: string;
    try {
      root ??= await realpath(dir);
      target = await realpath(link);
    } catch (err) {
      const why = `symbolic link to ${JSON.stringify(to)} does not resolve (${(err as NodeJS.ErrnoException).code ?? err}); not loaded`;
      report(shown, fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, why], err));
      continue;
    }
    const st = await stat(target).catch(() => null);
    if (st === null || !st.isDirectory()) continue;
    if (!isInside(root, target)) {
      const why = `symbolic link to ${JSON.stringify(to)} resolves to ${target}, which is not inside the functions directory ${root}; not followed (the target of a link to a function directory must be inside the functions directory)`;
      report(shown, fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, why]));
      continue;
    }
    names.push(e.name);
  }
  return names.sort();
}

/** Whether `p` is below `root` (both absolute, real paths; `root` itself is not). `..x` is a name, not a parent. */
function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * The order in which functions claim their routes: a function already serving (the latest
 * version in `previous` unchanged) first, then functions that were serving with a new
 * version, then newcomers; by id within each group. So on a hot reload the function that
 * already serves a route keeps it and a newcomer claiming it is the one reported as a
 * conflict and not served (the rule `fezz deploy` applies too); at start-up, by id.
 */
function claimOrder(ids: string[], byId: Map<string, FunctionVersion[]>, previous: Registry | undefined): string[] {
  const rank = (id: string): number => {
    const was = previous?.latest.get(id);
    if (was === undefined) return 2;
    return pickLatest(byId.get(id)!) === was ? 0 : 1;
  };
  return ids.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** The directory named `latest` if there is one, else the highest release, else the highest pre-release. */
function pickLatest(list: FunctionVersion[]): FunctionVersion {
  const literal = list.find((v) => v.fn.version === 'latest');
  if (literal) return literal;
  const sorted = [...list].sort((a, b) => semver.rcompare(a.fn.version, b.fn.version));
  return sorted.find((v) => semver.prerelease(v.fn.version) === null) ?? sorted[0]!;
}

/** Bundle (or check) a function and say how to make its runtime, without starting anything. */
async function prepareRuntime(fn: ResolvedFunction, options: RegistryOptions): Promise<{ fingerprint: string; create(): FunctionRuntime }> {
  const m = fn.manifest;
  const handlerNames = [...new Set(m.routes.map((r) => r.handler).filter((h): h is string => h !== undefined))];
  const logger = options.logger;
  const manifestText = JSON.stringify(m);
  // Manifest env + granted host variables + secrets (+ .dev.vars in dev); the digest says
  // whether what secrets added changed, never what it is.
  const { env, digest: secretsDigest } = await deliveredEnv(fn, functionEnv(m.env, m.permissions), options.secrets, options.dev);
  switch (m.runtime) {
    case 'isolate':
    case 'inline': {
      const label = path.relative(process.cwd(), fn.manifestPath);
      // Bundled from its real path: when the entry is a link (a ConfigMap key), the bundle
      // cache then keys on the file behind it, so a `..data` swap is a cache miss even while
      // kubelet has not yet removed the old, unchanged target.
      const bundle = await bundleEntry(await realpath(fn.entryPath), options.cacheDir, label);
      checkBuiltins(bundle.builtins, m.permissions, label);
      const hostSandbox = options.isolation === 'sandbox';
      if (hostSandbox && m.runtime === 'inline') {
        throw fezzError('FEZZ_ERR_INSTANCE_START_FAILED', [fn.key, 'runtime "inline" runs on the host\'s own thread, which --isolation sandbox does not allow (use runtime "isolate")']);
      }
      const isolation = hostSandbox ? 'sandbox' : m.isolation;
      if (isolation === 'sandbox') {
        // Never run a sandboxed function as threads: without bubblewrap it is not served.
        const can = await probeSandbox();
        if (!can.ok) throw fezzError('FEZZ_ERR_INSTANCE_START_FAILED', [fn.key, `isolation "sandbox" is not available on this host: ${can.reason}`]);
      }
      // A module with cron triggers may be scheduled-only (no fetch), as a Worker may.
      const common = { fnKey: fn.key, moduleUrl: bundle.url, env, handlerNames, requireFetch: (m.triggers?.crons.length ?? 0) === 0, limits: m.limits, logger, dev: options.dev, startTimeoutMs: options.startTimeoutMs };
      return {
        fingerprint: `${bundle.url}\n${fn.dir}\n${manifestText}\n${isolation}\n${secretsDigest}`,
        create: () => m.runtime === 'isolate'
          ? new IsolatePool({ ...common, instances: m.instances, idleTtlMs: m.idleTtlSeconds * 1000, grants: workerGrants(fn), isolation, outbound: m.permissions.outbound })
          : new InlineRuntime(common),
      };
    }
    case 'process':
    case 'native': {
      if (m.runtime === 'process') await assertExecutable(fn);
      const st = await stat(fn.entryPath);
      const isolation = options.isolation === 'sandbox' ? 'sandbox' : m.isolation;
      if (isolation === 'sandbox') {
        const can = await probeSandbox();
        if (!can.ok) throw fezzError('FEZZ_ERR_INSTANCE_START_FAILED', [fn.key, `isolation "sandbox" is not available on this host: ${can.reason}`]);
      }
      const base = {
        fnKey: fn.key, id: fn.id, version: fn.version, kind: m.runtime, cwd: fn.dir, entryPath: fn.entryPath,
        env, limits: m.limits, instances: m.instances, idleTtlMs: m.idleTtlSeconds * 1000, logger, abi: options.abi,
        startTimeoutMs: options.startTimeoutMs,
        ...(isolation === 'sandbox' ? { sandbox: { outbound: m.permissions.outbound } } : {}),
      } as const;
      return {
        fingerprint: `${fn.entryPath}:${st.ino}:${st.size}:${st.mtimeMs}\n${manifestText}\n${isolation}\n${secretsDigest}`,
        create: () => new PluginRuntime({ ...base, command: m.runtime === 'process' ? [fn.entryPath] : pluginHostCommand(fn.entryPath) }),
      };
    }
  }
}

/** What the thread tier lets an isolate worker reach beyond its bundle: the manifest's grants. */
function workerGrants(fn: ResolvedFunction): WorkerGrants {
  const p = fn.manifest.permissions;
  return { read: p.files.map((f) => path.join(fn.dir, f)), net: p.outbound.length > 0 };
}

async function assertExecutable(fn: ResolvedFunction): Promise<void> {
  try {
    await access(fn.entryPath, constants.X_OK);
  } catch {
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [path.relative(process.cwd(), fn.manifestPath), `field "entry": ${fn.manifest.entry} must be an executable file for runtime "process" (chmod +x, and a #! line for scripts)`]);
  }
}
