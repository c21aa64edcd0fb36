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
import { resolveHandlers, WaitUntilTracker, type Context, type Env, type ModuleHandlers } from '../handler/contract.js';
import { errorResponse, errorResponseWithMessage } from '../../wire/error-response.js';
import type { WireResponse } from '../../wire/types.js';
import { bodyStreamOf } from '../../wire/web-body.js';
import type { Limits } from '../../manifest/schema.js';
import type { FunctionRuntime, InvokeRequest, RuntimeStats } from '../types.js';

export interface InlineRuntimeOptions {
  fnKey: string;
  moduleUrl: string;
  env: Record<string, string>;
  handlerNames: string[];
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
  #loading: Promise<ModuleHandlers> | null = null;
  #loadFailedUntil = 0;
  #inflight = 0;
  #closed = false;
  #stats = { coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0 };
  #lastError: string | null = null;
  readonly #waitUntil: WaitUntilTracker;

  constructor(options: InlineRuntimeOptions) {
    this.#o = options;
    this.#env = Object.freeze({ ...options.env });
    this.#waitUntil = new WaitUntilTracker((err) => options.logger.error({ fn: options.fnKey, err }, 'waitUntil promise rejected'));
    installFastResponse();
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
      const imported = import(this.#o.moduleUrl) as Promise<Record<string, unknown>>;
      void imported.catch(() => undefined).finally(() => clearTimeout(timer));
      this.#loading = Promise.race([imported, deadline]).then((mod: Record<string, unknown>) => {
        const h = resolveHandlers(this.#o.fnKey, mod, this.#o.handlerNames, true);
        this.#handlers = h;
        this.#stats.coldStarts++;
        this.#o.logger.debug({ fn: this.#o.fnKey, coldStartMs: Math.round((performance.now() - t0) * 10) / 10 }, 'inline function loaded');
        return h;
      });
      this.#loading.catch((err: Error) => {
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
    const handler = req.handler === null ? handlers.fetch! : handlers.named.get(req.handler)!;
    let out: Promise<WireResponse>;
    try {
      const result = handler(fast as unknown as Request, this.#env, ctx);
      if (result instanceof Promise) {
        out = result.then((r) => this.#read(r, fast));
      } else {
        const parts = this.#read(result, fast);
        // Synchronous handler and body: answered already, no timer needed.
        if (!(parts instanceof Promise)) { this.#inflight--; return parts; }
        out = parts;
      }
    } catch (err) {
      out = Promise.reject(err);
    }
    out = out.catch((err: unknown) => this.#failed(req, err));
    return this.#withTimeout(out, fast).finally(() => { this.#inflight--; });
  }

  /** The client left: abort the handler's `request.signal` (it runs on this thread; it cannot be stopped). */
  cancel(req: InvokeRequest): void {
    if (req.slot instanceof FastRequest) abortRequest(req.slot, new DOMException('The client closed the connection', 'AbortError'));
  }

  #read(value: unknown, fast: FastRequest): WireResponse | Promise<WireResponse> {
    let parts: ResponseParts | Promise<ResponseParts>;
    try {
      parts = readResponse(value);
    } catch {
      return errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, describe(value)]);
    }
    return parts instanceof Promise ? parts.then((p) => this.#wire(p, fast)) : this.#wire(parts, fast);
  }

  /** A streamed body becomes a BodyStream the host reads; a client that leaves aborts `request.signal` too. */
  #wire(parts: ResponseParts, fast: FastRequest): WireResponse {
    const rs = parts.stream;
    if (rs === undefined) return parts as WireResponse;
    const stream = bodyStreamOf(rs, (reason) => {
      if (reason === 'client') abortRequest(fast, new DOMException('The client closed the connection', 'AbortError'));
    });
    return { status: parts.status, headers: parts.headers, body: null, stream };
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
    return { instances: this.#handlers ? 1 : 0, inflight: this.#inflight, queued: 0, ...this.#stats, lastError: this.#lastError };
  }

  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    const deadline = performance.now() + graceMs;
    while (this.#inflight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await Promise.race([this.#waitUntil.drain(), new Promise((r) => setTimeout(r, Math.max(0, deadline - performance.now())))]);
  }
}
