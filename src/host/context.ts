import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteMatch } from '../router/router.js';
import type { FunctionVersion, Registry } from '../registry/registry.js';
import type { BodyStream, WireResponse } from '../wire/types.js';
import type { InvokeRequest } from '../runtime/types.js';

/**
 * Everything about one request as it moves through the middleware chain. Every field is set
 * in the constructor so all contexts share one shape.
 */
export class RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** Upper-case method. */
  readonly method: string;
  /** Path without the query, e.g. `/todos/1`. */
  readonly path: string;
  /** `?x=1` or `''`. */
  readonly search: string;
  /** The host's id for this request; set by the requestId middleware (or at write time). */
  requestId = '';
  /** What the router found, resolved before the chain runs. */
  match: RouteMatch<FunctionVersion>;
  /** The registry snapshot `match` came from. */
  registry: Registry;
  /** Request body: `undefined` until read, `null` when there is none or it is streamed. */
  body: Uint8Array | null | undefined = undefined;
  /** A request body streamed to the function as it arrives (large or chunked uploads), or null. */
  bodyStream: (BodyStream & { readonly done: boolean }) | null = null;
  /**
   * A response the host decided on while the function ran (413 when a streamed body passed
   * its limit, 408 when it stalled): written instead of the function's.
   */
  override: WireResponse | null = null;
  /** The response to write; a middleware that sets it and skips `next()` short-circuits. */
  response: WireResponse | null = null;
  /** Extra response headers from middleware (flat), added to whatever response is written. */
  readonly extraHeaders: string[] = [];
  /** Close the connection after this response (e.g. after a 413 with an unread body). */
  closeConnection = false;
  /** The call handed to the function's runtime, while it is in flight (to cancel it if the client leaves). */
  invocation: InvokeRequest | null = null;
  /** performance.now() at arrival, in ms. */
  readonly startTime: number;

  constructor(req: IncomingMessage, res: ServerResponse, method: string, path: string, search: string, match: RouteMatch<FunctionVersion>, registry: Registry, startTime: number) {
    this.req = req;
    this.res = res;
    this.method = method;
    this.path = path;
    this.search = search;
    this.match = match;
    this.registry = registry;
    this.startTime = startTime;
  }
}

/** Continue down the chain. Resolves once everything after this middleware is done. */
export type Next = () => void | Promise<void>;

/**
 * A host-level middleware, Koa/Hono style: do work, `await next()`, do work after.
 * Set `c.response` without calling `next()` to answer early. Return a Promise only when
 * you need to; a synchronous middleware costs no allocation.
 */
export type Middleware = (c: RequestContext, next: Next) => void | Promise<void>;
