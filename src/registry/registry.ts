/**
 * The registry: the functions directory turned into loaded function versions, each with its
 * runtime, plus the router over them. A registry is a snapshot: it is built whole by
 * {@link loadRegistry} and never changes afterwards, so a reload can build a new one beside
 * it and swap it in atomically.
 *
 * A function that cannot be served (bad manifest, missing entry, build error, route conflict,
 * unknown runtime) is left out and reported in `problems`; it never stops the host.
 */
import { access, constants, readdir } from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { loadFunctionDir, type ResolvedFunction } from '../manifest/load.js';
import { bundleEntry } from '../build/bundle.js';
import { HostRouter } from '../router/router.js';
import { IsolatePool } from '../runtime/isolate/pool.js';
import { InlineRuntime } from '../runtime/inline/inline-runtime.js';
import type { FunctionRuntime } from '../runtime/types.js';
import { PluginRuntime, type AbiEndpoint } from '../runtime/process/plugin-runtime.js';
import { pluginHostCommand } from '../runtime/native/plugin-host-command.js';

/** One loaded function version and the runtime that runs it. */
export interface FunctionVersion {
  readonly fn: ResolvedFunction;
  readonly runtime: FunctionRuntime;
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
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID when `dir` cannot be read.
 */
export async function loadRegistry(options: RegistryOptions): Promise<Registry> {
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

  const dirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules').map((e) => e.name).sort();
  const loaded = await Promise.all(dirs.map(async (name): Promise<FunctionVersion | null> => {
    const fnDir = path.join(dir, name);
    let fn: ResolvedFunction;
    try {
      fn = await loadFunctionDir(fnDir);
    } catch (err) {
      report(path.relative(process.cwd(), fnDir) || fnDir, err);
      return null;
    }
    try {
      return { fn, runtime: await createRuntime(fn, options), latest: false };
    } catch (err) {
      report(path.relative(process.cwd(), fn.manifestPath), err);
      return null;
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
  for (const id of [...byId.keys()].sort()) {
    const list = byId.get(id)!;
    const top = pickLatest(list);
    try {
      router.check(top.fn.manifest.routes, top.fn.key);
    } catch (err) {
      report(path.relative(process.cwd(), top.fn.manifestPath), err);
      await Promise.all(list.map((v) => v.runtime.close(0)));
      continue;
    }
    for (const r of top.fn.manifest.routes) router.add(r.method, r.path, { fn: top, handler: r.handler ?? null }, top.fn.key);
    top.latest = true;
    latest.set(id, top);
    for (const v of list) versions.set(v.fn.key, v);
  }
  return new Registry(versions, latest, router, problems);
}

/** The directory named `latest` if there is one, else the highest release, else the highest pre-release. */
function pickLatest(list: FunctionVersion[]): FunctionVersion {
  const literal = list.find((v) => v.fn.version === 'latest');
  if (literal) return literal;
  const sorted = [...list].sort((a, b) => semver.rcompare(a.fn.version, b.fn.version));
  return sorted.find((v) => semver.prerelease(v.fn.version) === null) ?? sorted[0]!;
}

async function createRuntime(fn: ResolvedFunction, options: RegistryOptions): Promise<FunctionRuntime> {
  const m = fn.manifest;
  const handlerNames = [...new Set(m.routes.map((r) => r.handler).filter((h): h is string => h !== undefined))];
  const logger = options.logger;
  switch (m.runtime) {
    case 'isolate': {
      const bundle = await bundleEntry(fn.entryPath, options.cacheDir, path.relative(process.cwd(), fn.manifestPath));
      return new IsolatePool({
        fnKey: fn.key, moduleUrl: bundle.url, env: m.env, handlerNames, limits: m.limits,
        instances: m.instances, idleTtlMs: m.idleTtlSeconds * 1000, logger, dev: options.dev,
      });
    }
    case 'inline': {
      const bundle = await bundleEntry(fn.entryPath, options.cacheDir, path.relative(process.cwd(), fn.manifestPath));
      return new InlineRuntime({ fnKey: fn.key, moduleUrl: bundle.url, env: m.env, handlerNames, limits: m.limits, logger, dev: options.dev });
    }
    case 'process':
    case 'native': {
      if (m.runtime === 'process') await assertExecutable(fn);
      const base = {
        fnKey: fn.key, id: fn.id, version: fn.version, kind: m.runtime, cwd: fn.dir, entryPath: fn.entryPath,
        env: m.env, limits: m.limits, instances: m.instances, idleTtlMs: m.idleTtlSeconds * 1000, logger, abi: options.abi,
      } as const;
      return new PluginRuntime({ ...base, command: m.runtime === 'process' ? [fn.entryPath] : pluginHostCommand(fn.entryPath) });
    }
  }
}

async function assertExecutable(fn: ResolvedFunction): Promise<void> {
  try {
    await access(fn.entryPath, constants.X_OK);
  } catch {
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [path.relative(process.cwd(), fn.manifestPath), `field "entry": ${fn.manifest.entry} must be an executable file for runtime "process" (chmod +x, and a #! line for scripts)`]);
  }
}
