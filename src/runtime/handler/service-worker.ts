/**
 * Service-worker syntax, Cloudflare Workers' original format: a module that registers its
 * handlers at import instead of exporting them,
 *
 *     addEventListener('fetch', (event) => event.respondWith(handle(event.request)));
 *     addEventListener('scheduled', (event) => event.waitUntil(cleanUp(event.scheduledTime)));
 *
 * The JS runtimes (the isolate worker, both tiers, and the inline runtime) install a global
 * `addEventListener` before they import a function ({@link installServiceWorkerGlobals}, with
 * {@link watchModule}); after the import, {@link withServiceWorker} turns the listeners into
 * the module's `default.fetch` / `default.scheduled`, which the rest of the runtime calls like
 * any other handler. A module's own `export default { fetch }` (or `scheduled`) wins over
 * listeners. Listeners of other event types are accepted and never called.
 *
 * The `event` a fetch listener gets has `type`, `request`, `respondWith(response | promise)`
 * (once, synchronously, while the event is dispatched: else an `InvalidStateError`),
 * `waitUntil(promise)` (= `ctx.waitUntil`) and `passThroughOnException()`, which is accepted
 * and does nothing, as `ctx.passThroughOnException()` (fezz has no origin to fall back to: a
 * throw is a 500). A fetch event that no listener answered fails with 500 and says why.
 *
 * Listeners are kept per module URL: in the inline runtime every function shares the host's
 * realm, and a listener is attributed to the function whose bundle is on the caller's stack.
 */
import { fezzError } from '../../errors.js';
import { findScheduled, type ScheduledController, type ScheduledHandler } from '../types.js';
import type { Context, Env, Handler } from './contract.js';

/** A listener as the DOM takes it: a function, or an object with `handleEvent`. */
type Listener = ((event: unknown) => unknown) | { handleEvent(event: unknown): unknown };

interface Listeners { fetch: Listener[]; scheduled: Listener[] }

/** Listeners by the URL of the module (bundle) that registered them. */
const byModule = new Map<string, Listeners>();
let installed = false;

/** The two forms a JS function's fetch handler may take, as FEZZ_ERR_HANDLER_MISSING names them. */
export const HANDLER_FORMS = 'export default { fetch(request, env, ctx) { ... } }, or addEventListener("fetch", (event) => event.respondWith(...)) at the top level (service-worker syntax)';

/**
 * Define `globalThis.addEventListener` / `removeEventListener` in this realm (once; later calls
 * do nothing). An existing global `addEventListener` keeps every event type but `fetch` and
 * `scheduled`.
 */
export function installServiceWorkerGlobals(): void {
  if (installed) return;
  installed = true;
  const g = globalThis as Record<string, unknown>;
  const prevAdd = typeof g.addEventListener === 'function' ? g.addEventListener as (...a: unknown[]) => unknown : null;
  const prevRemove = typeof g.removeEventListener === 'function' ? g.removeEventListener as (...a: unknown[]) => unknown : null;
  const define = (name: string, fn: (...a: unknown[]) => unknown): void => {
    Object.defineProperty(globalThis, name, { value: fn, writable: true, configurable: true, enumerable: false });
  };
  define('addEventListener', function addEventListener(this: unknown, type: unknown, listener: unknown, ...rest: unknown[]): unknown {
    if (type !== 'fetch' && type !== 'scheduled') return prevAdd?.call(this, type, listener, ...rest);
    if (typeof listener !== 'function' && (listener === null || typeof listener !== 'object' || typeof (listener as { handleEvent?: unknown }).handleEvent !== 'function')) {
      if (listener === null || listener === undefined) return undefined; // as EventTarget: a null listener is ignored
      throw new TypeError(`addEventListener("${type}", listener): the listener must be a function or an object with handleEvent()`);
    }
    const owner = ownerOfCaller();
    if (owner === null) throw new TypeError(`addEventListener("${type}"): called from code that is not a function's module (fezz takes fetch and scheduled listeners from function modules only)`);
    const list = owner[type];
    if (!list.includes(listener as Listener)) list.push(listener as Listener);
    return undefined;
  });
  define('removeEventListener', function removeEventListener(this: unknown, type: unknown, listener: unknown, ...rest: unknown[]): unknown {
    if (type !== 'fetch' && type !== 'scheduled') return prevRemove?.call(this, type, listener, ...rest);
    for (const l of byModule.values()) {
      const i = l[type].indexOf(listener as Listener);
      if (i !== -1) l[type].splice(i, 1);
    }
    return undefined;
  });
}

/** Collect the listeners the module at `moduleUrl` registers (call before importing it; idempotent). */
export function watchModule(moduleUrl: string): void {
  if (!byModule.has(moduleUrl)) byModule.set(moduleUrl, { fetch: [], scheduled: [] });
}

/** The listeners of the module on the caller's stack: the only watched one in a worker, else found by URL. */
function ownerOfCaller(): Listeners | null {
  if (byModule.size === 1) return byModule.values().next().value!;
  const limit = Error.stackTraceLimit;
  let stack = '';
  try {
    Error.stackTraceLimit = 100;
    stack = String(new Error().stack);
  } catch { /* a realm whose Error was tampered with */ } finally {
    Error.stackTraceLimit = limit;
  }
  for (const [url, listeners] of byModule) if (stack.includes(url)) return listeners;
  return null;
}

/** Call one listener as EventTarget does: a function with the global as `this`, or `handleEvent`. */
function call(listener: Listener, event: unknown): void {
  if (typeof listener === 'function') listener.call(globalThis, event);
  else listener.handleEvent(event);
}

