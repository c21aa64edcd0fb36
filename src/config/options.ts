/**
 * Host options: {@link HostOptions} (what you pass, all optional) and
 * {@link ResolvedHostOptions} (validated, every default filled, frozen).
 * Flag and environment names are in DESIGN.md "Configuration names".
 */
import { randomBytes } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fezzError } from '../errors.js';
import { defaultConnectionCaps } from './fd-limit.js';
import { checkToken, loadOrCreateTokenFile } from './token.js';
import type { Middleware } from '../host/context.js';
import type { CorsOptions } from '../host/middleware.js';

export interface HostOptions {
  /** The functions directory. @default './functions' (env FEZZ_DIR) */
  dir?: string;
  /** Public listener port; 0 picks a free one. @default 3000 (env FEZZ_PORT) */
  port?: number;
  /** Public listener address. @default '127.0.0.1' (env FEZZ_LISTEN_HOST) */
  host?: string;
  /** Admin listener port (request-id ABI, admin API); 0 picks a free one. @default 3001 (env FEZZ_ADMIN_PORT) */
  adminPort?: number;
  /** Admin listener address. Keep it on loopback unless a firewall guards it. @default '127.0.0.1' (env FEZZ_ADMIN_LISTEN_HOST) */
  adminHost?: string;
  /**
   * A unix socket path for the admin API (mode 0600: only the host's user can connect; its
   * parent directory is created with 0700 when missing; a stale socket left by a crash is
   * replaced; the file is removed on close). With it, the admin token is accepted only on
   * this socket: the TCP admin listener keeps serving plugins' ABI tokens and answers the
   * admin token with 403 FEZZ_ERR_ADMIN_SOCKET_ONLY. At most 107 bytes once resolved.
   * @default none: the admin API is on the TCP listener only (flag --admin-socket, env FEZZ_ADMIN_SOCKET)
   */
  adminSocket?: string;
  /** Bearer token of the admin listener. @default the one in `tokenFile`, else a random 32-byte hex string per start (env FEZZ_TOKEN) */
  token?: string;
  /**
   * A file holding the admin token (mode 0600; created with a random token when missing).
   * Used when `token` is not given. The file keeps the token out of the command line and the
   * environment, where a function could read it. @default none (`fezz serve`: see config/token.ts)
   */
  tokenFile?: string;
  /** Dev mode: stacks in 500 bodies, debug logs, access log. @default false (env FEZZ_DEV) */
  dev?: boolean;
  /** Where bundles are cached. @default `<os tmpdir>/fezz-cache` */
  cacheDir?: string;
  /** Where JSON log lines go (anything with `write(string)`). @default stdout */
  logDestination?: { write(line: string): unknown };
  /** Watch the functions directory and hot-reload on changes. @default false (`fezz serve` turns it on) */
  watch?: boolean;
  /** Log level of the host's own logger. @default 'info' ('debug' in dev) */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Log one line per request. @default false (true in dev) */
  accessLog?: boolean;
  /** CORS headers and preflight answers; off unless given. @default false */
  cors?: false | CorsOptions;
  /** Your middleware, run after the built-in ones and before the function. @default [] */
  middleware?: Middleware[];
  /** Body limit in bytes for requests no function matched. @default 1048576 (1 MiB) */
  maxBodyBytes?: number;
  /** How long shutdown waits for in-flight requests, in ms. @default 10000 (10 s) */
  shutdownGraceMs?: number;
  /**
   * Phase 1 of shutdown, in ms: before the listener closes, keep serving while `/healthz`
   * answers 503 and every response carries `connection: close`, so a load balancer takes
   * the host out of rotation and moves its connections elsewhere. 0 skips it.
   * @default 0 for the library (`fezz serve`: 5000, flag --drain-delay, env FEZZ_DRAIN_DELAY)
   */
  drainDelayMs?: number;
  /**
   * Deadline for one instance (worker, inline module, plugin process) to load its function,
   * in ms, whether or not a request waits for it; past it the start counts as failed (its
   * requests get 500/502, the function backs off). Bounds reloads, deploys and start-up too.
   * @default 10000 (10 s) (flag --start-timeout)
   */
  startTimeoutMs?: number;
  /**
   * The weakest isolation allowed: `'sandbox'` runs every isolate function in a bubblewrap
   * sandbox whatever its manifest says (and refuses inline functions); `'thread'` lets each
   * manifest choose (`"isolation"`, default thread). Plugins (process, native) are not
   * sandboxed yet either way. @default 'thread' (flag --isolation, env FEZZ_ISOLATION)
   */
  isolation?: 'thread' | 'sandbox';
  /**
   * Most open public connections; past it the oldest idle connection is closed to make room
   * (or the new one, when all are busy), counted in `fezz_connections_dropped_total`. @default the fd limit minus a reserve for admin,
   * plugins, workers and files (config/fd-limit.ts) (flag --max-connections)
   */
  maxConnections?: number;
  /** Most open admin connections. @default half the fd reserve (config/fd-limit.ts) */
  adminMaxConnections?: number;
  /** Time a client has to send the request head, in ms; then 408 and close. @default 20000 (flag --headers-timeout) */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this, in ms. @default 5000 (flag --keep-alive-timeout) */
  keepAliveTimeoutMs?: number;
  /** A request body with no bytes for this long is dropped (408, close), in ms. @default 30000 (flag --body-timeout) */
  bodyTimeoutMs?: number;
  /** A client that reads none of its response for this long is cut off, in ms. @default 30000 (flag --send-timeout) */
  sendTimeoutMs?: number;
  /**
   * Which proxies in front of the host to believe about the client (like Express's
   * `trust proxy`, kept small). Every function request carries `cf-connecting-ip` and
   * `x-real-ip` set by the host (whatever the client sent under those names is dropped):
   * - `false` / `0` / `'false'` / `''`: trust nothing: the client is the socket's peer
   *   address, `x-forwarded-for` and `x-forwarded-proto` are not believed (the function still
   *   sees them as sent) and `request.url` is `http:`.
   * - a hop count `n` (number, or a string of digits): the `n` nearest hops are proxies. The
   *   client is the `n`-th address from the right of `[...x-forwarded-for, peer]`, i.e. with 1
   *   the last `x-forwarded-for` entry (the one the proxy added); past the leftmost entry, the
   *   leftmost. `x-forwarded-proto` (its first value, `http` or `https`) gives `request.url`'s scheme.
   * - a list of trusted proxy addresses (array, or one comma-separated string): IPs and CIDR
   *   ranges (`10.0.0.0/8`, `fd00::/8`), plus the names `loopback` (127.0.0.0/8, ::1) and
   *   `private` (10/8, 172.16/12, 192.168/16, fc00::/7). When the peer is in the list, the
   *   client is the right-most `x-forwarded-for` address not in it, and `x-forwarded-proto` is
   *   believed; otherwise the peer is the client.
   * An `x-forwarded-for` entry that is not an IP address ends the walk at the address after it.
   * @default false (flag --trust-proxy, env FEZZ_TRUST_PROXY)
   * @throws {FEZZ_ERR_CONFIG_INVALID} for anything else (a negative or fractional count, a bad address or prefix).
   * @example trustProxy: 1  // one nginx or load balancer in front
   * @example trustProxy: ['loopback', '10.0.0.0/8']
   */
  trustProxy?: false | number | string | readonly string[];
  /**
   * Fire cron triggers (`triggers.crons` in manifests, docs/triggers.md) in this process.
   * A `--workers N` host sets it in its first host process only, so each tick runs once per
   * machine. Manual runs (`fezz trigger`, the admin API) work either way.
   * @default true
   */
  schedule?: boolean;
  /**
   * The secrets store's directory (docs/secrets.md): one encrypted file per function id,
   * outside the functions directory (a path inside it is refused). With it, the admin API's
   * `/admin/secrets` routes work and each function gets its secrets in `env`. It needs a key:
   * `secretsKey` or `secretsKeyFile`.
   * @default none: no secrets (`fezz serve`: `$XDG_STATE_HOME/fezz/secrets` or
   *   `~/.fezz/secrets`, flag --secrets-dir, env FEZZ_SECRETS_DIR)
   * @throws {FEZZ_ERR_CONFIG_INVALID} for a path inside `dir`, or without a key.
   */
  secretsDir?: string;
  /**
   * A file holding the store's key, 32 bytes as 64 hex digits or base64 (mode 0600; created
   * with a random key when the first secret is stored and the file is missing). Used when
   * `secretsKey` is not given; must not be inside `dir`.
   * @default none (`fezz serve`: `$XDG_CONFIG_HOME/fezz/secrets.key` or `~/.fezz/secrets.key`,
   *   flag --secrets-key-file, env FEZZ_SECRETS_KEY_FILE)
   */
  secretsKeyFile?: string;
  /**
   * The store's key itself, 64 hex digits or base64 of 32 bytes (`fezz serve` takes it from
   * FEZZ_SECRETS_KEY and removes that from its environment). Not kept in
   * {@link ResolvedHostOptions}. @default none
   */
  secretsKey?: string;
}

