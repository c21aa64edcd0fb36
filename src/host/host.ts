/**
 * The host: the public HTTP listener over a registry snapshot, the admin listener (ABI,
 * admin API, /metrics), hot reload and graceful shutdown. A thin public class over private
 * state; everything a request touches is in dispatch.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import { resolveOptions, type HostOptions, type ResolvedHostOptions } from '../config/options.js';
import { loadRegistry, type FunctionVersion, type LoadProblem, type Registry, type RegistryOptions } from '../registry/registry.js';
import { loadFunctionDir } from '../manifest/load.js';
import { fezzError } from '../errors.js';
import { compose, accessLog, cors, bodyLimit } from './middleware.js';
import { createRequestHandler, runFunction, type DispatchState } from './dispatch.js';
import type { Middleware, RequestContext } from './context.js';
import type { RuntimeStats } from '../runtime/types.js';
import { PendingStore } from '../abi/pending-store.js';
import { AdminServer } from '../admin/admin-server.js';
import { abiRoutes } from '../admin/abi-routes.js';
import { apiRoutes } from '../admin/api-routes.js';
import type { AbiEndpoint } from '../runtime/process/plugin-runtime.js';
import { StatsBook } from '../observability/function-stats.js';
import { LogHub } from '../observability/log-hub.js';
import { createMetrics } from '../observability/metrics.js';
import { closeSpares, enableSpares } from '../runtime/isolate/spares.js';
import { promote, removeQuietly, retire, stagePackage, STAGING_DIR, TRASH_DIR } from '../registry/deploy.js';

/** Largest body the admin listener takes (pushed responses, deploy packages), in bytes. */
const ADMIN_MAX_BODY_BYTES = 64 * 1024 * 1024; // 64 MiB
/** Quiet time after the last file event before the watcher reloads, in ms. */
const WATCH_DEBOUNCE_MS = 200;

/** One function version as the host reports it (admin API `GET /admin/functions`). */
export interface FunctionInfo {
  /** `id@version` */
  key: string;
  id: string;
  version: string;
  runtime: string;
  latest: boolean;
  /** `warm`: instances up; `cold`: none (starts on the next request); `failed`: none, and the last start or run failed. */
  state: 'cold' | 'warm' | 'failed';
  routes: Array<{ method: string; path: string; handler: string | null }>;
  stats: RuntimeStats & { requests: number; errors: number; p50Ms: number | null; p99Ms: number | null };
}

export class Host {
  readonly options: ResolvedHostOptions;
  readonly logger: Logger;
  /** Recent function log lines, and followers (`GET /admin/logs`). */
  readonly logs: LogHub;
  readonly #state: DispatchState;
  readonly #middleware: Middleware[];
  readonly #bodyLimit: Middleware;
  #chain: (c: RequestContext) => void | Promise<void>;
  readonly #server: http.Server;
  readonly #admin: AdminServer;
  readonly #abi: AbiEndpoint;
  readonly #stats: StatsBook;
  #closing: Promise<void> | null = null;
  #reloading: Promise<unknown> = Promise.resolve();
  #watcher: FSWatcher | null = null;
  #watchTimer: NodeJS.Timeout | null = null;

