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
 *
 * The admin socket (`options.socketPath`, `fezz serve --admin-socket`): the same routes on a
 * unix socket of mode 0600 as well. Then the admin token is accepted only on that socket
 * (on TCP it is 403 FEZZ_ERR_ADMIN_SOCKET_ONLY), so reaching the admin API takes the host
 * user's file permissions as well as the token; plugins' ABI tokens keep working on TCP.
 *
 * Request bodies: a route gets its whole body in `AdminRequest.body` (at most
 * `maxBodyBytes`, received within `requestTimeoutMs`), unless it is `raw`: then it reads
 * `AdminRequest.req` itself, unbuffered and without those limits (push-response-stream, a
 * response body of any length, is bounded by the stream limits of the function instead).
 * Node's own `requestTimeout` is off for that reason; `headersTimeout` still applies.
 */
import http from 'node:http';
import net from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import path from 'node:path';
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
  /** The whole request body (empty for GET, and for `raw` routes). */
  body: Buffer;
  /**
   * The raw request. A `raw` route reads its body from it (paused: nothing was read yet);
   * for other routes the body was read already.
   */
  req: http.IncomingMessage;
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
  /**
   * The handler reads the request body itself from `AdminRequest.req`, unbuffered: no
   * `maxBodyBytes`, no `requestTimeoutMs` (it must bound the upload itself). When it answers
   * (or throws) before the body's end, the listener discards the rest for at most
   * LINGER_MS, then closes the connection, so the caller can read the answer first.
   */
  raw?: boolean;
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
  /**
   * Most time to receive a request body of a route that is not `raw`, in ms, from the start
   * of the request: past it the answer is 408 FEZZ_ERR_REQUEST_TIMEOUT and the connection is
   * closed (what Node's `requestTimeout` did for every route). @default 300000
   */
  requestTimeoutMs?: number;
  /**
   * An absolute path: serve the routes on a unix socket there too (mode 0600, see
   * {@link AdminServer.listen}), and accept the admin token only there. @default none
   */
  socketPath?: string | null;
}

/** How long the check of an existing socket file waits for a connection, in ms. */
const SOCKET_PROBE_MS = 1000;
/** Default of AdminServerOptions.requestTimeoutMs (Node's default requestTimeout), in ms. */
const REQUEST_TIMEOUT_MS = 300_000;
/**
 * How long a `raw` route's unread upload is still read and discarded after the answer, in
 * ms, before the connection is closed: the caller gets to read the answer (closing a socket
 * with unread input sends a reset, which may destroy the answer in the caller's buffers).
 */