/**
 * {@link HostOptions.trustProxy} resolved: `null` trusts nothing; otherwise exactly one of
 * `hops` (> 0) or `proxies` decides which hops are proxies.
 */
export interface TrustProxy {
  /** The nearest `hops` hops are proxies; 0 when `proxies` decides. */
  readonly hops: number;
  /** Addresses of trusted proxies (IPv4 addresses as such, never IPv4-mapped IPv6), or null when `hops` decides. */
  readonly proxies: BlockList | null;
  /** The setting as given, normalised, for logs: `"1"`, `"loopback,10.0.0.0/8"`. */
  readonly description: string;
}

export interface ResolvedHostOptions {
  readonly dir: string;
  readonly port: number;
  readonly host: string;
  readonly adminPort: number;
  readonly adminHost: string;
  /** The admin socket's absolute path, or null for none. */
  readonly adminSocket: string | null;
  readonly token: string;
  readonly dev: boolean;
  readonly cacheDir: string;
  readonly logDestination: { write(line: string): unknown } | null;
  readonly watch: boolean;
  readonly logLevel: NonNullable<HostOptions['logLevel']>;
  readonly accessLog: boolean;
  readonly cors: false | CorsOptions;
  readonly middleware: readonly Middleware[];
  readonly maxBodyBytes: number;
  readonly shutdownGraceMs: number;
  readonly drainDelayMs: number;
  readonly startTimeoutMs: number;
  readonly isolation: 'thread' | 'sandbox';
  readonly maxConnections: number;
  readonly adminMaxConnections: number;
  readonly headersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly sendTimeoutMs: number;
  /** Which proxies to believe about the client's address and scheme; null: none. */
  readonly trustProxy: TrustProxy | null;
  /** Whether cron triggers fire in this process. */
  readonly schedule: boolean;
  /** The secrets store's directory (absolute), or null: no secrets. */
  readonly secretsDir: string | null;
  /** The key file (absolute), or null when the key was given as `secretsKey` (never kept here) or there is no store. */
  readonly secretsKeyFile: string | null;
}

