/**
 * The host's router: a thin layer over find-my-way (its radix tree does the matching, with
 * `:params` and `*` wildcards per method). fezz owns what find-my-way does not: 405 with
 * `Allow`, `/rpc/<id>[@<version>]/<rest>` addressing, reserved host paths and route-conflict
 * errors that name both functions.
 */
import FindMyWay from 'find-my-way';
import { fezzError } from '../errors.js';
import { HTTP_METHODS } from '../manifest/schema.js';

/** What a route points at: the function (opaque to the router) and the handler name. */
export interface RouteTarget<F> {
  fn: F;
  handler: string | null;
}

/** Result of {@link HostRouter.match}. `path` is what the function sees (rewritten for /rpc). */
export type RouteMatch<F> =
  | { kind: 'found'; fn: F; handler: string | null; params: Record<string, string> | null; path: string }
  | { kind: 'method-not-allowed'; allow: string[] }
  | { kind: 'function-not-found'; name: string }
  | { kind: 'not-found' }
  | { kind: 'health' };

const NOT_FOUND = { kind: 'not-found' } as const;
const HEALTH = { kind: 'health' } as const;

/** Paths the host keeps for itself (DESIGN.md "Addressing"). */
export function isReservedPath(p: string): boolean {
  return p === '/healthz' || p === '/rpc' || p.startsWith('/rpc/') || p === '/admin' || p.startsWith('/admin/');
}

type Store<F> = { target: RouteTarget<F>; owner: string };

/**
 * Routes of the latest version of every function, plus `/rpc` resolution through
 * `resolveRpc(id, version | null)`. Immutable once built: a reload builds a new router and
 * swaps it in.
 */
export class HostRouter<F> {
  readonly #fmw = FindMyWay({ ignoreTrailingSlash: true, caseSensitive: true, maxParamLength: 1000 });
  readonly #methods = new Set<string>();
  readonly #owners = new Map<string, string>();
  readonly #resolveRpc: (id: string, version: string | null) => F | undefined;
  #empty = true;

  constructor(resolveRpc: (id: string, version: string | null) => F | undefined) {
    this.#resolveRpc = resolveRpc;
  }

  /**
   * Mount `method path` for `owner` (an `id@version`).
   * @throws FezzError FEZZ_ERR_ROUTE_RESERVED, FEZZ_ERR_ROUTE_CONFLICT (naming both owners),
   *   FEZZ_ERR_ROUTE_INVALID (find-my-way rejected the path).
   */
  add(method: string, routePath: string, target: RouteTarget<F>, owner: string): void {
    if (isReservedPath(routePath) || isReservedPath(routePath.replace(/[:*].*$/, '').replace(/\/$/, '') || '/x')) {
      throw fezzError('FEZZ_ERR_ROUTE_RESERVED', [routePath, owner]);
    }
    const methods = method === '*' ? HTTP_METHODS : [method];
    for (const m of methods) {
      const norm = `${m} ${normalize(routePath)}`;
      const prev = this.#owners.get(norm);
      if (prev !== undefined) throw fezzError('FEZZ_ERR_ROUTE_CONFLICT', [m, routePath, owner, prev]);
    }
    for (const m of methods) {
      try {
        this.#fmw.on(m as FindMyWay.HTTPMethod, routePath, noop, { target, owner } satisfies Store<F>);
      } catch (err) {
        throw fezzError('FEZZ_ERR_ROUTE_INVALID', [m, routePath, owner, (err as Error).message], err);
      }
      this.#owners.set(`${m} ${normalize(routePath)}`, owner);
      this.#methods.add(m);
      this.#empty = false;
    }
  }

