/**
 * The Runtime interface: what the registry needs from every way of running a function
 * (isolate, inline, process, native). A runtime owns the instances of one function version.
 */
import type { WireRequest, WireResponse } from '../wire/types.js';
import type { Context, Env } from './handler/contract.js';
import type { SocketBook, WebSocketStats } from '../websocket/book.js';

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
  /** WebSockets of runtimes that carry them (isolate, inline): open now, buffered bytes, backpressure, closes by reason. */
  webSockets?: WebSocketStats;
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
  /**
   * Present when the runtime carries WebSockets (isolate, both tiers; inline): its open
   * sockets, capped at `limits.maxWebSockets` (src/websocket/). An upgrade request
   * (`WireRequest.upgrade`) may then be answered 101 with `WireResponse.webSocket`. Absent
   * (plugins): the host refuses upgrades with 501 FEZZ_ERR_WEBSOCKET_UNSUPPORTED. A runtime
   * with it counts open sockets as in-flight work in {@link close}.
   */
  readonly webSockets?: SocketBook;
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
   * instance. Queued requests get 503. Open WebSockets are in-flight work: they keep their
   * instances up to the same deadline, then close with 1001.
   */
  close(graceMs: number): Promise<void>;
}

// ---- Scheduled events (cron triggers, src/triggers/, docs/triggers.md) ----

/**
 * The {@link InvokeRequest.handler} of a scheduled event (a cron trigger's run, or `fezz
 * trigger`). It is not a JavaScript identifier, so no manifest route can name it (route
 * handlers must be identifiers): only the host's scheduler sends it. The JS runtimes
 * (isolate, inline; both tiers) call the module's `scheduled(controller, env, ctx)` for it;
 * plugins (process, native) see the request as it is: `POST /__fezz/scheduled` with the two
 * headers below (docs/abi.md "Scheduled events").
 */
export const SCHEDULED_HANDLER = '#scheduled';
/** The path of a scheduled event's request. */
export const SCHEDULED_PATH = '/__fezz/scheduled';
/** Header of a scheduled event's request: the cron expression that fired (`""` for a manual run of a function without crons). */
export const CRON_HEADER = 'fezz-cron';
/** Header of a scheduled event's request: when the run was due, epoch ms (decimal). */
export const SCHEDULED_TIME_HEADER = 'fezz-scheduled-time';
/** Error code of a JS scheduled event whose module has no `scheduled` export (the host answers 409 to a manual run). */
export const SCHEDULED_MISSING_CODE = 'FEZZ_ERR_SCHEDULED_MISSING';
/** Error code of a scheduled run whose handler threw or rejected. */
export const SCHEDULED_FAILED_CODE = 'FEZZ_ERR_SCHEDULED_FAILED';

/** The first argument of `scheduled(controller, env, ctx)`: Cloudflare Workers' ScheduledController. */
export interface ScheduledController {
  /** The cron expression that fired, as written in the manifest (`""` for a manual run of a function without crons). */
  readonly cron: string;
  /** When the run was due (the cron's tick, not when it started), epoch ms. */
  readonly scheduledTime: number;
  readonly type: 'scheduled';
  /** Accepted for Workers compatibility: fezz never retries a failed run, so this does nothing. */
  noRetry(): void;
}

/** A module's `scheduled` export. Its result (a promise, or anything) ends the run; a throw or rejection fails it. */
export type ScheduledHandler = (controller: ScheduledController, env: Env, ctx: Context) => unknown;

/**
 * The wire request of a scheduled event: `POST http://localhost/__fezz/scheduled`, no body,
 * headers `fezz-cron: <cron>` and `fezz-scheduled-time: <epoch ms>`.
 */
export function scheduledWire(cron: string, scheduledTime: number): WireRequest {
  return { method: 'POST', url: `http://localhost${SCHEDULED_PATH}`, headers: [CRON_HEADER, cron, SCHEDULED_TIME_HEADER, String(scheduledTime)], body: null };
}

/** The `scheduled` handler of module namespace `mod`: `default.scheduled` (bound to the default export), else a named export `scheduled`; null when neither is a function. */
export function findScheduled(mod: Record<string, unknown>): ScheduledHandler | null {
  const def = mod.default as Record<string, unknown> | null | undefined;
  if (def !== null && typeof def === 'object' && typeof def.scheduled === 'function') return (def.scheduled as ScheduledHandler).bind(def);
  return typeof mod.scheduled === 'function' ? mod.scheduled as ScheduledHandler : null;
}

/**
 * Adapt a module's `scheduled` handler (or null) to a fetch-shaped handler that the JS
 * runtimes dispatch {@link SCHEDULED_HANDLER} to. It reads the controller from the request's
 * headers and never rejects: 204 once the handler's result settled; 500 JSON `{ code:
 * FEZZ_ERR_SCHEDULED_FAILED, message, stack }` when it threw or rejected; 409 JSON `{ code:
 * FEZZ_ERR_SCHEDULED_MISSING }` when there is no handler. The host turns these into the run's
 * outcome (src/triggers/outcome.ts); nothing of them reaches an HTTP client.
 */
export function scheduledEntry(fn: ScheduledHandler | null): (request: Request, env: Env, ctx: Context) => Promise<Response> {
  return async (request, env, ctx) => {
    const json = (status: number, body: Record<string, unknown>): Response =>
      new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    if (fn === null) return json(409, { code: SCHEDULED_MISSING_CODE, message: 'the module has no scheduled export' });
    const controller: ScheduledController = Object.freeze({
      cron: request.headers.get(CRON_HEADER) ?? '',
      scheduledTime: Number(request.headers.get(SCHEDULED_TIME_HEADER) ?? Date.now()),
      type: 'scheduled' as const,
      noRetry() {},
    });
    try {
      await fn(controller, env, ctx);
      return new Response(null, { status: 204 });
    } catch (err) {
      let message = 'a value that cannot be shown';
      let stack = '';
      try {
        const e = err as { name?: unknown; message?: unknown; stack?: unknown } | null;
        message = e !== null && typeof e === 'object' ? `${String(e.name ?? 'Error')}: ${String(e.message ?? '')}` : String(err);
        if (e !== null && typeof e === 'object' && typeof e.stack === 'string') stack = e.stack;
      } catch { /* a thrown value whose name or message cannot be read (a throwing getter, a Symbol) */ }
      return json(500, { code: SCHEDULED_FAILED_CODE, message: message.slice(0, 4096), stack: stack.slice(0, 16_384) });
    }
  };
}