/** The `event` of a fetch listener (Workers' FetchEvent). */
class FetchEvent {
  readonly type = 'fetch';
  readonly request: Request;
  readonly #ctx: Context;
  /** Set by respondWith. */
  response: Response | Promise<Response> | undefined = undefined;
  /** respondWith is allowed (the listeners are running). */
  dispatching = true;
  constructor(request: Request, ctx: Context) {
    this.request = request;
    this.#ctx = ctx;
  }
  /** Answer the request with `r` (a Response or a promise of one). Once, during the dispatch. */
  respondWith(r: Response | PromiseLike<Response>): void {
    if (!this.dispatching) throw new DOMException('event.respondWith() must be called synchronously, while the fetch event is dispatched (not after an await)', 'InvalidStateError');
    if (this.response !== undefined) throw new DOMException('event.respondWith() was already called for this request', 'InvalidStateError');
    this.response = r instanceof Promise || r instanceof Response ? r : Promise.resolve(r);
  }
  /** Keep the instance working on `promise` after the response: `ctx.waitUntil`. */
  waitUntil(promise: unknown): void { this.#ctx.waitUntil(Promise.resolve(promise)); }
  /** Accepted for Workers compatibility, like `ctx.passThroughOnException()`: fezz has no origin to pass through to. */
  passThroughOnException(): void { this.#ctx.passThroughOnException(); }
}

/** A fetch handler that dispatches a FetchEvent to `listeners` (read live: one added later is called too). */
function fetchFromListeners(listeners: Listener[]): Handler {
  return (request: Request, _env: Env, ctx: Context): Response | Promise<Response> => {
    const event = new FetchEvent(request, ctx);
    try {
      for (let i = 0, n = listeners.length; i < n; i++) call(listeners[i]!, event);
    } finally {
      event.dispatching = false;
    }
    if (event.response === undefined) {
      throw new Error('no "fetch" listener called event.respondWith() (service-worker syntax: call it synchronously, in the listener, with a Response or a promise of one)');
    }
    return event.response;
  };
}

/** A `scheduled` handler that dispatches a ScheduledEvent to `listeners`; the run ends when every `waitUntil` promise settled (and fails if one rejected). */
function scheduledFromListeners(listeners: Listener[]): ScheduledHandler {
  return async (controller: ScheduledController) => {
    const waits: Promise<unknown>[] = [];
    const event = {
      type: 'scheduled' as const,
      cron: controller.cron,
      scheduledTime: controller.scheduledTime,
      waitUntil(promise: unknown): void { waits.push(Promise.resolve(promise)); },
      noRetry(): void {},
    };
    for (let i = 0, n = listeners.length; i < n; i++) call(listeners[i]!, event);
    await Promise.all(waits);
  };
}

/**
 * Make each of `env`'s keys a global of this realm, as service-worker syntax has its bindings
 * (`MY_VAR` rather than `env.MY_VAR`), skipping names the realm already has. Returns the
 * function that removes them again. For a worker realm only (one function per realm): the
 * inline runtime shares the host's globals.
 */
export function exposeEnvAsGlobals(env: Env): () => void {
  const added: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (k in globalThis) continue;
    Object.defineProperty(globalThis, k, { value: v, writable: true, configurable: true, enumerable: false });
    added.push(k);
  }
  return () => { for (const k of added) delete (globalThis as Record<string, unknown>)[k]; };
}

/** What {@link withServiceWorker} found. */
export interface ServiceWorkerModule {
  /** The namespace to resolve handlers from: the module's own, or a copy whose default export is made of its listeners. */
  mod: Record<string, unknown>;
  /** Whether a handler came from listeners (the module uses service-worker syntax). */
  serviceWorker: boolean;
}

/**
 * The module `mod` (imported from `moduleUrl`, watched before the import) with its fetch and
 * scheduled listeners, if it registered any, as `default.fetch` / `default.scheduled` where
 * the module exports none. Named exports and the default export's other members stay
 * reachable (the new default export inherits from the old one).
 * @throws FezzError FEZZ_ERR_HANDLER_MISSING when `requireFetch` and the module has neither a
 *   default fetch nor a fetch listener (the message names both forms).
 */
export function withServiceWorker(fnKey: string, moduleUrl: string, mod: Record<string, unknown>, requireFetch: boolean): ServiceWorkerModule {
  const def = mod.default as Record<string, unknown> | ((...a: unknown[]) => unknown) | null | undefined;
  const ownFetch = typeof def === 'function' || (def !== null && typeof def === 'object' && typeof def.fetch === 'function');
  const ownScheduled = findScheduled(mod) !== null;
  const listeners = byModule.get(moduleUrl);
  const useFetch = !ownFetch && listeners !== undefined && listeners.fetch.length > 0;
  const useScheduled = !ownScheduled && listeners !== undefined && listeners.scheduled.length > 0;
  if (!ownFetch && !useFetch && requireFetch) throw fezzError('FEZZ_ERR_HANDLER_MISSING', [fnKey, 'fetch', HANDLER_FORMS]);
  if (!useFetch && !useScheduled) return { mod, serviceWorker: false };
  const proto = def !== null && typeof def === 'object' ? def : null;
  const made = Object.create(proto) as Record<string, unknown>;
  if (useFetch) made.fetch = fetchFromListeners(listeners!.fetch);
  else if (typeof def === 'function') made.fetch = def;
  if (useScheduled) made.scheduled = scheduledFromListeners(listeners!.scheduled);
  else if (ownScheduled) made.scheduled = findScheduled(mod);
  return { mod: { ...mod, default: made }, serviceWorker: true };
}
