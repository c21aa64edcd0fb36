/**
 * The admin listener: a second HTTP server, on loopback by default, behind bearer tokens.
 * It serves the request-id ABI (plugins call it), the admin API and /metrics.
 *
 * Two kinds of token (DESIGN.md "Security model"; docs/abi.md "Tokens"):
 * - the admin token (`options.token`): every route;
 * - a plugin's ABI token (issued by `pluginTokens`): only the routes marked `abi`, and the
 *   route handlers see the token's function in `AdminRequest.scope`. Any other route, and
 *   any unknown path or method, is 403 FEZZ_ERR_ABI_FORBIDDEN.
 * Anything else is 401 FEZZ_ERR_ABI_UNAUTHORIZED.
 */
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { errorResponseWithMessage } from '../wire/error-response.js';
import type { WireResponse } from '../wire/types.js';
import { AbiTokens, authDigest } from '../abi/tokens.js';

/** What an admin route handler gets. */
export interface AdminRequest {
  method: string;
  path: string;
  /**
   * Who is calling: null for the admin token; for a plugin's ABI token, the function key
   * (`id@version`) it is scoped to (only `abi` routes see a non-null scope).
   */
  scope: string | null;
  search: URLSearchParams;
  /** `:name` segments of the route path. */
  params: Record<string, string>;
  /** The whole request body (empty for GET). */
  body: Buffer;
  /** The raw response, for handlers that stream (they return `null`). */
  res: http.ServerResponse;
}

/**
 * One admin endpoint; `path` may have `:name` segments (`/admin/functions/:id/:version`).
 * Handlers throw FezzError for error answers, or write `res` themselves and return `null`.
 */
export interface AdminRoute {
  method: string;
  path: string;
  /**
   * An ABI endpoint: plugins' ABI tokens may call it too, and it must honour
   * `AdminRequest.scope`. Without it, only the admin token may (a plugin token gets 403).
   */
  abi?: boolean;
  handle(req: AdminRequest): WireResponse | null | Promise<WireResponse | null>;
}

interface CompiledRoute { route: AdminRoute; re: RegExp; names: string[] }

