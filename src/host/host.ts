/**
 * The host: the public HTTP listener over a registry snapshot. Thin public class over
 * private state; everything a request touches is in dispatch.ts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { resolveOptions, type HostOptions, type ResolvedHostOptions } from '../config/options.js';
import { loadRegistry, type LoadProblem, type Registry } from '../registry/registry.js';
import { createLogger } from '../observability/logger.js';
import { compose, requestId, accessLog, cors, bodyLimit } from './middleware.js';
import { createRequestHandler, runFunction, type DispatchState } from './dispatch.js';
import type { Middleware, RequestContext } from './context.js';
import type { RuntimeStats } from '../runtime/types.js';
import { PendingStore } from '../abi/pending-store.js';
import { AdminServer } from '../admin/admin-server.js';
import { abiRoutes } from '../admin/abi-routes.js';
import type { AbiEndpoint } from '../runtime/process/plugin-runtime.js';

/** Largest body the admin listener takes (pushed responses), in bytes. */
const ADMIN_MAX_BODY_BYTES = 64 * 1024 * 1024; // 64 MiB

/** One function version as the host reports it. */
export interface FunctionInfo {
  /** `id@version` */
  key: string;
  id: string;
  version: string;
  runtime: string;
  latest: boolean;
  routes: Array<{ method: string; path: string; handler: string | null }>;
  stats: RuntimeStats;
}

export class Host {
  readonly options: ResolvedHostOptions;
  readonly logger: Logger;
  readonly #state: DispatchState;
  readonly #middleware: Middleware[];
  #chain: (c: RequestContext) => void | Promise<void>;
  readonly #server: http.Server;
  readonly #admin: AdminServer;
  readonly #abi: AbiEndpoint;
  #closing: Promise<void> | null = null;

  /** Use {@link createHost}: it loads the registry before the host exists. */
  constructor(options: ResolvedHostOptions, logger: Logger, registry: Registry, admin: AdminServer, abi: AbiEndpoint) {
    this.options = options;
    this.logger = logger;
    this.#admin = admin;
    this.#abi = abi;
    this.#state = { registry, accepting: true, active: 0 };
    this.#middleware = [requestId()];
    if (options.accessLog) this.#middleware.push(accessLog(logger));
    if (options.cors) this.#middleware.push(cors(options.cors));
    this.#middleware.push(bodyLimit(options.maxBodyBytes), ...options.middleware);
    this.#chain = this.#build();
    const handler = createRequestHandler(this.#state, (c) => this.#chain(c), logger);
    this.#server = http.createServer({ keepAliveTimeout: 5000 }, handler);
  }

  #build(): (c: RequestContext) => void | Promise<void> {
    const state = this.#state;
    return compose(this.#middleware, (c) => runFunction(state, c));
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
   * then open the public listener. Resolves with the public address.
   */
  async listen(): Promise<{ port: number; host: string; url: string }> {
    await this.#admin.listen();
    await this.#state.registry.warm();
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.options.port, this.options.host, () => {
        this.#server.off('error', reject);
        const a = this.#server.address() as AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ port: a.port, host: a.address, url: `http://${host}:${a.port}` });
      });
    });
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

  /** Every loaded function version with its routes and runtime stats. */
  functions(): FunctionInfo[] {
    return [...this.#state.registry.versions.values()].map((v) => ({
      key: v.fn.key, id: v.fn.id, version: v.fn.version, runtime: v.fn.manifest.runtime, latest: v.latest,
      routes: v.fn.manifest.routes.map((r) => ({ method: r.method, path: r.path, handler: r.handler ?? null })),
      stats: v.runtime.stats(),
    }));
  }

  /**
   * Re-read the functions directory and swap the new snapshot in atomically; the old one's
   * instances drain (up to `shutdownGraceMs`) and stop.
   */
  async reload(): Promise<readonly LoadProblem[]> {
    const next = await loadRegistry({ dir: this.options.dir, cacheDir: this.options.cacheDir, logger: this.logger, dev: this.options.dev, abi: this.#abi });
    await next.warm();
    const prev = this.#state.registry;
    this.#state.registry = next;
    void prev.close(this.options.shutdownGraceMs);
    return next.problems;
  }

  /**
   * Graceful shutdown: stop accepting, let in-flight requests finish (up to
   * `graceMs`, default `shutdownGraceMs`), stop every instance, close the listener.
   */
  close(graceMs = this.options.shutdownGraceMs): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closing = (async () => {
      const state = this.#state;
      state.accepting = false;
      const closed = new Promise<void>((r) => this.#server.close(() => r()));
      this.#server.closeIdleConnections();
      const deadline = performance.now() + graceMs;
      while (state.active > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await state.registry.close(Math.max(0, deadline - performance.now()));
      this.#server.closeAllConnections();
      await closed;
      await this.#admin.close();
      this.#abi.store.close();
    })();
    return this.#closing;
  }
}

/**
 * Create a host: validate options and load the functions directory (bad functions are
 * logged and skipped). Call `listen()` to serve.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID for bad options or an unreadable `dir`.
 */
export async function createHost(options: HostOptions = {}): Promise<Host> {
  const resolved = resolveOptions(options);
  const logger = resolved.logger ?? createLogger({ level: resolved.logLevel });
  const store = new PendingStore();
  const admin = new AdminServer({ host: resolved.adminHost, port: resolved.adminPort, token: resolved.token, logger, maxBodyBytes: ADMIN_MAX_BODY_BYTES });
  admin.add(abiRoutes(store, logger));
  const abi: AbiEndpoint = { store, token: resolved.token, url: () => admin.url };
  const registry = await loadRegistry({ dir: resolved.dir, cacheDir: resolved.cacheDir, logger, dev: resolved.dev, abi });
  return new Host(resolved, logger, registry, admin, abi);
}