  /**
   * Would `add` accept these routes? Throws the same errors, adds nothing. Routes owned by
   * versions of `replacingId` are left out (a new version of a function replaces its routes).
   */
  check(routes: ReadonlyArray<{ method: string; path: string }>, owner: string, replacingId?: string): void {
    const probe = new HostRouter<F>(this.#resolveRpc);
    for (const [k, v] of this.#owners) if (replacingId === undefined || !v.startsWith(`${replacingId}@`)) probe.#owners.set(k, v);
    for (const r of routes) probe.add(r.method, r.path, { fn: undefined as F, handler: null }, owner);
  }

  // hot path -- change with care
  /**
   * Match `method` and `path` (no query string). Besides find-my-way's own matching:
   * - `HEAD` falls back to the `GET` route;
   * - a wildcard route `/x/*` also matches `/x/` (with `*` = `''`), as a Workers route does
   *   (find-my-way, ignoring the trailing slash, would look for `/x`);
   * - `OPTIONS` on a path whose routes have no OPTIONS handler goes to the default handler
   *   (`fetch`) of the function that owns the path, so the app's own CORS code answers the
   *   preflight (with several functions on the path: the one owning the first method mounted);
   * - any other method the path has no route for is a 405 listing the ones it has.
   */
  match(method: string, path: string): RouteMatch<F> {
    if (path.charCodeAt(1) === 114 /* r */ && (path.startsWith('/rpc/') || path === '/rpc')) return this.#matchRpc(path);
    if (path === '/healthz') return HEALTH;
    if (this.#empty) return NOT_FOUND;
    let found = this.#find(method, path);
    if (found === null && method === 'HEAD') found = this.#find('GET', path);
    if (found !== null) {
      const store = found.store as Store<F>;
      return { kind: 'found', fn: store.target.fn, handler: store.target.handler, params: paramsOf(found), path };
    }
    const allow: string[] = [];
    let owner: FindMyWay.FindResult<FindMyWay.HTTPVersion.V1> | null = null;
    for (const m of this.#methods) {
      if (m === method) continue;
      const other = this.#find(m, path);
      if (other === null) continue;
      allow.push(m);
      owner ??= other;
    }
    if (owner !== null && method === 'OPTIONS') {
      return { kind: 'found', fn: (owner.store as Store<F>).target.fn, handler: null, params: paramsOf(owner), path };
    }
    if (allow.includes('GET') && !allow.includes('HEAD')) allow.push('HEAD');
    return allow.length > 0 ? { kind: 'method-not-allowed', allow } : NOT_FOUND;
  }

  /**
   * find-my-way's `find`, and for a path ending in `/` that found nothing, the wildcard route
   * it is the base of (`/x/` for `/x/*`): looked up as `/x//`, taken only when `*` is empty.
   */
  #find(method: string, path: string): FindMyWay.FindResult<FindMyWay.HTTPVersion.V1> | null {
    const found = this.#fmw.find(method as FindMyWay.HTTPMethod, path);
    if (found !== null || path.charCodeAt(path.length - 1) !== 47 /* / */) return found;
    const base = this.#fmw.find(method as FindMyWay.HTTPMethod, path + '/');
    return base !== null && base.params['*'] === '' ? base : null;
  }

  #matchRpc(path: string): RouteMatch<F> {
    // /rpc/<id>[@<version>][/<rest>]
    const start = 5;
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const name = path.slice(start, end);
    if (name === '') return NOT_FOUND;
    const at = name.indexOf('@');
    const id = at === -1 ? name : name.slice(0, at);
    const version = at === -1 ? null : name.slice(at + 1);
    const fn = this.#resolveRpc(id, version === 'latest' ? null : version);
    if (fn === undefined) return { kind: 'function-not-found', name };
    return { kind: 'found', fn, handler: null, params: null, path: end === path.length ? '/' : path.slice(end) };
  }
}

function noop(): void {}

/** A copy of find-my-way's params (a null-prototype object it may reuse), or null for none. */
function paramsOf(found: FindMyWay.FindResult<FindMyWay.HTTPVersion.V1>): Record<string, string> | null {
  for (const _ in found.params) return { ...found.params } as Record<string, string>;
  return null;
}

/** `/todos/:id` and `/todos/:key` are the same route to find-my-way. */
function normalize(p: string): string {
  return p.replace(/:[^/]+/g, ':').replace(/\/+$/, '') || '/';
}
