/**
 * The Runtime interface: what the registry needs from every way of running a function
 * (isolate, inline, process, native). A runtime owns the instances of one function version.
 */
import type { WireRequest, WireResponse } from '../wire/types.js';

/** One call of a function. */
export interface InvokeRequest {
  /** The host's request id (`x-request-id`, `ctx.requestId`). */
  requestId: string;
  wire: WireRequest;
  /** Named handler from the route, or `null` for the default `fetch`. */
  handler: string | null;
  /** Route parameters, or `null` for none. */
  params: Record<string, string> | null;
  /**
   * The runtime's own record of this call while it waits or runs (set by `invoke`, read by
   * `cancel`); `null` from the caller. Opaque to everyone but the runtime.
   */
  slot: unknown;
}

/** Counters and gauges of one function version's runtime. */
export interface RuntimeStats {
  /** Live instances (starting or warm). */
  instances: number;
  /** Requests running now. */
  inflight: number;
  /** Requests waiting for a free slot. */
  queued: number;
  coldStarts: number;
  evictions: number;
  /** Instances lost to a crash, exit, out-of-memory or an unresponsive event loop. */
  crashes: number;
  timeouts: number;
  /**
   * Errors nothing in the function handled (a throw in a timer, an unhandled rejection),
   * logged and counted while the instance kept serving. Runtimes that run JS only.
   */
  uncaughtErrors?: number;
  /** The last start or crash error, if any. */
  lastError: string | null;
}

export interface FunctionRuntime {
  /**
   * Run one request. Never rejects: every failure becomes an error response — 503 +
   * `Retry-After` (queue full / closing), 504 (timeout), 500 (throw, crash, OOM, bad
   * response, start failure), 502 (plugin process down). May answer synchronously (the
   * inline runtime does for synchronous handlers) to save the promise hops.
   */
  invoke(req: InvokeRequest): WireResponse | Promise<WireResponse>;
  /**
   * The client of `req` went away: drop it if it still waits in the queue (it never runs),
   * abort its `request.signal` if it runs, and free its slot at once. The pending `invoke`
   * promise resolves with 499 (FEZZ_ERR_CLIENT_GONE), which nobody writes. No-op once answered.
   */
  cancel?(req: InvokeRequest): void;
  /**
   * Whether it takes a streamed request body (`WireRequest.bodyStream`): large or chunked
   * uploads then reach the function as they arrive. Otherwise the host reads bodies whole
   * (within `limits.maxBodyBytes`) first.
   */
  readonly streamsRequestBody?: boolean;
  stats(): RuntimeStats;
  /** Start `instances.min` instances now (warm pool). Resolves when they are ready or failed. */
  warm(): Promise<void>;
  /**
   * Make sure one instance is up (start one if none, even with `instances.min` 0): a hot
   * reload switches traffic only to a version that started. Resolves `null` when ready, or
   * the reason it could not start.
   */
  ready(): Promise<string | null>;
  /**
   * Stop taking requests, let in-flight ones finish for up to `graceMs` ms, then stop every
   * instance. Queued requests get 503.
   */
  close(graceMs: number): Promise<void>;
}