  /** Use {@link createHost}: it loads the registry before the host exists. */
  constructor(options: ResolvedHostOptions, logger: Logger, logs: LogHub, registry: Registry, stats: StatsBook, abi: AbiEndpoint, admin: AdminServer) {
    this.options = options;
    this.logger = logger;
    this.logs = logs;
    this.#stats = stats;
    this.#abi = abi;
    this.#admin = admin;
    this.#state = { registry, accepting: true, active: 0 };
    // The request id is assigned before the chain runs (dispatch.ts), so it is not in it.
    this.#middleware = [];
    if (options.accessLog) this.#middleware.push(accessLog(logger));
    if (options.cors) this.#middleware.push(cors(options.cors));
    this.#bodyLimit = bodyLimit(options.maxBodyBytes);
    this.#middleware.push(this.#bodyLimit, ...options.middleware);
    this.#chain = this.#build();
    const handler = createRequestHandler(this.#state, (c) => this.#chain(c), logger);
    this.#server = http.createServer({ keepAliveTimeout: 5000 }, handler);
    const metrics = createMetrics({
      stats,
      runtimes: () => [...this.#state.registry.versions.values()].map((v) => [v.fn.key, v.runtime.stats()] as [string, RuntimeStats]),
      pendingAbi: () => abi.store.size,
    });
    admin.add(apiRoutes(this, metrics));
  }

  #build(): (c: RequestContext) => void | Promise<void> {
    const state = this.#state;
    const terminal = (c: RequestContext): void | Promise<void> => runFunction(state, c);
    // With bodyLimit alone, skip the chain: runFunction enforces the function's body limit
    // itself, and a request no function serves is answered without reading its body.
    if (this.#middleware.length === 1 && this.#middleware[0] === this.#bodyLimit) return terminal;
    return compose(this.#middleware, terminal);
  }

  /** Append `mw` to the chain, after the built-ins and earlier `use`s, before the function. */
  use(mw: Middleware): this {
    if (typeof mw !== 'function') throw new TypeError('use(middleware): expected a function (c, next) => ...');
    this.#middleware.push(mw);
    this.#chain = this.#build();
    return this;
  }

  /** The middleware chain in order (a copy). */
  get middleware(): Middleware[] { return [...this.#middleware]; }

  /**
   * Start the admin listener (plugins need it), start `instances.min` of every function,
   * then open the public listener; with `watch`, start watching the functions directory.
   * Resolves with the public address.
   */
  async listen(): Promise<{ port: number; host: string; url: string }> {
    await this.#admin.listen();
    await this.#state.registry.warm();
    const address = await new Promise<{ port: number; host: string; url: string }>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port, this.options.host, () => {
        this.#server.off('error', reject);
        const a = this.#server.address() as AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ port: a.port, host: a.address, url: `http://${host}:${a.port}` });
      });
    });
    if (this.options.watch) await this.#startWatching();
    return address;
  }

  /** The bound public URL, e.g. `http://127.0.0.1:3000`. @throws Error when not listening. */
  get url(): string {
    const a = this.#server.address() as AddressInfo | null;
    if (a === null) throw new Error('host is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /** The admin listener's URL (what plugins get as FEZZ_HOST). */
  get adminUrl(): string { return this.#admin.url; }

  /** The admin listener's bearer token (what plugins get as FEZZ_TOKEN). */
  get token(): string { return this.options.token; }

  /** Requests waiting for a plugin's answer now (the ABI's pending map). */
  get pendingRequests(): number { return this.#abi.store.size; }

  /** Functions that could not be loaded, and why. */
  get problems(): readonly LoadProblem[] { return this.#state.registry.problems; }

  /** Every loaded function version with its routes, state and stats. */
  functions(): FunctionInfo[] {
    return [...this.#state.registry.versions.values()].map((v) => describeVersion(v));
  }

  #registryOptions(): RegistryOptions {
    const o = this.options;
    return { dir: o.dir, cacheDir: o.cacheDir, logger: this.logger, dev: o.dev, abi: this.#abi, stats: this.#stats, startTimeoutMs: o.startTimeoutMs };
  }

  /**
   * Hot reload: re-read the functions directory. Unchanged versions keep their warm
   * instances; new and changed ones start an instance first; then traffic switches to the
   * new snapshot at once, and versions no longer present drain their in-flight requests
   * (up to `shutdownGraceMs`) and stop. A version that fails to load or start leaves the
   * one it would replace serving. Reloads run one at a time.
   */
  reload(): Promise<readonly LoadProblem[]> {
    const run = async (): Promise<readonly LoadProblem[]> => {
      if (this.#closing) return this.#state.registry.problems;
      const prev = this.#state.registry;
      const next = await loadRegistry(this.#registryOptions(), prev);
      await next.warm();
      this.#state.registry = next;
      const kept = new Set(next.versions.values());
      const retired = [...prev.versions.values()].filter((v) => !kept.has(v));
      const added = [...next.versions.values()].filter((v) => !prev.versions.has(v.fn.key) || prev.versions.get(v.fn.key) !== v);
      if (added.length > 0 || retired.length > 0) {
        this.logger.info({ added: added.map((v) => v.fn.key), retired: retired.map((v) => v.fn.key), problems: next.problems.length }, 'reloaded functions');
      }
      void Promise.all(retired.map((v) => v.runtime.close(this.options.shutdownGraceMs)));
      return next.problems;
    };
    const p = this.#reloading.then(run, run);
    this.#reloading = p.catch(() => undefined);
    return p;
  }

  /**
   * Deploy a package (`{ files: { path: base64 }, modes? }`, admin API `POST /admin/deploy`):
   * stage it, check that it loads and starts, move it into the functions directory, reload.
   * @returns the deployed key, once it serves.
   * @throws FezzError FEZZ_ERR_ABI_BAD_BODY (bad package), FEZZ_ERR_DEPLOY_REJECTED (422:
   *   bad manifest, build error, start failure — the previous version keeps serving).
   */
  async deploy(pkg: unknown): Promise<{ key: string }> {
    const { key, staged, root } = await stagePackage(this.options.dir, pkg);
    try {
      const fn = await loadFunctionDir(staged).catch((err: Error) => { throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, err.message], err); });
      // Prove it starts before it replaces anything.
      const probe = await loadRegistry({ ...this.#registryOptions(), dir: path.dirname(staged) }).catch((err: Error) => { throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, err.message], err); });
      try {
        const v = probe.versions.get(fn.key);
        if (v === undefined) throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, probe.problems.map((p) => p.message).join('; ') || 'it does not load']);
        try {
          // Its routes must not collide with another function's (checked before anything moves).
          this.#state.registry.router.check(fn.manifest.routes, fn.key, fn.id);
        } catch (err) {
          throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, (err as Error).message], err);
        }
        const failed = await v.runtime.ready();
        if (failed !== null) throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, `it does not start: ${failed}`]);
      } finally {
        await probe.close(0);
      }
      const trash = await promote(this.options.dir, staged, key);
      const problems = await this.reload();
      await removeQuietly(trash);
      const served = this.#state.registry.versions.get(key);
      if (served === undefined || served.fn.dir !== path.join(this.options.dir, key)) {
        const p = problems.find((x) => x.file.includes(key));
        throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, p?.message ?? 'it is not served after the reload']);
      }
      this.logger.info({ fn: key }, 'deployed');
      return { key };
    } finally {
      await removeQuietly(root);
    }
  }

  /**
   * Delete a version (admin API `DELETE /admin/functions/:id/:version`): stop routing to it,
   * let it drain, remove its directory.
   * @throws FezzError FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND (404).
   */
  async remove(id: string, version: string): Promise<{ key: string }> {
    const key = `${id}@${version}`;
    if (!this.#state.registry.versions.has(key) && !this.#state.registry.problems.some((p) => p.file.includes(key))) {
      throw fezzError('FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND', [key]);
    }
    const trash = await retire(this.options.dir, key);
    if (trash === null) throw fezzError('FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND', [key]);
    await this.reload();
    await removeQuietly(trash);
    this.logger.info({ fn: key }, 'deleted');
    return { key };
  }

  async #startWatching(): Promise<void> {
    const root = this.options.dir;
    const ignored = (p: string): boolean => {
      const rel = path.relative(root, p);
      return rel.split(path.sep).some((seg) => seg === 'node_modules' || seg === STAGING_DIR || seg === TRASH_DIR || (seg.startsWith('.') && seg !== '.'));
    };
    const watcher = chokidarWatch(root, { ignoreInitial: true, ignored, depth: 8 });
    watcher.on('all', () => {
      if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
      this.#watchTimer = setTimeout(() => {
        this.#watchTimer = null;
        this.reload().catch((err: unknown) => this.logger.error({ err }, 'reload after a file change failed'));
      }, WATCH_DEBOUNCE_MS);
    });
    watcher.on('error', (err) => this.logger.error({ err }, 'watching the functions directory failed'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.#watcher = watcher;
    this.logger.debug({ dir: root }, 'watching the functions directory');
  }

  /**
   * Graceful shutdown: stop accepting, let in-flight requests finish (up to
   * `graceMs`, default `shutdownGraceMs`), stop every instance and plugin, close the listeners.
   */
  close(graceMs = this.options.shutdownGraceMs): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      const state = this.#state;
      state.accepting = false;
      if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
      await this.#watcher?.close();
      let allClosed = false;
      const closed = new Promise<void>((r) => this.#server.close(() => { allClosed = true; r(); }));
      this.#server.closeIdleConnections();
      const deadline = performance.now() + graceMs;
      while (state.active > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await this.#reloading;
      await state.registry.close(Math.max(0, deadline - performance.now()));
      // Responses written but still flushing: a connection turns idle once its response is
      // out, and is closed then. Past the deadline, every connection is cut.
      while (!allClosed && performance.now() < deadline) {
        this.#server.closeIdleConnections();
        await new Promise((r) => setTimeout(r, 10));
      }
      this.#server.closeAllConnections();
      await closed;
      await this.#admin.close();
      this.#abi.store.close();
      await closeSpares();
    })();
    return this.#closing;
  }
}

