/**
 * The host: the public HTTP listener over a registry snapshot, the admin listener (ABI,
 * admin API, /metrics), hot reload and graceful shutdown. A thin public class over private
 * state; everything a request touches is in dispatch.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import type { Logger } from 'pino';
import { createLogger } from '../observability/logger.js';
import { watch as chokidarWatch, type FSWatcher } from 'chokidar';
import { resolveOptions, type HostOptions, type ResolvedHostOptions } from '../config/options.js';
import { loadRegistry, type FunctionVersion, type LoadProblem, type Registry, type RegistryOptions } from '../registry/registry.js';
import { loadFunctionDir } from '../manifest/load.js';
import { fezzError } from '../errors.js';
import { compose, accessLog, cors, bodyLimit, recordRequests } from './middleware.js';
import { WebSocketGateway } from '../websocket/gateway.js';
import { connectionTracker, createRequestHandler, onClientError, runFunction, type ConnectionTracker, type DispatchState } from './dispatch.js';
import { kExpectContinue } from './middleware.js';
import { HostCounters } from '../observability/host-counters.js';
import type { ListenOptions, Socket } from 'node:net';
import type { Middleware, RequestContext } from './context.js';
import type { FunctionRuntime, RuntimeStats } from '../runtime/types.js';
import { PendingStore } from '../abi/pending-store.js';
import { AdminServer } from '../admin/admin-server.js';
import { abiRoutes } from '../admin/abi-routes.js';
import { apiRoutes } from '../admin/api-routes.js';
import type { AbiEndpoint } from '../runtime/process/plugin-runtime.js';
import { StatsBook } from '../observability/function-stats.js';
import { LogHub, type LogLine } from '../observability/log-hub.js';
import type { HostSnapshot } from '../admin/api-routes.js';
import type { Registry as MetricsRegistry } from 'prom-client';
import { createMetrics } from '../observability/metrics.js';
import { closeSpares, enableSpares } from '../runtime/isolate/spares.js';
import { Scheduler, type ScheduledRun } from '../triggers/scheduler.js';
import { compileCron, MAX_CRON_LENGTH } from '../manifest/schema.js';
import { SecretStore, checkFunctionId, checkSecretName, checkSecretValue, type SecretInfo } from '../secrets/store.js';
import { compareVersionDir, promote, removeQuietly, retire, stagePackage, STAGING_DIR, TRASH_DIR } from '../registry/deploy.js';

/** Largest body the admin listener takes (pushed responses, deploy packages), in bytes. */
const ADMIN_MAX_BODY_BYTES = 64 * 1024 * 1024; // 64 MiB
/** How long a version whose start failed is not retried by reloads (unless its files change), in ms. */
const FAILED_START_RETRY_MS = 60_000;
/** Shutdown closes the public listener after this long without a new connection, in ms... */
const LISTENER_PAUSE_MS = 50;
/** ...or after this long at most (within the grace), in ms. */
const LISTENER_PAUSE_MAX_MS = 1000;
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
  stats: RuntimeStats & { requests: number; errors: number; clientAborts: number; p50Ms: number | null; p99Ms: number | null };
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
  readonly #connections: ConnectionTracker;
  /** WebSocket upgrades on the public listener (src/websocket/gateway.ts). */
  readonly #webSockets: WebSocketGateway;
  /** Ends the drain delay early (a second `close(…, 0)`), while it runs. */
  #endDrainDelay: (() => void) | null = null;
  readonly #admin: AdminServer;
  readonly #abi: AbiEndpoint;
  readonly #stats: StatsBook;
  readonly #counters: HostCounters;
  /** What `/metrics` serves (prom-client registry; computed at scrape time). */
  readonly metrics: MetricsRegistry;
  #prepared: Promise<void> | null = null;
  /** The public URL when connections are handed over (`listen({ handed: true })`), else null. */
  #handedUrl: string | null = null;
  #closing: Promise<void> | null = null;
  #reloading: Promise<unknown> = Promise.resolve();
  /** The reload waiting for the running one to finish, shared by everyone who asks meanwhile. */
  #nextReload: Promise<readonly LoadProblem[]> | null = null;
  #retryFailed = false;
  /** Versions (by fingerprint) whose start failed in a reload: see RegistryOptions.failedStarts. */
  readonly #failedStarts = new Map<string, LoadProblem & { at: number }>();
  /** Runtimes the running reload created (stopped at once if shutdown begins meanwhile). */
  #starting: FunctionRuntime[] = [];
  #watcher: FSWatcher | null = null;
  #watchTimer: NodeJS.Timeout | null = null;
  /** Cron triggers and manual scheduled runs (src/triggers/). */
  readonly #scheduler: Scheduler;
  /** Set by listen(): from then on each registry snapshot's crons run (when options.schedule). */
  #scheduling = false;
  /** The secrets store (options.secretsDir), or null: the secrets routes answer 501. */
  readonly #secrets: SecretStore | null;

  /** Use {@link createHost}: it loads the registry before the host exists. */
  constructor(options: ResolvedHostOptions, logger: Logger, logs: LogHub, registry: Registry, stats: StatsBook, abi: AbiEndpoint, admin: AdminServer, secrets: SecretStore | null = null) {
    this.options = options;
    this.#secrets = secrets;
    this.logger = logger;
    this.logs = logs;
    this.#stats = stats;
    this.#abi = abi;
    this.#admin = admin;
    this.#counters = new HostCounters(logger);
    this.#state = { registry, draining: false, accepting: true, active: 0, counters: this.#counters, bodyTimeoutMs: options.bodyTimeoutMs, sendTimeoutMs: options.sendTimeoutMs, trustProxy: options.trustProxy };
    // The request id is assigned before the chain runs (dispatch.ts), so it is not in it.
    this.#middleware = [];
    if (options.accessLog) this.#middleware.push(accessLog(logger));
    if (options.cors) this.#middleware.push(cors(options.cors));
    this.#bodyLimit = bodyLimit(options.maxBodyBytes, options.bodyTimeoutMs);
    this.#middleware.push(this.#bodyLimit, ...options.middleware);
    this.#chain = this.#build();
    const handler = createRequestHandler(this.#state, (c) => this.#chain(c), logger);
    this.#server = http.createServer({
      keepAliveTimeout: options.keepAliveTimeoutMs,
      headersTimeout: options.headersTimeoutMs,
      // Not Node's whole-request timer: a streamed upload may legitimately take longer than
      // any fixed figure. The head has headersTimeout; a body has its idle limit
      // (bodyTimeoutMs) and a total one: 300 s read whole (body.ts), limits.streamMaxMs
      // streamed (request-body.ts).
      requestTimeout: 0,
    }, handler);
    const server = this.#server;
    this.#webSockets = new WebSocketGateway({ state: this.#state, logger, counters: this.#counters, server });
    server.on('upgrade', this.#webSockets.onUpgrade);
    this.#connections = connectionTracker(this.#state, options.maxConnections, logger);
    server.on('connection', this.#connections);
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => onClientError(this.#counters, err, socket as Socket));
    // After listen(), a listener error (e.g. accept failing) is logged; it must never be an
    // unhandled 'error' event that ends the process.
    server.on('error', (err) => { if (server.listening) logger.error({ err }, 'public listener error'); });
    // Expect: 100-continue: `100 Continue` goes out only when the body will be read (bodyLimit).
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      (req as unknown as Record<symbol, unknown>)[kExpectContinue] = true;
      handler(req, res);
    });
    this.#scheduler = new Scheduler({ logger, fire: options.schedule, startTimeoutMs: options.startTimeoutMs });
    const metrics = createMetrics({
      stats,
      runtimes: () => [...this.#state.registry.versions.values()].map((v) => [v.fn.key, v.runtime.stats()] as [string, RuntimeStats]),
      pendingAbi: () => abi.store.size,
      counters: this.#counters,
      scheduledRuns: () => this.#scheduler.counts(),
    });
    this.metrics = metrics;
    admin.add(apiRoutes(this, metrics));
  }

  #build(): (c: RequestContext) => void | Promise<void> {
    const state = this.#state;
    const terminal = (c: RequestContext): void | Promise<void> => runFunction(state, c);
    // With bodyLimit alone, skip the chain: runFunction enforces the function's body limit
    // itself, and a request no function serves is answered without reading its body.
    const chain = this.#middleware.length === 1 && this.#middleware[0] === this.#bodyLimit ? terminal : compose(this.#middleware, terminal);
    // Each request of a function goes into the log hub (`fezz logs`), unless the access log
    // is on: its lines reach the hub already.
    return this.options.accessLog ? chain : recordRequests(chain, this.logs);
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
   * Start the admin listener (plugins need it) and `instances.min` of every function, without
   * opening the public listener: what must be up before a deploy (a source sync, a cluster
   * primary) can run. Idempotent; `listen()` calls it.
   */
  prepare(): Promise<void> {
    this.#prepared ??= (async () => {
      await this.#admin.listen();
      await this.#state.registry.warm();
    })();
    return this.#prepared;
  }

  /**
   * `prepare()`, then open the public listener; with `watch`, start watching the functions
   * directory. Resolves with the public address.
   * @param opts.port the port instead of `options.port` (a cluster worker gets the port the
   *   first worker bound). @param opts.reusePort bind with SO_REUSEPORT, the socket of this
   *   process alone (`exclusive`), so that several host processes share the port and the
   *   kernel spreads connections among them (Node 22.12+/23.1+; src/cluster/).
   * @param opts.handed no listener of its own: another process (a cluster primary on a Node
   *   without reusePort, src/cluster/balancer.ts) accepts the connections on this port and
   *   hands them over with {@link acceptConnection}.
   * @throws Error from the listener (EADDRINUSE, EACCES).
   */
  async listen(opts: { port?: number; reusePort?: boolean; handed?: boolean } = {}): Promise<{ port: number; host: string; url: string }> {
    await this.prepare();
    const port = opts.port ?? this.options.port;
    if (opts.handed === true) {
      const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
      this.#handedUrl = `http://${host}:${port}`;
      this.#startCrons();
      if (this.options.watch) await this.#startWatching();
      return { port, host: this.options.host, url: this.#handedUrl };
    }
    const address = await new Promise<{ port: number; host: string; url: string }>((resolve, reject) => {
      this.#server.once('error', reject);
      const listening = (): void => {
        this.#server.off('error', reject);
        const a = this.#server.address() as AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ port: a.port, host: a.address, url: `http://${host}:${a.port}` });
      };
      if (opts.reusePort === true) this.#server.listen({ port, host: this.options.host, reusePort: true, exclusive: true } as ListenOptions, listening);
      else this.#server.listen(port, this.options.host, listening);
    });
    this.#startCrons();
    if (this.options.watch) await this.#startWatching();
    return address;
  }

  /**
   * Serve a public connection accepted by another process (`listen({ handed: true })`): it is
   * treated as if this host's listener had accepted it (connection limits, timeouts, drain).
   */
  acceptConnection(socket: Socket): void {
    this.#server.emit('connection', socket);
    socket.resume();
  }

  /** The bound public URL, e.g. `http://127.0.0.1:3000`. @throws Error when not listening. */
  get url(): string {
    if (this.#handedUrl !== null) return this.#handedUrl;
    const a = this.#server.address() as AddressInfo | null;
    if (a === null) throw new Error('host is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /** The admin listener's URL (what plugins get as FEZZ_HOST). */
  get adminUrl(): string { return this.#admin.url; }

  /**
   * The admin socket's path while it is open (option `adminSocket`), else null. When set, the
   * admin token works only there; `adminUrl` keeps serving plugins' ABI tokens.
   */
  get adminSocket(): string | null { return this.#admin.socketPath; }

  /** The admin listener's bearer token: every admin route. Plugins never get it: each plugin runtime gets a token scoped to its own requests (abi/tokens.ts). */
  get token(): string { return this.options.token; }

  /** Requests waiting for a plugin's answer now (the ABI's pending map). */
  get pendingRequests(): number { return this.#abi.store.size; }

  /** Functions that could not be loaded, and why. */
  get problems(): readonly LoadProblem[] { return this.#state.registry.problems; }

  /** Every loaded function version with its routes, state and stats. */
  functions(): FunctionInfo[] {
    return [...this.#state.registry.versions.values()].map((v) => describeVersion(v));
  }

  /** What the admin API reports of this host (api-routes.ts AdminApiHost). */
  async snapshot(): Promise<HostSnapshot> {
    return { functions: this.functions(), problems: this.problems, pendingRequests: this.pendingRequests };
  }

  /** The last `n` log lines of function `id` (api-routes.ts AdminApiHost). */
  async recentLogs(id: string, n: number): Promise<LogLine[]> { return this.logs.recent(id, n); }

  /** Call `push` with each new log line of function `id`; returns the unsubscribe function. */
  followLogs(id: string, push: (line: LogLine) => void): () => void { return this.logs.follow(id, push); }

  /** Start following the registry's crons (once serving; see options.schedule). */
  #startCrons(): void {
    if (this.#scheduling || this.#closing) return;
    this.#scheduling = true;
    this.#scheduler.sync(this.#state.registry);
  }

  /**
   * Run function `id`'s scheduled handler now (`fezz trigger`, admin API `POST
   * /admin/functions/:id/scheduled`), like wrangler's `--test-scheduled`: its latest version,
   * or exactly `id@version`. `controller.cron` is `cron`, else the manifest's first cron,
   * else `""`; `controller.scheduledTime` is now. Logged and counted like a tick's run, not
   * subject to the overlap rule. Resolves with the run (its outcome says how it went).
   * @throws FezzError FEZZ_ERR_FUNCTION_NOT_FOUND (404: no such function or version),
   *   FEZZ_ERR_BAD_REQUEST (400: `cron` is not a valid cron expression).
   */
  async runScheduled(id: string, cron: string | null = null): Promise<ScheduledRun> {
    const at = id.indexOf('@');
    const v = at === -1 ? this.#state.registry.latest.get(id) : this.#state.registry.versions.get(id);
    if (v === undefined) throw fezzError('FEZZ_ERR_FUNCTION_NOT_FOUND', [id.slice(0, 200)]);
    const triggers = v.fn.manifest.triggers;
    if (cron !== null && !(triggers?.crons.includes(cron) ?? false)) {
      let why: string | null = null;
      if (cron.length > MAX_CRON_LENGTH) why = `longer than ${MAX_CRON_LENGTH} characters`;
      else {
        try { compileCron(cron, triggers?.timezone ?? 'UTC'); } catch (err) { why = String((err as Error).message).replace(/^CronPattern: /, ''); }
      }
      if (why !== null) throw fezzError('FEZZ_ERR_BAD_REQUEST', [`cron ${JSON.stringify(cron.slice(0, MAX_CRON_LENGTH))} is not a valid cron expression: ${why}`]);
    }
    return this.#scheduler.runNow(v, cron ?? triggers?.crons[0] ?? '');
  }

  #registryOptions(): RegistryOptions {
    const o = this.options;
    return { dir: o.dir, cacheDir: o.cacheDir, logger: this.logger, dev: o.dev, abi: this.#abi, stats: this.#stats, startTimeoutMs: o.startTimeoutMs, isolation: o.isolation, secrets: this.#secrets };
  }

  /**
   * Hot reload: re-read the functions directory. Unchanged versions keep their warm
   * instances; new and changed ones start an instance first (each start bounded by
   * `startTimeoutMs`); then traffic switches to the new snapshot at once, and versions no
   * longer present drain their in-flight requests (up to `shutdownGraceMs`) and stop. A
   * version that fails to load or start leaves the one it would replace serving. Reloads run
   * one at a time; requests for a reload while one runs share the next one. This public call
   * (`POST /admin/reload`) retries versions whose start failed before; the reloads of the
   * watcher, deploy and delete do not until their files change or FAILED_START_RETRY_MS
   * passed, so one module that never loads does not cost every reload a start deadline.
   */
  reload(): Promise<readonly LoadProblem[]> {
    return this.#reload(true);
  }

  #reload(retryFailed: boolean): Promise<readonly LoadProblem[]> {
    if (retryFailed) this.#retryFailed = true;
    if (this.#nextReload !== null) return this.#nextReload;
    const run = async (): Promise<readonly LoadProblem[]> => {
      this.#nextReload = null;
      if (this.#closing) return this.#state.registry.problems;
      if (this.#retryFailed) { this.#failedStarts.clear(); this.#retryFailed = false; }
      const now = Date.now();
      for (const [fp, p] of this.#failedStarts) if (now - p.at >= FAILED_START_RETRY_MS) this.#failedStarts.delete(fp);
      if (this.#failedStarts.size > 1000) this.#failedStarts.clear();
      const prev = this.#state.registry;
      const created: FunctionRuntime[] = [];
      this.#starting = created;
      const next = await loadRegistry({ ...this.#registryOptions(), failedStarts: this.#failedStarts, onCreate: (r) => created.push(r) }, prev)
        .finally(() => { this.#starting = []; });
      if (this.#closing) {
        // Shutdown began while this reload started instances: they are not served.
        await Promise.all([...next.versions.values()].filter((v) => prev.versions.get(v.fn.key) !== v).map((v) => v.runtime.close(0)));
        return next.problems;
      }
      await next.warm();
      this.#state.registry = next;
      if (this.#scheduling) this.#scheduler.sync(next);
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
    this.#nextReload = p;
    this.#reloading = p.catch(() => undefined);
    return p;
  }

  /**
   * Deploy a package (`{ files: { path: base64 }, modes? }`, admin API `POST /admin/deploy`):
   * stage it, check that it loads and starts, move it into the functions directory, reload.
   * Versions are immutable: when `<id>@<version>` is already in the functions directory
   * with other content (compared as written on disk), the deploy is refused unless
   * `opts.replace`; with the same content and that version serving, nothing restarts and
   * `unchanged` is true (idempotent).
   * @returns the deployed key, once it serves.
   * @throws FezzError FEZZ_ERR_ABI_BAD_BODY (400: bad package, a file name the file system
   *   refuses), FEZZ_ERR_DEPLOY_IN_PROGRESS (409: a deploy or delete of the same id@version is
   *   running), FEZZ_ERR_VERSION_EXISTS (409: the version exists with other content, and
   *   `replace` is not set), FEZZ_ERR_DEPLOY_REJECTED (422: bad manifest, build error, start
   *   failure — the previous version keeps serving). The staging directory is removed on every path.
   */
  async deploy(pkg: unknown, opts: { replace?: boolean } = {}): Promise<{ key: string; unchanged?: boolean }> {
    // Checks the package (400) and claims its version (409 while another deploy or delete of
    // it runs) before writing anything; dispose() below removes the staging directory and
    // gives the claim up.
    const stage = await stagePackage(this.options.dir, pkg);
    const { key, staged } = stage;
    try {
      // Under the claim, so no other deploy or delete of this version changes it meanwhile.
      const target = path.join(this.options.dir, key);
      const existing = await compareVersionDir(target, staged);
      if (existing === 'same') {
        const serving = this.#state.registry.versions.get(key);
        if (serving !== undefined && serving.fn.dir === target) {
          this.logger.info({ fn: key }, 'deploy of an identical version: nothing to do');
          return { key, unchanged: true };
        }
        // Identical but not serving (its start failed before): deployed again, as a retry.
      } else if (existing === 'different' && opts.replace !== true) {
        throw fezzError('FEZZ_ERR_VERSION_EXISTS', [key, 'this host']);
      }
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
      const problems = await this.#reload(false);
      await removeQuietly(trash);
      const served = this.#state.registry.versions.get(key);
      if (served === undefined || served.fn.dir !== target) {
        // The problem in exactly its directory (the directory itself, or its fezz.json).
        const p = problems.find((x) => { const f = path.resolve(x.file); return f === target || path.dirname(f) === target; });
        throw fezzError('FEZZ_ERR_DEPLOY_REJECTED', [key, p?.message ?? 'it is not served after the reload']);
      }
      this.logger.info({ fn: key, replaced: existing !== 'absent' }, 'deployed');
      return { key };
    } finally {
      await stage.dispose();
    }
  }

  /**
   * Delete a version (admin API `DELETE /admin/functions/:id/:version`): stop routing to it,
   * let it drain, remove its directory.
   * @throws FezzError FEZZ_ERR_BAD_REQUEST (400: malformed id or version),
   *   FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND (404: no such version directory),
   *   FEZZ_ERR_DEPLOY_IN_PROGRESS (409: a deploy or delete of it is running).
   */
  async remove(id: string, version: string): Promise<{ key: string }> {
    // Known: served, or a problem in exactly its directory (the directory or its fezz.json).
    const dir = path.join(this.options.dir, `${id}@${version}`);
    const known = (): boolean => this.#state.registry.versions.has(`${id}@${version}`) ||
      this.#state.registry.problems.some((p) => { const f = path.resolve(p.file); return f === dir || path.dirname(f) === dir; });
    // 400 for a malformed id or version, 409 while a deploy or delete of it runs, 404 unless
    // known and a directory; then the directory is in the trash and the version claimed.
    const { key, trash, release } = await retire(this.options.dir, id, version, known);
    try {
      await this.#reload(false);
      await removeQuietly(trash);
    } finally {
      release();
    }
    this.logger.info({ fn: key }, 'deleted');
    return { key };
  }

  /** The secrets store, or 501 FEZZ_ERR_SECRETS_DISABLED. */
  #store(): SecretStore {
    if (this.#secrets === null) throw fezzError('FEZZ_ERR_SECRETS_DISABLED');
    return this.#secrets;
  }

  /**
   * The names of function `id`'s secrets and when each was last set (admin API
   * `GET /admin/secrets/:id`); never a value. An id with none (or not deployed) has `[]`.
   * @throws FezzError FEZZ_ERR_SECRETS_DISABLED (501: no store), FEZZ_ERR_BAD_REQUEST (400:
   *   malformed id), FEZZ_ERR_SECRETS_KEY / FEZZ_ERR_SECRETS_STORE (500: unreadable store).
   */
  async listSecrets(id: string): Promise<SecretInfo[]> {
    return this.#store().list(id);
  }

  /**
   * Set secret `name` of function `id` to `value` (UTF-8 bytes, 1 byte to 64 KiB; admin API
   * `PUT /admin/secrets/:id/:name`), encrypted in the store, then hot-reload: every loaded
   * version of `id` whose environment changes starts again with it (the others keep their
   * warm instances; no request fails), as after a file change. A secret may be set before
   * the function is first deployed. The value is never logged.
   * @returns `reloaded`: the versions that restarted with it (`id@version`); `problems`: those
   *   of `id` that are not served after the reload.
   * @throws FezzError FEZZ_ERR_SECRETS_DISABLED (501), FEZZ_ERR_BAD_REQUEST (400: malformed
   *   id), FEZZ_ERR_SECRET_NAME_INVALID / FEZZ_ERR_SECRET_VALUE_INVALID (400),
   *   FEZZ_ERR_SECRET_LIMIT (413: value over 64 KiB, or 128 secrets already),
   *   FEZZ_ERR_SECRET_CLASH (409: a loaded version of `id` has `name` in its manifest `env`
   *   or `permissions.env`; nothing is stored), FEZZ_ERR_SECRETS_KEY / _STORE (500).
   */
  async putSecret(id: string, name: string, value: Uint8Array): Promise<{ id: string; name: string; updatedAt: string; created: boolean; reloaded: string[]; problems: LoadProblem[] }> {
    const store = this.#store();
    checkFunctionId(id);
    checkSecretName(name);
    const text = checkSecretValue(name, value);
    for (const v of this.#state.registry.versions.values()) {
      if (v.fn.id !== id) continue;
      const m = v.fn.manifest;
      const where = Object.hasOwn(m.env, name) ? 'fezz.json "env"' : m.permissions.env.includes(name) ? 'fezz.json "permissions.env"' : null;
      if (where !== null) throw fezzError('FEZZ_ERR_SECRET_CLASH', [v.fn.key, name, where, id, name]);
    }
    const info = await store.put(id, name, text);
    const changed = await this.#reloadForSecrets(id);
    this.logger.info({ fn: id, secret: name, created: info.created, reloaded: changed.reloaded }, info.created ? 'secret added' : 'secret changed');
    return { id, ...info, ...changed };
  }

  /**
   * Remove secret `name` of function `id` (admin API `DELETE /admin/secrets/:id/:name`), then
   * hot-reload its versions as {@link putSecret} does.
   * @throws FezzError FEZZ_ERR_SECRET_NOT_FOUND (404), FEZZ_ERR_SECRETS_DISABLED (501),
   *   FEZZ_ERR_BAD_REQUEST / FEZZ_ERR_SECRET_NAME_INVALID (400), FEZZ_ERR_SECRETS_KEY / _STORE (500).
   */
  async deleteSecret(id: string, name: string): Promise<{ id: string; name: string; reloaded: string[]; problems: LoadProblem[] }> {
    await this.#store().delete(id, name);
    const changed = await this.#reloadForSecrets(id);
    this.logger.info({ fn: id, secret: name, reloaded: changed.reloaded }, 'secret deleted');
    return { id, name, ...changed };
  }

  /** Reload after a secret of `id` changed: which versions of `id` restarted, and its problems. */
  async #reloadForSecrets(id: string): Promise<{ reloaded: string[]; problems: LoadProblem[] }> {
    const before = this.#state.registry.versions;
    const problems = await this.#reload(false);
    const reloaded = [...this.#state.registry.versions.values()].filter((v) => v.fn.id === id && before.get(v.fn.key) !== v).map((v) => v.fn.key);
    const mine = (p: LoadProblem): boolean => {
      // `file` is a version's directory or its fezz.json.
      const f = path.resolve(p.file);
      return path.basename(path.basename(f) === 'fezz.json' ? path.dirname(f) : f).startsWith(`${id}@`);
    };
    return { reloaded, problems: problems.filter(mine) };
  }

  async #startWatching(): Promise<void> {
    const root = this.options.dir;
    const ignored = (p: string): boolean => {
      const rel = path.relative(root, p);
      // Dot-files are not watched, but for a function's `.dev.vars` in dev mode (its local secrets).
      const devVars = this.options.dev && path.basename(p) === '.dev.vars';
      return rel.split(path.sep).some((seg) => seg === 'node_modules' || seg === STAGING_DIR || seg === TRASH_DIR || (seg.startsWith('.') && seg !== '.' && !(devVars && seg === '.dev.vars')));
    };
    const watcher = chokidarWatch(root, { ignoreInitial: true, ignored, depth: 8 });
    const schedule = (): void => {
      if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
      this.#watchTimer = setTimeout(() => {
        this.#watchTimer = null;
        this.#reload(false).catch((err: unknown) => this.logger.error({ err }, 'reload after a file change failed'));
      }, WATCH_DEBOUNCE_MS);
    };
    watcher.on('all', schedule);
    // A Kubernetes ConfigMap (or projected) volume changes by a symlink swap: kubelet writes
    // `..<timestamp>/`, points `..data_tmp` at it and renames that over `..data` (the visible
    // names are links through `..data`). The rename is the one certain event of an update:
    // chokidar reports the visible files only when the old `..<timestamp>/` is removed
    // afterwards, and `..data` stays ignored (it would be a second view of every file). So the
    // rename is taken from the raw fs.watch events of the directories chokidar watches (the
    // functions directory, and each function directory where a ConfigMap is mounted).
    watcher.on('raw', (_event: string, p: string) => {
      if (path.basename(p) === '..data') schedule();
    });
    watcher.on('error', (err) => this.logger.error({ err }, 'watching the functions directory failed'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.#watcher = watcher;
    this.logger.debug({ dir: root }, 'watching the functions directory');
  }

  /**
   * Graceful shutdown, in two phases.
   *
   * 1. The drain delay (`drainDelayMs`, default the `drainDelayMs` option: 0 for the
   *    library, 5 s for `fezz serve`): the listener stays open and requests are served,
   *    but `/healthz` answers 503 and every response carries `connection: close`, so a load
   *    balancer's health checks take the host out and its clients move their connections
   *    elsewhere before anything is refused.
   * 2. Up to `graceMs` (default `shutdownGraceMs`): the listener closes (new connections are
   *    refused), in-flight requests finish, and connections close as soon as they are quiet:
   *    a request whose head already arrived, or is arriving, on a kept-alive connection is
   *    answered (with `connection: close`), never reset. Then every instance and plugin
   *    stops and the admin listener closes.
   *
   * Resolves within `drainDelayMs + graceMs` plus a small margin whatever the functions do:
   * a reload still starting instances is not waited for, and past the deadline instances
   * are terminated and connections cut. A second call returns the same promise; with
   * `drainDelayMs` 0 it also ends a drain delay still running (a second Ctrl-C).
   */
  close(graceMs = this.options.shutdownGraceMs, drainDelayMs = this.options.drainDelayMs): Promise<void> {
    if (this.#closing) {
      if (drainDelayMs === 0) this.#endDrainDelay?.();
      return this.#closing;
    }
    this.#closing = (async () => {
      const state = this.#state;
      const server = this.#server;
      const connections = this.#connections;
      state.draining = true;
      // No new scheduled run once shutdown begins; runs going now finish within their deadlines.
      this.#scheduler.close();
      if (drainDelayMs > 0) {
        this.logger.info({ drainDelayMs }, 'shutdown phase 1: draining, still serving; /healthz answers 503 and responses carry connection: close');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, drainDelayMs);
          this.#endDrainDelay = () => { clearTimeout(timer); resolve(); };
        });
        this.#endDrainDelay = null;
      }
      const deadline = performance.now() + graceMs;
      const left = (): number => Math.max(0, deadline - performance.now());
      this.logger.info({ graceMs, connections: connections.open, inFlight: state.active, webSockets: this.#webSockets.open }, 'shutdown phase 2: closing the listener; finishing in-flight requests, closing idle connections and WebSockets (1001)');
      this.#webSockets.closeAll();
      if (this.#watchTimer !== null) clearTimeout(this.#watchTimer);
      // Closing a listener resets the connections the kernel completed but the host has not
      // accepted yet, and their clients have sent a request on them already (nginx does not
      // re-send a POST then). So it closes in a pause between new connections (by now a load
      // balancer sends none), waiting at most LISTENER_PAUSE_MAX_MS, just after the event loop
      // accepted what was there.
      const pauseUntil = performance.now() + Math.min(LISTENER_PAUSE_MAX_MS, graceMs);
      while (performance.now() - connections.lastConnection < LISTENER_PAUSE_MS && performance.now() < pauseUntil) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setImmediate(r));
      let allClosed = false;
      // Close the listener only: http.Server#close() (Node 19+) also destroys the connections
      // Node deems idle at once, whatever has just arrived on them. Connections close here,
      // one by one, once quiet (dispatch.ts isQuiet).
      server.closeIdleConnections = () => undefined;
      const closed = new Promise<void>((r) => server.close(() => { allClosed = true; r(); }));
      Reflect.deleteProperty(server, 'closeIdleConnections');
      await withDeadline(this.#watcher?.close() ?? Promise.resolve(), left());
      // Requests still arriving on open connections are served (they get connection: close),
      // so the instances stay up until the connections are gone or the deadline passed.
      // Each sweep runs just after the event loop read the sockets (setImmediate follows the
      // poll phase), so bytes that reached the host before it are parsed and seen.
      const afterPoll = (): Promise<void> => new Promise((r) => setImmediate(r));
      await afterPoll();
      while ((connections.closeQuiet(server) > 0 || state.active > 0) && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
        await afterPoll();
      }
      state.accepting = false;
      // A reload in progress is not waited for: what it is starting stops now.
      await Promise.all(this.#starting.map((r) => r.close(0)));
      await state.registry.close(left());
      this.#webSockets.terminateAll();
      // Past the deadline, every connection still open is cut.
      if (!allClosed || this.#handedUrl !== null) server.closeAllConnections();
      await closed;
      await this.#admin.close();
      this.#abi.store.close();
      await withDeadline(closeSpares(), 1000);
    })();
    return this.#closing;
  }
}

/** Wait for `p`, but no longer than `ms` ms (then resolve anyway). */
function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(() => undefined, () => undefined),
    new Promise<void>((r) => { timer = setTimeout(r, ms); }),
  ]).finally(() => clearTimeout(timer));
}

function describeVersion(v: FunctionVersion): FunctionInfo {
  const rs = v.runtime.stats();
  return {
    key: v.fn.key, id: v.fn.id, version: v.fn.version, runtime: v.fn.manifest.runtime, latest: v.latest,
    state: rs.instances > 0 ? 'warm' : rs.lastError !== null ? 'failed' : 'cold',
    routes: v.fn.manifest.routes.map((r) => ({ method: r.method, path: r.path, handler: r.handler ?? null })),
    stats: { ...rs, requests: v.stats.requests, errors: v.stats.errors, clientAborts: v.stats.clientAborts, p50Ms: v.stats.quantileMs(0.5), p99Ms: v.stats.quantileMs(0.99) },
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
  const logger = createLogger({ level: resolved.logLevel, dev: resolved.dev, destination: resolved.logDestination, streamWrite: logs.streamWrite });
  const store = new PendingStore();
  const admin = new AdminServer({ host: resolved.adminHost, port: resolved.adminPort, token: resolved.token, logger, maxBodyBytes: ADMIN_MAX_BODY_BYTES, maxConnections: resolved.adminMaxConnections, socketPath: resolved.adminSocket });
  admin.add(abiRoutes(store, logger));
  // Plugins get their own scoped tokens from the admin listener, never resolved.token.
  const abi: AbiEndpoint = { store, tokens: admin.pluginTokens, url: () => admin.url, connection: (socket) => admin.acceptConnection(socket) };
  const stats = new StatsBook();
  // The secrets store opens before anything loads: a wrong key stops the host here, naming
  // the file, rather than handing functions garbage. The key itself is not kept in `resolved`.
  const secrets = resolved.secretsDir === null ? null : await SecretStore.open({
    dir: resolved.secretsDir, key: options.secretsKey ?? null, keyFile: resolved.secretsKeyFile, keyLabel: 'FEZZ_SECRETS_KEY (the secretsKey option)', logger,
  });
  const registry = await loadRegistry({ dir: resolved.dir, cacheDir: resolved.cacheDir, logger, dev: resolved.dev, abi, stats, startTimeoutMs: resolved.startTimeoutMs, isolation: resolved.isolation, secrets });
  return new Host(resolved, logger, logs, registry, stats, abi, admin, secrets);
}