const LINGER_MS = 2000;
const EMPTY = Buffer.alloc(0);

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
  /** The admin socket's listener (its connections are handed to #server), or null. */
  readonly #unix: net.Server | null = null;
  /** Connections that came in on the admin socket: the only ones the admin token works on when there is one. */
  readonly #unixConnections = new WeakSet<net.Socket>();
  /** The socket file this server created (device and inode), so close() never removes another's. */
  #socketFile: { dev: number; ino: number } | null = null;

  constructor(options: AdminServerOptions) {
    this.#o = options;
    this.#tokenDigest = authDigest(`Bearer ${options.token}`);
    // requestTimeout 0: a raw route's upload (a streamed response) may last as long as the
    // function's streamMaxMs; other routes get requestTimeoutMs from #readBody.
    this.#server = http.createServer({ keepAliveTimeout: 30_000, headersTimeout: 20_000, requestTimeout: 0 }, (req, res) => { void this.#handle(req, res); });
    if (options.maxConnections !== undefined) this.#server.maxConnections = options.maxConnections;
    this.#server.on('error', (err) => { if (this.#server.listening) options.logger.error({ err }, 'admin listener error'); });
    if (options.socketPath != null) {
      const unix = net.createServer((socket) => {
        this.#unixConnections.add(socket);
        this.#server.emit('connection', socket);
      });
      if (options.maxConnections !== undefined) unix.maxConnections = options.maxConnections;
      unix.on('error', (err) => { if (unix.listening) options.logger.error({ err }, 'admin socket error'); });
      this.#unix = unix;
    }
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

  /**
   * Open the admin socket (when there is one), then the TCP listener.
   * The socket: its parent directory is created with mode 0700 when missing; an existing
   * socket file nobody answers on (left by a crash) is replaced; it is created under umask
   * 0177, so it is 0600 from the start, and chmod-ed 0600 again.
   * @returns the TCP listener's URL.
   * @throws FezzError FEZZ_ERR_ADMIN_SOCKET_IN_USE (a server answers on the socket path),
   *   FEZZ_ERR_ADMIN_SOCKET_UNUSABLE (the path is not a socket, or cannot be created);
   *   the listen error of the TCP listener (e.g. EADDRINUSE), after closing the socket.
   */
  async listen(): Promise<string> {
    if (this.#unix !== null) await this.#listenSocket(this.#unix, this.#o.socketPath!);
    try {
      return await new Promise<string>((resolve, reject) => {
        this.#server.once('error', reject);
        // exclusive: in a `--workers` host each process has its own admin listener (its plugins'
        // ABI is there), never one shared through the cluster primary.
        this.#server.listen({ port: this.#o.port, host: this.#o.host, exclusive: true }, () => {
          this.#server.off('error', reject);
          resolve(this.url);
        });
      });
    } catch (err) {
      await this.#closeSocket();
      throw err;
    }
  }

  /** The admin socket's path while it is open, else null. */
  get socketPath(): string | null {
    return this.#unix?.listening === true ? this.#o.socketPath! : null;
  }

  async #listenSocket(unix: net.Server, file: string): Promise<void> {
    await this.#clearSocketPath(file);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(err.code === 'EADDRINUSE'
          ? fezzError('FEZZ_ERR_ADMIN_SOCKET_IN_USE', [file], err)
          : fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `listen failed (${err.code ?? err.message})`], err));
      };
      unix.once('error', onError);
      // bind() runs inside listen(), synchronously (exclusive: no cluster primary in between):
      // under umask 0177 the socket is 0600 when it appears, with no moment another user
      // could connect. process.umask() is process-wide, so it is restored at once.
      let previous: number | undefined;
      try {
        previous = process.umask(0o177);
      } catch {
        // A worker thread cannot set the umask: the chmod below is all there is.
        this.#o.logger.warn({ socket: file }, 'cannot set the umask in a worker thread: the admin socket is 0600 only after a chmod');
      }
      try {
        unix.listen({ path: file, exclusive: true }, () => {
          unix.off('error', onError);
          resolve();
        });
      } finally {
        if (previous !== undefined) process.umask(previous);
      }
    });
    try {
      await chmod(file, 0o600);
      const st = await lstat(file);
      this.#socketFile = { dev: st.dev, ino: st.ino };
    } catch (err) {
      await this.#closeSocket();
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `chmod 0600 failed (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`], err);
    }
  }

  /**
   * Make `file` free for a new socket: create its directory (0700) when missing, remove a
   * stale socket nobody answers on. @throws FezzError as {@link listen}.
   */
  async #clearSocketPath(file: string): Promise<void> {
    const dir = path.dirname(file);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `cannot create its directory ${dir} (${(err as NodeJS.ErrnoException).code})`], err);
    }
    let st;
    try {
      st = await lstat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `cannot inspect the path (${(err as NodeJS.ErrnoException).code})`], err);
    }
    if (!st.isSocket()) {
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, 'the path exists and is not a socket; remove it or choose another --admin-socket']);
    }
    const answer = await probeSocket(file);
    if (answer === 'live') throw fezzError('FEZZ_ERR_ADMIN_SOCKET_IN_USE', [file]);
    if (answer === 'ENOENT') return; // removed meanwhile
    if (answer !== 'ECONNREFUSED') {
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `an existing socket there could not be checked (${answer}); remove it if no server uses it`]);
    }
    // Nobody listens: a socket left behind by a host that crashed.
    try {
      await unlink(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw fezzError('FEZZ_ERR_ADMIN_SOCKET_UNUSABLE', [file, `cannot remove the stale socket (${(err as NodeJS.ErrnoException).code})`], err);
      }
    }
    this.#o.logger.warn({ socket: file }, 'removed a stale admin socket (nobody was listening on it)');
  }

  /** Close the admin socket's listener and remove its file, if it is still the one this server made. */
  async #closeSocket(): Promise<void> {
    const unix = this.#unix;
    if (unix === null) return;
    // Its connections are #server's, closed by close(); net.Server.close waits for them.
    await new Promise<void>((resolve) => unix.close(() => resolve()));
    const made = this.#socketFile;
    this.#socketFile = null;
    if (made === null) return;
    // libuv unlinks the file on close already; this covers the rest, never another's socket.
    const file = this.#o.socketPath!;
    try {
      const st = await lstat(file);
      if (st.dev === made.dev && st.ino === made.ino) await unlink(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#o.logger.warn({ err, socket: file }, 'cannot remove the admin socket');
    }
  }

  /** e.g. `http://127.0.0.1:3001` */
  get url(): string {
    const a = this.#server.address() as AddressInfo | null;
    if (a === null) throw new Error('admin listener is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /** Close the listeners (the admin socket's file is removed) and cut every admin connection. */
  async close(): Promise<void> {
    const tcp = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const socket = this.#closeSocket();
    this.#server.closeAllConnections();
    await Promise.all([tcp, socket]);
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
    const raw = { route: false };
    try {
      const r = await this.#route(req, res, raw);
      if (r === null) return; // streamed by the handler
      out = r;
    } catch (err) {
      if (err instanceof FezzError) {
        out = errorResponseWithMessage(err.statusCode, err.code, err.message);
        if (err.statusCode === 401) out.headers.push('www-authenticate', 'Bearer');
        if ((err.statusCode === 413 || err.statusCode === 408) && !raw.route) out.headers.push('connection', 'close');
      } else {
        this.#o.logger.error({ err }, 'admin request failed');
        out = errorResponseWithMessage(500, 'FEZZ_ERR_ADMIN_INTERNAL', 'see the host log');
      }
    }
    if (res.headersSent || res.destroyed) return;
    const body = out.body ?? '';
    out.headers.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
    res.writeHead(out.status, out.headers);
    res.end(body);
    if (!req.complete) {
      if (raw.route) this.#linger(req);
      else this.#bound(req);
    }
  }

  /**
   * A request of a buffered route answered before its body ended (an error, or a GET with a
   * body, which Node discards): the body must still end within requestTimeoutMs, else the
   * connection is closed (what Node's requestTimeout did).
   */
  #bound(req: http.IncomingMessage): void {
    const timeoutMs = this.#o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (req.complete || req.socket.destroyed) return;
      this.#o.logger.warn({ url: req.url, requestTimeoutMs: timeoutMs }, 'admin request body not received in time: connection closed');
      req.socket.destroy();
    }, timeoutMs);
    timer.unref();
    const stop = (): void => clearTimeout(timer);
    req.once('end', stop);
    req.once('close', stop);
  }

  /**
   * A raw route answered before the end of its upload: read and discard the rest for at most
   * LINGER_MS (the caller reads the answer meanwhile), then close the connection.
   */
  #linger(req: http.IncomingMessage): void {
    req.removeAllListeners('readable');
    req.on('data', ignore);
    req.on('error', ignore);
    req.resume();
    const timer = setTimeout(() => {
      if (req.complete || req.socket.destroyed) return;
      this.#o.logger.warn({ url: req.url, lingerMs: LINGER_MS }, 'admin listener: an upload went on after its answer: connection closed');
      req.socket.destroy();
    }, LINGER_MS);
    timer.unref();
    const stop = (): void => clearTimeout(timer);
    req.once('end', stop);
    req.once('close', stop);
  }

  /** Find and run the route; `raw.route` is set when it is a raw one. */
  async #route(req: http.IncomingMessage, res: http.ServerResponse, raw: { route: boolean }): Promise<WireResponse | null> {
    const scope = this.#scope(req);
    if (scope === undefined) {
      req.resume();
      throw fezzError('FEZZ_ERR_ABI_UNAUTHORIZED');
    }
    // With an admin socket, the admin token works on it only: never on TCP (nor on a relayed
    // plugin connection), whatever the route.
    if (scope === null && this.#unix !== null && !this.#unixConnections.has(req.socket)) {
      req.resume();
      throw fezzError('FEZZ_ERR_ADMIN_SOCKET_ONLY', [this.#o.socketPath]);
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
      if (c.route.raw === true) {
        raw.route = true;
        return c.route.handle({ method, path: url.pathname, scope, search: url.searchParams, params, body: EMPTY, req, res });
      }
      const body = method === 'GET' || method === 'HEAD' ? EMPTY : await this.#readBody(req);
      return c.route.handle({ method, path: url.pathname, scope, search: url.searchParams, params, body, req, res });
    }
    req.resume();
    // A plugin token learns nothing about the rest of the listener: every other method and path is 403.
    if (scope !== null) throw fezzError('FEZZ_ERR_ABI_FORBIDDEN');
    if (pathMatched) throw fezzError('FEZZ_ERR_ADMIN_METHOD', [method, url.pathname]);
    throw fezzError('FEZZ_ERR_ADMIN_NOT_FOUND', [method, url.pathname]);
  }

  /**
   * The whole body, within maxBodyBytes (413) and requestTimeoutMs from the request's start
   * (408, logged). Both answers close the connection.
   */
  #readBody(req: http.IncomingMessage): Promise<Buffer> {
    const limit = this.#o.maxBodyBytes;
    const timeoutMs = this.#o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const timer = setTimeout(() => {
        this.#o.logger.warn({ url: req.url, bytes: size, requestTimeoutMs: timeoutMs }, 'admin request body not received in time: 408, connection closed');
        req.pause();
        reject(fezzError('FEZZ_ERR_REQUEST_TIMEOUT'));
      }, timeoutMs);
      timer.unref();
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > limit) { clearTimeout(timer); req.pause(); reject(fezzError('FEZZ_ERR_ABI_BODY_TOO_LARGE', [limit])); return; }
        chunks.push(c);
      });
      req.on('end', () => { clearTimeout(timer); resolve(Buffer.concat(chunks, size)); });
      // The client went away mid-body: its fault, not an internal error (and nobody reads the answer).
      const cut = (): void => { clearTimeout(timer); reject(fezzError('FEZZ_ERR_BAD_REQUEST', ['the request body was cut off'])); };
      req.on('error', cut);
      req.on('close', () => { if (!req.complete) cut(); });
    });
  }
}

function ignore(): void { /* discarded upload bytes, or a late error of a discarded upload */ }

/**
 * Whether a server answers on the unix socket `file`: `'live'` when a connection opens (or
 * none is refused within SOCKET_PROBE_MS), else the connect error's code (`ECONNREFUSED`: a
 * stale socket nobody listens on).
 */
function probeSocket(file: string): Promise<'live' | string> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: file });
    const done = (answer: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done('live'), SOCKET_PROBE_MS);
    socket.once('connect', () => done('live'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
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
