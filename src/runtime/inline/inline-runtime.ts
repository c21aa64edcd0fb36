/**
 * The inline runtime: a trusted function run on the host's own thread, with no isolation —
 * the native fast path of seed 002. Same contract as an isolate (Request, env, ctx; named
 * handlers; waitUntil), loaded on first use. A throw or rejection is a 500 and an async
 * handler past `limits.timeoutMs` a 504, but a synchronous infinite loop or a crash here
 * takes the host down: use it only for code you trust.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { FastRequest, abortRequest } from '../handler/fast-request.js';
import { installFastResponse, readResponse, describe, type ResponseParts } from '../handler/fast-response.js';
import { NO_FETCH_HINT, resolveHandlers, WaitUntilTracker, type Context, type Env, type Handler, type ModuleHandlers } from '../handler/contract.js';
import { errorResponse, errorResponseWithMessage } from '../../wire/error-response.js';
import type { WireResponse } from '../../wire/types.js';
import { bodyStreamOf } from '../../wire/web-body.js';
import type { Limits } from '../../manifest/schema.js';
import { findScheduled, scheduledEntry, SCHEDULED_HANDLER, type FunctionRuntime, type InvokeRequest, type RuntimeStats } from '../types.js';
import { installPlatformGlobals } from '../isolate/platform-globals.js';
import { StackMapper } from '../../build/source-map.js';
import { installServiceWorkerGlobals, watchModule, withServiceWorker } from '../handler/service-worker.js';
import { SocketBook } from '../../websocket/book.js';
import { HostSocketEnd } from '../../websocket/host-end.js';
import { SocketHub, pairsMade, upgradeOf, type UpgradeParts } from '../../websocket/function-socket.js';
import { deferredPost } from '../../websocket/local-channel.js';
import { CLOSE_ABNORMAL, CLOSE_GOING_AWAY } from '../../wire/websocket.js';

export interface InlineRuntimeOptions {
  fnKey: string;
  moduleUrl: string;
  env: Record<string, string>;
  handlerNames: string[];
  /**
   * Whether the module must have a default `fetch` handler. False for a function with cron
   * triggers (a scheduled-only module, as a Worker may be): an HTTP request for its default
   * handler then gets 500 FEZZ_ERR_HANDLER_MISSING. @default true
   */
  requireFetch?: boolean;
  limits: Limits;
  logger: Logger;
  dev: boolean;  /** Deadline for an instance to load the function, in ms, whether or not a request waits. */
  startTimeoutMs: number;
}

const RETRY_AFTER = ['retry-after', '1'];

export class InlineRuntime implements FunctionRuntime {
  readonly #o: InlineRuntimeOptions;
  readonly #env: Env;
  #handlers: ModuleHandlers | null = null;
  /** What a scheduled event (cron trigger) runs: the module's `scheduled` export, adapted (runtime/types.ts). */
  #scheduled: Handler = scheduledEntry(null);
  #loading: Promise<ModuleHandlers> | null = null;
  #loadFailedUntil = 0;
  #inflight = 0;
  #closed = false;
  #stats = { coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0 };
  #lastError: string | null = null;
  readonly #waitUntil: WaitUntilTracker;
  /** Its open WebSockets (src/websocket/), capped at `limits.maxWebSockets`. */
  readonly webSockets: SocketBook;
  /** The function's side of its sockets, joined to the host's ({@link HostSocketEnd}) by deferred calls (local-channel.ts). */
  readonly #hub: SocketHub;
  /** The host's side of each open socket, by id. */
  readonly #ends = new Map<number, HostSocketEnd>();
  readonly #toFunction: (msg: unknown[]) => void;
  #socketSeq = 0;
  /** Maps the bundle's positions in logged stacks to the function's own files (build/source-map.ts); reads nothing until an error. */
  readonly #stacks: StackMapper;