function describeVersion(v: FunctionVersion): FunctionInfo {
  const rs = v.runtime.stats();
  return {
    key: v.fn.key, id: v.fn.id, version: v.fn.version, runtime: v.fn.manifest.runtime, latest: v.latest,
    state: rs.instances > 0 ? 'warm' : rs.lastError !== null ? 'failed' : 'cold',
    routes: v.fn.manifest.routes.map((r) => ({ method: r.method, path: r.path, handler: r.handler ?? null })),
    stats: { ...rs, requests: v.stats.requests, errors: v.stats.errors, p50Ms: v.stats.quantileMs(0.5), p99Ms: v.stats.quantileMs(0.99) },
  };
}

/**
 * Create a host: validate options and load the functions directory (bad functions are
 * logged and skipped). Call `listen()` to serve.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID for bad options or an unreadable `dir`.
 */
export async function createHost(options: HostOptions = {}): Promise<Host> {
  const resolved = resolveOptions(options);
  enableSpares();
  const logs = new LogHub();
  const logger = pino({
    level: resolved.logLevel,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: { streamWrite: logs.streamWrite },
  }, resolved.logDestination ?? (resolved.dev || process.stdout.isTTY
    // Pretty lines for people (dev mode, or a terminal); JSON lines for machines.
    ? pino.transport({ target: 'pino-pretty', options: { colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } })
    : pino.destination(1)));
  const store = new PendingStore();
  const admin = new AdminServer({ host: resolved.adminHost, port: resolved.adminPort, token: resolved.token, logger, maxBodyBytes: ADMIN_MAX_BODY_BYTES });
  admin.add(abiRoutes(store, logger));
  const abi: AbiEndpoint = { store, token: resolved.token, url: () => admin.url };
  const stats = new StatsBook();
  const registry = await loadRegistry({ dir: resolved.dir, cacheDir: resolved.cacheDir, logger, dev: resolved.dev, abi, stats, startTimeoutMs: resolved.startTimeoutMs });
  return new Host(resolved, logger, logs, registry, stats, abi, admin);
}