export const DEFAULTS = {
  dir: './functions',
  port: 3000,
  host: '127.0.0.1',
  adminPort: 3001,
  adminHost: '127.0.0.1',
  maxBodyBytes: 1024 * 1024, // 1 MiB
  shutdownGraceMs: 10_000, // 10 s
  drainDelayMs: 0, // the library's; `fezz serve` passes 5 s (DRAIN_DELAY_SERVE_MS)
  startTimeoutMs: 10_000, // 10 s, like Lambda's init phase
  headersTimeoutMs: 20_000, // 20 s (Node's default is 60 s)
  keepAliveTimeoutMs: 5_000,
  bodyTimeoutMs: 30_000, // between two chunks of a request body
  sendTimeoutMs: 30_000, // without progress writing a response
} as const;

/** `fezz serve`'s drain delay (phase 1 of shutdown), in ms: a few health checks' worth. */
export const DRAIN_DELAY_SERVE_MS = 5_000;

function int(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', [name, `an integer from ${min} to ${max}`, JSON.stringify(value)]);
  }
  return value;
}

function scheduleOption(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['schedule', 'a boolean', JSON.stringify(value)]);
  return value;
}

function isolationOption(value: unknown): 'thread' | 'sandbox' {
  if (value === undefined) return 'thread';
  if (value === 'thread' || value === 'sandbox') return value;
  throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['isolation', '"thread" or "sandbox"', JSON.stringify(value)]);
}

