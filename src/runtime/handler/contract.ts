/**
 * The function contract (DESIGN.md "The function contract"): the default export's
 * `fetch(request, env, ctx)` — the shape of Cloudflare Workers, Deno and Bun — or a named
 * export a route picks with `"handler"`. Shared by the isolate worker and the inline runtime.
 */
import { fezzError } from '../../errors.js';

/** String values from the manifest's `env`. */
export type Env = Readonly<Record<string, string>>;

/** The third argument of every handler. */
export interface Context {
  /** The host's id for this request, also sent to the client as `x-request-id`. */
  readonly requestId: string;
  /** Route parameters, e.g. `{ id: "42" }` for `/todos/:id`; `{ "*": "a/b" }` for wildcards. */
  readonly params: Readonly<Record<string, string>>;
  /** Keep the instance alive until `promise` settles, after the response is sent. */
  waitUntil(promise: Promise<unknown>): void;
  /** Accepted for Workers compatibility; fezz has no origin to pass through to. */
  passThroughOnException(): void;
}

/**
 * What FEZZ_ERR_HANDLER_MISSING says a request needed when a scheduled-only module (a function
 * with cron triggers and no `fetch`) gets an HTTP request.
 */
export const NO_FETCH_HINT = 'export default { fetch(request, env, ctx) { ... } } (this module only has a scheduled handler: it runs on its cron triggers)';

export type Handler = (request: Request, env: Env, ctx: Context) => Response | Promise<Response>;

/** The handlers of one loaded module: the default `fetch` and the named ones routes use. */
export interface ModuleHandlers {
  fetch: Handler | null;
  named: Map<string, Handler>;
}

/**
 * Find the handlers of module namespace `mod`. The default handler is `default.fetch` (or a
 * default-exported function); a named handler `n` is the export `n`, else `default[n]`.
 * @throws FezzError FEZZ_ERR_HANDLER_MISSING when a handler in `names` (or, with
 *   `requireFetch`, the default fetch) is absent.
 */
export function resolveHandlers(fnKey: string, mod: Record<string, unknown>, names: readonly string[], requireFetch: boolean): ModuleHandlers {
  const def = mod.default as Record<string, unknown> | ((...a: unknown[]) => unknown) | undefined;
  let fetch: Handler | null = null;
  if (typeof def === 'function') fetch = def as Handler;
  else if (def !== null && typeof def === 'object' && typeof def.fetch === 'function') fetch = (def.fetch as Handler).bind(def);
  if (fetch === null && requireFetch) {
    throw fezzError('FEZZ_ERR_HANDLER_MISSING', [fnKey, 'fetch', 'export default { fetch(request, env, ctx) { ... } }']);
  }
  const named = new Map<string, Handler>();
  for (const name of names) {
    const direct = mod[name];
    if (typeof direct === 'function') { named.set(name, direct as Handler); continue; }
    if (def !== null && typeof def === 'object' && typeof def[name] === 'function') {
      named.set(name, (def[name] as Handler).bind(def));
      continue;
    }
    throw fezzError('FEZZ_ERR_HANDLER_MISSING', [fnKey, name, `export function ${name}(request, env, ctx) or a method ${name} on the default export`]);
  }
  return { fetch, named };
}

/** Tracks `ctx.waitUntil` promises so an instance drains them before it exits. */
export class WaitUntilTracker {
  #pending = new Set<Promise<unknown>>();
  #onError: (err: unknown) => void;
  constructor(onError: (err: unknown) => void) { this.#onError = onError; }
  add(promise: Promise<unknown>): void {
    const p = Promise.resolve(promise).catch(this.#onError).finally(() => { this.#pending.delete(p); });
    this.#pending.add(p);
  }
  get size(): number { return this.#pending.size; }
  /** Resolves when every tracked promise has settled (including ones added meanwhile). */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }
}