function compile(route: AdminRoute): CompiledRoute {
  const names: string[] = [];
  const re = new RegExp('^' + route.path.split('/').map((seg) => {
    if (seg.startsWith(':')) { names.push(seg.slice(1)); return '([^/]+)'; }
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('/') + '$');
  return { route, re, names };
}

export interface AdminServerOptions {
  host: string;
  port: number;
  /** The admin bearer token: every route. */
  token: string;
  logger: Logger;
  /** Largest request body, in bytes (pushes carry response bodies). */
  maxBodyBytes: number;
  /** Most open admin connections (past it a new one is closed at accept). @default unlimited */
  maxConnections?: number;
}

export class AdminServer {
  readonly #o: AdminServerOptions;
  readonly #routes: CompiledRoute[] = [];
  readonly #server: http.Server;
  readonly #tokenDigest: Buffer;
  /**
   * The plugins' ABI tokens this listener accepts besides the admin token: each reaches the
   * `abi` routes only, for its own function's requests. Plugin runtimes issue and revoke them.
   */
  readonly pluginTokens = new AbiTokens();

  constructor(options: AdminServerOptions) {
    this.#o = options;
    this.#tokenDigest = authDigest(`Bearer ${options.token}`);
    this.#server = http.createServer({ keepAliveTimeout: 30_000, headersTimeout: 20_000 }, (req, res) => { void this.#handle(req, res); });
    if (options.maxConnections !== undefined) this.#server.maxConnections = options.maxConnections;
    this.#server.on('error', (err) => { if (this.#server.listening) options.logger.error({ err }, 'admin listener error'); });
  }

  /** Add routes. @throws Error when a method+path is taken. */
  add(routes: AdminRoute[]): void {
    for (const r of routes) {
      if (this.#routes.some((x) => x.route.method === r.method && x.route.path === r.path)) throw new Error(`admin route ${r.method} ${r.path} is already defined`);
      this.#routes.push(compile(r));
    }
  }

  /**
   * Serve one already-connected socket as if it had arrived on the admin listener: how a
   * sandboxed plugin's ABI relay (a unix socket in its inbox) reaches the ABI routes. Requests
   * on it need a token like any other.
   */
  acceptConnection(socket: import('node:net').Socket): void {
    this.#server.emit('connection', socket);
  }

  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#o.port, this.#o.host, () => {
        this.#server.off('error', reject);
        resolve(this.url);
      });
    });
  }

  /** e.g. `http://127.0.0.1:3001` */
  get url(): string {
    const a = this.#server.address() as AddressInfo | null;
    if (a === null) throw new Error('admin listener is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  /**
   * The caller's scope: null for the admin token, the function key for a plugin's ABI
   * token, undefined for neither (401).
   */
  #scope(req: http.IncomingMessage): string | null | undefined {
    const h = req.headers.authorization;
    if (typeof h !== 'string') return undefined;
    // Compare digests: constant time, and no length leak.
    const d = authDigest(h);
    if (timingSafeEqual(d, this.#tokenDigest)) return null;
    return this.pluginTokens.scopeOf(d);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let out: WireResponse;
    try {
      const r = await this.#route(req, res);
      if (r === null) return; // streamed by the handler
      out = r;
    } catch (err) {
      if (err instanceof FezzError) {
        out = errorResponseWithMessage(err.statusCode, err.code, err.message);
        if (err.statusCode === 401) out.headers.push('www-authenticate', 'Bearer');
        if (err.statusCode === 413) out.headers.push('connection', 'close');
      } else {
        this.#o.logger.error({ err }, 'admin request failed');
        out = errorResponseWithMessage(500, 'FEZZ_ERR_ADMIN_INTERNAL', 'see the host log');
      }
    }
    const body = out.body ?? '';
    out.headers.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
    res.writeHead(out.status, out.headers);
    res.end(body);
  }

  async #route(req: http.IncomingMessage, res: http.ServerResponse): Promise<WireResponse | null> {
    const scope = this.#scope(req);
    if (scope === undefined) {
      req.resume();
      throw fezzError('FEZZ_ERR_ABI_UNAUTHORIZED');
    }
    const url = parseTarget(req);
    const method = req.method ?? 'GET';
    let pathMatched = false;
    for (const c of this.#routes) {
      if (scope !== null && c.route.abi !== true) continue; // not for a plugin token
      const m = c.re.exec(url.pathname);
      if (m === null) continue;
      pathMatched = true;
      if (c.route.method !== method) continue;
      const params: Record<string, string> = {};
      c.names.forEach((n, i) => { params[n] = decodeSegment(req, m[i + 1]!); });
      const body = method === 'GET' || method === 'HEAD' ? Buffer.alloc(0) : await this.#readBody(req);
      return c.route.handle({ method, path: url.pathname, scope, search: url.searchParams, params, body, res });
    }
    req.resume();
    // A plugin token learns nothing about the rest of the listener: every other method and path is 403.
    if (scope !== null) throw fezzError('FEZZ_ERR_ABI_FORBIDDEN');
    if (pathMatched) throw fezzError('FEZZ_ERR_ADMIN_METHOD', [method, url.pathname]);
    throw fezzError('FEZZ_ERR_ADMIN_NOT_FOUND', [method, url.pathname]);
  }

  #readBody(req: http.IncomingMessage): Promise<Buffer> {
    const limit = this.#o.maxBodyBytes;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > limit) { req.pause(); reject(fezzError('FEZZ_ERR_ABI_BODY_TOO_LARGE', [limit])); return; }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks, size)));
      // The client went away mid-body: its fault, not an internal error (and nobody reads the answer).
      const cut = (): void => reject(fezzError('FEZZ_ERR_BAD_REQUEST', ['the request body was cut off']));
      req.on('error', cut);
      req.on('close', () => { if (!req.complete) cut(); });
    });
  }
}

/**
 * The request target as a URL (origin form `/a?b`, or absolute form `http://h/a?b`).
 * @throws FezzError FEZZ_ERR_BAD_REQUEST (400) when it does not parse.
 */
function parseTarget(req: http.IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://admin');
  } catch {
    req.resume();
    throw fezzError('FEZZ_ERR_BAD_REQUEST', [`request target ${JSON.stringify(req.url)} is not a valid URL`]);
  }
}

/**
 * Percent-decode one path segment (`%40` -> `@`).
 * @throws FezzError FEZZ_ERR_BAD_REQUEST (400) for bad encoding, e.g. `%ZZ` or `%E0%A4%A`.
 */
function decodeSegment(req: http.IncomingMessage, segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    req.resume();
    throw fezzError('FEZZ_ERR_BAD_REQUEST', [`path segment ${JSON.stringify(segment)} is not valid percent-encoding (UTF-8)`]);
  }
}