  constructor(options: InlineRuntimeOptions) {
    this.#o = options;
    this.#env = Object.freeze({ ...options.env });
    this.#stacks = new StackMapper(options.moduleUrl);
    this.#waitUntil = new WaitUntilTracker((err) => { this.#stacks.mapError(err); options.logger.error({ fn: options.fnKey, err }, 'waitUntil promise rejected'); });
    installFastResponse();
    this.webSockets = new SocketBook(options.limits.maxWebSockets);
    this.#toFunction = deferredPost((m) => this.#hub.onMessage(m));
    const toHost = deferredPost((m) => this.#ends.get(m[1] as number)?.fromFunction(m));
    this.#hub = new SocketHub({
      post: toHost,
      maxMessageBytes: options.limits.webSocketMaxMessageBytes,
      // A listener's throw is logged: on the host's own thread it must never become an uncaught exception.
      reportError: (err, kind, requestId) => {
        this.#stacks.mapError(err);
        options.logger.error({ fn: options.fnKey, requestId, err, kind }, `uncaught error in a WebSocket listener of the function (${kind})`);
      },
    });
  }

  #load(): Promise<ModuleHandlers> {
    if (this.#loading === null) {
      const t0 = performance.now();
      // The import has a deadline (a top level that never settles must not hold a reload or
      // the start-up); the module itself cannot be stopped on the host's thread.
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`its module did not finish loading within ${this.#o.startTimeoutMs} ms (a top-level await that never settles?)`)), this.#o.startTimeoutMs);
      });
      // URLPattern and navigator where Node lacks them (isolate/platform-globals.ts): an inline
      // function shares the host's realm, so they are the host's globals too.
      // Service-worker syntax (handler/service-worker.ts): listeners the module registers at import.
      installServiceWorkerGlobals();
      watchModule(this.#o.moduleUrl);
      const imported = installPlatformGlobals().then(() => import(this.#o.moduleUrl) as Promise<Record<string, unknown>>);
      void imported.catch(() => undefined).finally(() => clearTimeout(timer));
      this.#loading = Promise.race([imported, deadline]).then((imp: Record<string, unknown>) => {
        const mod = withServiceWorker(this.#o.fnKey, this.#o.moduleUrl, imp, this.#o.requireFetch ?? true).mod;
        const h = resolveHandlers(this.#o.fnKey, mod, this.#o.handlerNames, this.#o.requireFetch ?? true);
        const scheduled = findScheduled(mod);
        this.#scheduled = scheduledEntry(scheduled === null ? null : async (controller, env, ctx) => {
          try {
            return await scheduled(controller, env, ctx);
          } catch (err) {
            this.#stacks.mapError(err);
            throw err;
          }
        });
        this.#handlers = h;
        this.#stats.coldStarts++;
        this.#o.logger.debug({ fn: this.#o.fnKey, coldStartMs: Math.round((performance.now() - t0) * 10) / 10 }, 'inline function loaded');
        return h;
      });
      this.#loading.catch((err: Error) => {
        this.#stacks.mapError(err);
        this.#lastError = String(err?.message ?? err);
        this.#loadFailedUntil = performance.now() + 1000;
        this.#loading = null;
        this.#o.logger.error({ fn: this.#o.fnKey, err }, 'function failed to start');
      });
    }
    return this.#loading;
  }

  /** The function reads the host's request body stream directly. */
  readonly streamsRequestBody = true;

  // hot path -- change with care
  invoke(req: InvokeRequest): WireResponse | Promise<WireResponse> {
    if (this.#closed) return Promise.resolve(errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
    if (this.#inflight >= this.#o.limits.concurrency + this.#o.limits.maxQueue) {
      return Promise.resolve(errorResponse('FEZZ_ERR_QUEUE_FULL', [this.#o.fnKey, this.#o.limits.maxQueue], RETRY_AFTER));
    }
    const handlers = this.#handlers;
    if (handlers === null) {
      if (performance.now() < this.#loadFailedUntil) return Promise.resolve(this.#startFailed());
      return this.#load().then(() => this.invoke(req), () => this.#startFailed());
    }
    this.#inflight++;
    const fast = new FastRequest(req.wire);
    req.slot = fast;
    const ctx: Context = {
      requestId: req.requestId,
      params: req.params ?? {},
      waitUntil: (p) => this.#waitUntil.add(p),
      passThroughOnException() {},
    };
    const handler = req.handler === null ? handlers.fetch : req.handler === SCHEDULED_HANDLER ? this.#scheduled : handlers.named.get(req.handler)!;
    if (handler === null) { this.#inflight--; return errorResponse('FEZZ_ERR_HANDLER_MISSING', [this.#o.fnKey, 'fetch', NO_FETCH_HINT]); }
    let out: Promise<WireResponse>;
    try {
      const result = handler(fast as unknown as Request, this.#env, ctx);
      if (result instanceof Promise) {
        out = result.then((r) => this.#read(r, fast, req));
      } else {
        const parts = this.#read(result, fast, req);
        // Synchronous handler and body: answered already, no timer needed.
        if (!(parts instanceof Promise)) { this.#inflight--; return parts; }
        out = parts;
      }
    } catch (err) {
      out = Promise.reject(err);
    }
    out = out.catch((err: unknown) => this.#failed(req, err));
    if (req.wire.upgrade !== undefined) {
      // A 101 that comes after the timeout answered 504: its socket ends at once.
      void out.then((r) => {
        if (r.webSocket !== undefined && (fast.signal.reason as { name?: string } | undefined)?.name === 'TimeoutError') r.webSocket.close(CLOSE_ABNORMAL, 'the upgrade timed out');
      });
    }
    return this.#withTimeout(out, fast).finally(() => { this.#inflight--; });
  }

  /** The client left: abort the handler's `request.signal` (it runs on this thread; it cannot be stopped). */
  cancel(req: InvokeRequest): void {
    if (req.slot instanceof FastRequest) abortRequest(req.slot, new DOMException('The client closed the connection', 'AbortError'));
  }

  #read(value: unknown, fast: FastRequest, req: InvokeRequest): WireResponse | Promise<WireResponse> {
    if (pairsMade()) {
      const upgrade = upgradeOf(value);
      if (upgrade !== null) return this.#accept(upgrade, req);
    }
    let parts: ResponseParts | Promise<ResponseParts>;
    let statusText: unknown;
    try {
      parts = readResponse(value);
      statusText = (value as { statusText?: unknown }).statusText;
    } catch {
      return errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, describe(value)]);
    }
    return parts instanceof Promise ? parts.then((p) => this.#wire(p, fast, statusText)) : this.#wire(parts, fast, statusText);
  }

  /**
   * The parts as the host writes them: the function's status text kept (if it gave one); a
   * streamed body becomes a BodyStream the host reads, and a client that leaves aborts
   * `request.signal` too. `Response.error()` is status 0: the host resets the connection.
   */
  #wire(parts: ResponseParts, fast: FastRequest, statusText: unknown): WireResponse {
    const rs = parts.stream;
    const out: WireResponse = rs === undefined ? parts as WireResponse : {
      status: parts.status,
      headers: parts.headers,
      body: null,
      stream: bodyStreamOf(rs, (reason) => {
        if (reason === 'client') abortRequest(fast, new DOMException('The client closed the connection', 'AbortError'));
      }),
    };
    if (typeof statusText === 'string' && statusText !== '') out.statusText = statusText;
    return out;
  }

  /** The function answered 101 with a WebSocket: to an upgrade request, its socket goes to the host; else a bad response. */
  #accept(upgrade: UpgradeParts, req: InvokeRequest): WireResponse {
    if (req.wire.upgrade === undefined) {
      return errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, 'a 101 response with a WebSocket to a request that is not a WebSocket upgrade']);
    }
    const id = ++this.#socketSeq;
    const end = new HostSocketEnd({
      id,
      maxMessageBytes: this.#o.limits.webSocketMaxMessageBytes,
      post: this.#toFunction,
      onDone: () => { this.#ends.delete(id); },
      onViolation: (_e, what) => { this.#o.logger.error({ fn: this.#o.fnKey, requestId: req.requestId }, `WebSocket closed with 1011: the function sent ${what}`); },
    });
    const problem = this.#hub.adopt(id, req.requestId, upgrade, () => { this.#ends.set(id, end); });
    if (problem !== null) return errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, problem]);
    return { status: 101, headers: upgrade.headers, body: null, webSocket: end };
  }

  #withTimeout(p: Promise<WireResponse>, fast: FastRequest): Promise<WireResponse> {
    const ms = this.#o.limits.timeoutMs;
    let timer: NodeJS.Timeout;
    const timeout = new Promise<WireResponse>((resolve) => {
      timer = setTimeout(() => {
        this.#stats.timeouts++;
        abortRequest(fast, new DOMException('The request timed out', 'TimeoutError'));
        resolve(errorResponse('FEZZ_ERR_HANDLER_TIMEOUT', [this.#o.fnKey, ms]));
      }, ms);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  #failed(req: InvokeRequest, err: unknown): WireResponse {
    const e = err as Error;
    this.#stacks.mapError(e);
    this.#o.logger.error({ fn: this.#o.fnKey, requestId: req.requestId, err: e }, 'handler failed');
    const shown = this.#o.dev ? `Function ${this.#o.fnKey} failed: ${e?.stack ?? String(err)}` : `Function ${this.#o.fnKey} failed`;
    return errorResponseWithMessage(500, 'FEZZ_ERR_HANDLER_THREW', shown);
  }

  #startFailed(): WireResponse {
    return errorResponse('FEZZ_ERR_INSTANCE_START_FAILED', [this.#o.fnKey, this.#o.dev ? this.#lastError : 'see the host log']);
  }

  warm(): Promise<void> { return Promise.resolve(); }

  ready(): Promise<string | null> {
    return this.#load().then(() => null, (err: Error) => String(err?.message ?? err));
  }

  stats(): RuntimeStats {
    return { instances: this.#handlers ? 1 : 0, inflight: this.#inflight, queued: 0, ...this.#stats, lastError: this.#lastError, webSockets: this.webSockets.stats() };
  }

  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    const deadline = performance.now() + graceMs;
    // Open WebSockets are in-flight work too: kept up to the grace, then closed with 1001.
    while ((this.#inflight > 0 || this.webSockets.open > 0) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (this.webSockets.open > 0) {
      this.#o.logger.info({ fn: this.#o.fnKey, webSockets: this.webSockets.open, graceMs }, 'closing the WebSockets still open on a stopping function version (1001)');
      this.webSockets.terminateAll(CLOSE_GOING_AWAY, 'function version retired', 'retired');
    }
    await Promise.race([this.#waitUntil.drain(), new Promise((r) => setTimeout(r, Math.max(0, deadline - performance.now())))]);
  }
}