/** Longest unix socket path Linux takes (`sun_path` is 108 bytes with the NUL), in bytes. */
const MAX_SOCKET_PATH_BYTES = 107;

function adminSocketOption(value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || value === '') throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['adminSocket', 'a unix socket path', JSON.stringify(value)]);
  const resolved = path.resolve(value);
  if (Buffer.byteLength(resolved) > MAX_SOCKET_PATH_BYTES) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['adminSocket', `a socket path of at most ${MAX_SOCKET_PATH_BYTES} bytes once resolved`, `${resolved} (${Buffer.byteLength(resolved)} bytes)`]);
  }
  return resolved;
}

const TRUST_PROXY_NAMES: Record<string, ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6']>> = {
  loopback: [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']],
  private: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']],
};

/**
 * Parse a {@link HostOptions.trustProxy} setting (also what `FEZZ_TRUST_PROXY` holds, as a string).
 * @returns null when nothing is trusted.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID naming what is wrong.
 */
export function parseTrustProxy(value: unknown): TrustProxy | null {
  const bad = (why: string): never => {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['trustProxy', `false, a hop count (integer 0 to 100) or a list of proxy addresses (IP, CIDR, "loopback", "private")${why}`, JSON.stringify(value)]);
  };
  if (value === undefined || value === false || value === null || value === 0) return null;
  if (value === true) return bad(' (true would believe any client: give the hop count)');
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 100) bad('');
    return Object.freeze({ hops: value, proxies: null, description: String(value) });
  }
  let items: string[];
  if (typeof value === 'string') {
    const t = value.trim();
    if (t === '' || t === 'false' || t === '0') return null;
    if (/^\d+$/.test(t)) return parseTrustProxy(Number(t));
    items = t.split(',');
  } else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    items = value as string[];
  } else {
    return bad('');
  }
  const proxies = new BlockList();
  const names: string[] = [];
  for (const raw of items) {
    const item = raw.trim();
    if (item === '') continue;
    const named = TRUST_PROXY_NAMES[item];
    if (named !== undefined) {
      for (const [net, prefix, type] of named) proxies.addSubnet(net, prefix, type);
      names.push(item);
      continue;
    }
    const slash = item.indexOf('/');
    const addr = slash === -1 ? item : item.slice(0, slash);
    const family = isIP(addr);
    if (family === 0) bad(` ("${item}" is not an IP address or range)`);
    const max = family === 4 ? 32 : 128;
    const prefix = slash === -1 ? max : Number(item.slice(slash + 1));
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash !== -1 && !/^\d+$/.test(item.slice(slash + 1)))) bad(` ("${item}": the prefix must be 0 to ${max})`);
    proxies.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    names.push(slash === -1 ? addr : `${addr}/${prefix}`);
  }
  if (names.length === 0) return null;
  return Object.freeze({ hops: 0, proxies, description: names.join(',') });
}

/** Whether `p` is `root` or inside it (both absolute). */
function isWithin(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** The secrets options, checked: a store needs a key, and neither may sit in the functions directory. */
function secretsOptions(options: HostOptions, dir: string): { secretsDir: string | null; secretsKeyFile: string | null } {
  const { secretsDir, secretsKeyFile, secretsKey } = options;
  const path_ = (name: string, v: unknown): string => {
    if (typeof v !== 'string' || v === '') throw fezzError('FEZZ_ERR_CONFIG_INVALID', [name, 'a path', JSON.stringify(v)]);
    return path.resolve(v);
  };
  if (secretsKey !== undefined && (typeof secretsKey !== 'string' || secretsKey === '')) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsKey', 'a key as 64 hex digits or base64', typeof secretsKey === 'string' ? 'an empty string' : typeof secretsKey]);
  }
  if (secretsDir === undefined) return { secretsDir: null, secretsKeyFile: null };
  const sd = path_('secretsDir', secretsDir);
  if (isWithin(dir, sd)) throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsDir', 'a directory outside the functions directory (functions must never see the store)', sd]);
  if (secretsKey !== undefined) return { secretsDir: sd, secretsKeyFile: null };
  if (secretsKeyFile === undefined) throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsKeyFile', 'a key file (or secretsKey) with secretsDir', 'neither']);
  const kf = path_('secretsKeyFile', secretsKeyFile);
  if (isWithin(dir, kf)) throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsKeyFile', 'a file outside the functions directory', kf]);
  if (isWithin(sd, kf)) throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsKeyFile', 'a file outside the secrets directory (a copy of the store must not carry its key)', kf]);
  return { secretsDir: sd, secretsKeyFile: kf };
}

/**
 * Validate `options` and fill defaults.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID naming the option, what was expected and what was received.
 */
export function resolveOptions(options: HostOptions = {}): ResolvedHostOptions {
  const dev = options.dev ?? false;
  if (typeof dev !== 'boolean') throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['dev', 'a boolean', JSON.stringify(dev)]);
  const dir = options.dir ?? DEFAULTS.dir;
  if (typeof dir !== 'string' || dir === '') throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['dir', 'a directory path', JSON.stringify(dir)]);
  const middleware = options.middleware ?? [];
  if (!Array.isArray(middleware) || middleware.some((m) => typeof m !== 'function')) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['middleware', 'an array of functions (c, next) => ...', typeof middleware]);
  }
  const token = options.token ?? (options.tokenFile !== undefined ? loadOrCreateTokenFile(path.resolve(options.tokenFile)).token : randomBytes(32).toString('hex'));
  checkToken(token);
  const caps = defaultConnectionCaps();
  return Object.freeze({
    dir: path.resolve(dir),
    port: int('port', options.port ?? DEFAULTS.port, 0, 65535),
    host: options.host ?? DEFAULTS.host,
    adminPort: int('adminPort', options.adminPort ?? DEFAULTS.adminPort, 0, 65535),
    adminHost: options.adminHost ?? DEFAULTS.adminHost,
    adminSocket: adminSocketOption(options.adminSocket),
    token,
    dev,
    cacheDir: path.resolve(options.cacheDir ?? path.join(os.tmpdir(), 'fezz-cache')),
    logDestination: options.logDestination ?? null,
    watch: options.watch ?? false,
    logLevel: options.logLevel ?? (dev ? 'debug' : 'info'),
    accessLog: options.accessLog ?? dev,
    cors: options.cors ?? false,
    middleware: Object.freeze([...middleware]),
    maxBodyBytes: int('maxBodyBytes', options.maxBodyBytes ?? DEFAULTS.maxBodyBytes, 0, 2 ** 31),
    shutdownGraceMs: int('shutdownGraceMs', options.shutdownGraceMs ?? DEFAULTS.shutdownGraceMs, 0, 3_600_000),
    drainDelayMs: int('drainDelayMs', options.drainDelayMs ?? DEFAULTS.drainDelayMs, 0, 3_600_000),
    startTimeoutMs: int('startTimeoutMs', options.startTimeoutMs ?? DEFAULTS.startTimeoutMs, 100, 600_000),
    isolation: isolationOption(options.isolation),
    maxConnections: int('maxConnections', options.maxConnections ?? caps.publicMax, 1, 10_000_000),
    adminMaxConnections: int('adminMaxConnections', options.adminMaxConnections ?? caps.adminMax, 1, 1_000_000),
    headersTimeoutMs: int('headersTimeoutMs', options.headersTimeoutMs ?? DEFAULTS.headersTimeoutMs, 100, 3_600_000),
    keepAliveTimeoutMs: int('keepAliveTimeoutMs', options.keepAliveTimeoutMs ?? DEFAULTS.keepAliveTimeoutMs, 100, 3_600_000),
    bodyTimeoutMs: int('bodyTimeoutMs', options.bodyTimeoutMs ?? DEFAULTS.bodyTimeoutMs, 100, 3_600_000),
    sendTimeoutMs: int('sendTimeoutMs', options.sendTimeoutMs ?? DEFAULTS.sendTimeoutMs, 100, 3_600_000),
    trustProxy: parseTrustProxy(options.trustProxy),
    schedule: scheduleOption(options.schedule),
    ...secretsOptions(options, path.resolve(dir)),
  });
}
