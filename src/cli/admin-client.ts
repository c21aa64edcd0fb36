/**
 * A small typed client for the admin API (docs/admin-api.md), used by `fezz deploy`,
 * `fezz list` and `fezz logs`. It uses the global `fetch`, or undici's over a unix socket
 * with `--admin-socket` / FEZZ_ADMIN_SOCKET (`fezz serve --admin-socket`); every failure becomes a
 * {@link CliError} whose `code` and `message` the `fezz` entry point prints as one line,
 * `fezz: <code>: <message>`, before exiting 1.
 */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { defaultTokenFile, readTokenFile } from '../config/token.js';
import type { DeployPackage } from '../build/deploy-bundle.js';

export type { DeployPackage };

/** Where `fezz serve` puts its admin listener unless told otherwise. */
export const DEFAULT_HOST_URL = 'http://127.0.0.1:3001';

/** An error meant for the terminal: one line, no stack. `code` is a FEZZ_ERR_* code when the host sent one. */
export class CliError extends Error {
  readonly code: string | undefined;
  readonly statusCode: number | undefined;
  constructor(message: string, code?: string, statusCode?: number) {
    super(message);
    this.name = 'CliError';
    this.code = code;
    this.statusCode = statusCode;
  }
}

// ---- the wire types of the admin API ----

// The host's own types: the admin API sends exactly these (type-only imports, nothing loads).
export type { FunctionInfo } from '../host/host.js';
export type { LoadProblem as Problem } from '../registry/registry.js';
import type { FunctionInfo } from '../host/host.js';
import type { LoadProblem as Problem } from '../registry/registry.js';

export interface FunctionsList {
  functions: FunctionInfo[];
  problems: Problem[];
}

export interface DeployResult {
  key: string;
  status: string;
  /** Set when the host already served exactly this content (nothing restarted). */
  unchanged?: boolean;
}

export interface DeleteResult {
  key: string;
  status: string;
}

/** `GET /admin/functions/<id>`: every loaded version of one function. */
export interface FunctionVersions {
  id: string;
  versions: FunctionInfo[];
}

/** One secret as `GET /admin/secrets/<id>` lists it: never its value. */
export interface SecretEntry {
  name: string;
  /** ISO 8601. */
  updatedAt: string;
}

/** The answer to `PUT` / `DELETE /admin/secrets/<id>/<name>`. */
export interface SecretChangeResult {
  id: string;
  name: string;
  /** Versions that restarted with the new environment. */
  reloaded: string[];
  /** Versions of the function not served after the change, and why. */
  problems: Problem[];
  /** PUT only. */
  updatedAt?: string;
  /** PUT only: true when the name is new. */
  created?: boolean;
}

/** `POST /admin/functions/<id>/scheduled`: one scheduled run (src/triggers/scheduler.ts ScheduledRun). */
export type { ScheduledRun } from '../triggers/scheduler.js';
import type { ScheduledRun } from '../triggers/scheduler.js';

export interface ReloadResult {
  functions: string[];
  problems: Problem[];
}

/** One line of `GET /admin/logs`. Fields beyond these are passed through. */
export interface LogLine {
  /** Epoch milliseconds. */
  time: number;
  /** `"info"`, `"warn"`, ... (a pino number is accepted too). */
  level: string | number;
  fn?: string;
  requestId?: string;
  msg?: string;
  [field: string]: unknown;
}

export interface LogsQuery {
  /** Function id (every version) or `id@version`. */
  fn: string;
  /** Keep the stream open for new lines. */
  follow: boolean;
  /** How many recent lines to send first. */
  since?: number;
  /** Aborting ends the stream quietly. */
  signal?: AbortSignal;
}

// ---- resolving where the admin listener is ----

export interface ConnectionOptions {
  hostUrl?: string;
  /**
   * The unix socket of `fezz serve --admin-socket`: when set (here or in FEZZ_ADMIN_SOCKET),
   * requests go over it and `hostUrl` is not used.
   */
  adminSocket?: string;
  token?: string;
  /** A file holding the token (mode 0600), read when `token` and FEZZ_TOKEN are absent. */
  tokenFile?: string;
}

/**
 * Normalise an admin URL: `127.0.0.1:3001` gets `http://`, a trailing slash goes.
 * @throws CliError for anything that is not an http(s) URL.
 */
export function normaliseHostUrl(value: string): string {
  const text = value.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new CliError(`invalid admin URL ${JSON.stringify(value)}: expected e.g. ${DEFAULT_HOST_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CliError(`invalid admin URL ${JSON.stringify(value)}: expected http:// or https://`);
  }
  return url.href.replace(/\/+$/, '');
}

/** The `--host-url`, `--admin-socket` and `--token` options every admin command takes (flag > env > default). */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--host-url <url>', 'URL of the admin listener of a running `fezz serve`').env('FEZZ_HOST').default(DEFAULT_HOST_URL))
    .addOption(new Option('--admin-socket <path>', 'the unix socket of `fezz serve --admin-socket` (used instead of --host-url)').env('FEZZ_ADMIN_SOCKET'))
    .addOption(new Option('--token <token>', 'admin bearer token (default: the one in --token-file)').env('FEZZ_TOKEN'))
    .addOption(new Option('--token-file <path>', 'file with the admin token (default: where `fezz serve` keeps it, $XDG_RUNTIME_DIR/fezz/admin-token or ~/.fezz/admin-token)').env('FEZZ_TOKEN_FILE'));
}

// ---- the client ----

export class AdminClient {
  /** e.g. `http://127.0.0.1:3001`, no trailing slash. Over a socket, only its `Host` header. */
  readonly baseUrl: string;
  /** The unix socket requests go over (an absolute path), or null for TCP to `baseUrl`. */
  readonly socketPath: string | null;
  readonly #token: string;
  /** Over a socket: undici's fetch with an Agent that dials the socket (loaded on first use). */
  #socketFetch: Promise<typeof fetch> | null = null;

  /**
   * @param baseUrl the admin listener's URL (over a socket, only the `Host` header comes from it).
   * @param socketPath a unix socket to send every request over instead of connecting to `baseUrl`.
   * @throws CliError for a `baseUrl` that is not an http(s) URL.
   */
  constructor(baseUrl: string, token: string, socketPath?: string | null) {
    this.baseUrl = normaliseHostUrl(baseUrl);
    this.socketPath = socketPath != null && socketPath !== '' ? path.resolve(socketPath) : null;
    this.#token = token;
  }

  /** Where the requests go, for messages: `unix:/run/fezz/admin.sock` or the base URL. */
  get where(): string {
    return this.socketPath !== null ? `unix:${this.socketPath}` : this.baseUrl;
  }

  /**
   * A client from command options, then the environment, then the default URL.
   * @throws CliError when there is no token.
   */
  static from(options: ConnectionOptions = {}, env: NodeJS.ProcessEnv = process.env): AdminClient {
    const hostUrl = options.hostUrl ?? env.FEZZ_HOST ?? DEFAULT_HOST_URL;
    const adminSocket = options.adminSocket ?? env.FEZZ_ADMIN_SOCKET;
    let token = options.token ?? env.FEZZ_TOKEN;
    if (token === undefined || token === '') {
      const file = options.tokenFile !== undefined ? path.resolve(options.tokenFile) : defaultTokenFile(env);
      try {
        token = readTokenFile(file) ?? undefined;
      } catch (err) {
        throw new CliError(`cannot use the admin token file: ${(err as Error).message}`);
      }
      if (token === undefined) {
        throw new CliError(`no admin token: pass --token-file, set FEZZ_TOKEN_FILE or FEZZ_TOKEN (no token file at ${file}; \`fezz serve\` creates it)`);
      }
    }
    // Over the socket the URL only names the Host header: a fixed one, whatever FEZZ_HOST says.
    return adminSocket !== undefined && adminSocket !== '' ? new AdminClient('http://localhost', token, adminSocket) : new AdminClient(hostUrl, token);
  }

  /** `GET /admin/functions` */
  listFunctions(): Promise<FunctionsList> {
    return this.#json<FunctionsList>('GET', '/admin/functions');
  }

  /**
   * `POST /admin/deploy` (`?replace=1` with `opts.replace`): resolves once the new version
   * serves. A version already there with other content is refused (409
   * FEZZ_ERR_VERSION_EXISTS) unless `replace`; the same content is `unchanged: true`.
   */
  deploy(pkg: DeployPackage, opts: { replace?: boolean } = {}): Promise<DeployResult> {
    return this.#json<DeployResult>('POST', opts.replace === true ? '/admin/deploy?replace=1' : '/admin/deploy', pkg);
  }

  /** `DELETE /admin/functions/<id>/<version>` */
  deleteFunction(id: string, version: string): Promise<DeleteResult> {
    return this.#json<DeleteResult>('DELETE', `/admin/functions/${encodeURIComponent(id)}/${encodeURIComponent(version)}`);
  }

  /** `GET /admin/functions/<id>`: 404 FEZZ_ERR_FUNCTION_NOT_FOUND (a CliError) when no version of it is loaded. */
  getFunction(id: string): Promise<FunctionVersions> {
    return this.#json<FunctionVersions>('GET', `/admin/functions/${encodeURIComponent(id)}`);
  }

  /** `GET /admin/secrets/<id>`: names and update times. */
  async listSecrets(id: string): Promise<SecretEntry[]> {
    return (await this.#json<{ secrets: SecretEntry[] }>('GET', `/admin/secrets/${encodeURIComponent(id)}`)).secrets;
  }

  /** `PUT /admin/secrets/<id>/<name>` with the value as the raw body (never in the URL). */
  putSecret(id: string, name: string, value: Uint8Array): Promise<SecretChangeResult> {
    return this.#json<SecretChangeResult>('PUT', `/admin/secrets/${encodeURIComponent(id)}/${encodeURIComponent(name)}`, value);
  }

  /** `DELETE /admin/secrets/<id>/<name>` */
  deleteSecret(id: string, name: string): Promise<SecretChangeResult> {
    return this.#json<SecretChangeResult>('DELETE', `/admin/secrets/${encodeURIComponent(id)}/${encodeURIComponent(name)}`);
  }

  /**
   * `POST /admin/functions/<id>/scheduled[?cron=...]` (`fezz trigger`): run the function's
   * scheduled handler now and resolve with the run once it went well. A run that failed is a
   * CliError with the host's code and message: 409 FEZZ_ERR_SCHEDULED_MISSING (no scheduled
   * handler), 500 FEZZ_ERR_SCHEDULED_FAILED (it threw) or the runtime's code, 504 (timed
   * out), 404 FEZZ_ERR_FUNCTION_NOT_FOUND, 400 FEZZ_ERR_BAD_REQUEST (a bad cron).
   * @param id the function id (its latest version) or `id@version`.
   * @param cron what `controller.cron` says; default the manifest's first cron.
   */
  trigger(id: string, cron?: string): Promise<ScheduledRun> {
    const query = cron !== undefined && cron !== '' ? `?${new URLSearchParams({ cron })}` : '';
    return this.#json<ScheduledRun>('POST', `/admin/functions/${encodeURIComponent(id)}/scheduled${query}`);
  }

  /** `POST /admin/reload` */
  reload(): Promise<ReloadResult> {
    return this.#json<ReloadResult>('POST', '/admin/reload');
  }

  /**
   * `GET /admin/logs`: yields each NDJSON line as it arrives. Ends when the host closes the
   * stream, or quietly when `query.signal` aborts.
   */
  async *logs(query: LogsQuery): AsyncGenerator<LogLine> {
    const search = new URLSearchParams({ fn: query.fn });
    if (query.follow) search.set('follow', '1');
    if (query.since !== undefined) search.set('since', String(query.since));
    const res = await this.#request('GET', `/admin/logs?${search}`, undefined, query.signal);
    if (res.body === null) return;
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = res.body.getReader();
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (query.signal?.aborted) return;
          throw new CliError(`lost the connection to the admin listener at ${this.where} (${describeCause(err)})`);
        }
        if (chunk.done) break;
        buffered += decoder.decode(chunk.value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) yield parseLogLine(line);
        }
      }
      buffered += decoder.decode();
      if (buffered.trim()) yield parseLogLine(buffered.trim());
    } finally {
      reader.releaseLock();
      if (query.signal?.aborted !== true) await res.body.cancel().catch(() => {});
    }
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.#request(method, path, body);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`the admin listener at ${this.where} sent a non-JSON answer to ${method} ${path}: ${snippet(text)}`);
    }
  }

  /** Send one request; answers other than 2xx become CliErrors carrying the host's code and message. */
  async #request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}`, accept: 'application/json' };
    let payload: string | Uint8Array | undefined;
    if (body instanceof Uint8Array) {
      // Sent as is (a secret's value): bytes, not JSON.
      payload = body;
      headers['content-type'] = 'application/octet-stream';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      const send = this.socketPath !== null ? await this.#overSocket(this.socketPath) : fetch;
      res = await send(this.baseUrl + path, { method, headers, body: payload, signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      const code = causeCode(err);
      if (this.socketPath !== null) {
        const why = code === 'ENOENT' ? ': no such socket' : code === 'EACCES' ? ': permission denied (the socket is mode 0600: run as the user of fezz serve)' : code === undefined || code === 'ECONNREFUSED' ? '' : ` [${code}]`;
        throw new CliError(`cannot reach the admin socket ${this.socketPath}${why} (is fezz serve --admin-socket running? set --admin-socket/FEZZ_ADMIN_SOCKET)`);
      }
      const extra = code === undefined || code === 'ECONNREFUSED' ? '' : ` [${code}]`;
      throw new CliError(`cannot reach the admin listener at ${this.baseUrl} (is fezz serve running? set --host-url/FEZZ_HOST)${extra}`);
    }
    if (res.ok) return res;
    throw await errorFrom(res, this.where, method, path);
  }

  /** undici's fetch bound to an Agent that connects to `socketPath` (undici is loaded only here). */
  #overSocket(socketPath: string): Promise<typeof fetch> {
    this.#socketFetch ??= import('undici').then(({ Agent, fetch: undiciFetch }) => {
      const dispatcher = new Agent({ connect: { socketPath } });
      // undici's Request/Response types are its own; at run time they are the web ones.
      return ((input: string, init: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher } as Parameters<typeof undiciFetch>[1])) as unknown as typeof fetch;
    });
    return this.#socketFetch;
  }
}

/** The host's `{ error, code, message, statusCode }`, or a readable stand-in when the body is something else. */
async function errorFrom(res: Response, baseUrl: string, method: string, path: string): Promise<CliError> {
  const text = await res.text().catch(() => '');
  let code: string | undefined;
  let message: string | undefined;
  try {
    const body = JSON.parse(text) as { code?: unknown; message?: unknown; error?: unknown };
    if (typeof body.code === 'string') code = body.code;
    if (typeof body.message === 'string') message = body.message;
    else if (typeof body.error === 'string') message = body.error;
  } catch {
    // not JSON: fall through to the status line
  }
  message ??= `${method} ${path} answered ${res.status} ${res.statusText}${text ? `: ${snippet(text)}` : ''}`;
  if (res.status === 401) message += ` (check --token/FEZZ_TOKEN for ${baseUrl})`;
  return new CliError(message, code ?? `HTTP ${res.status}`, res.status);
}

function parseLogLine(line: string): LogLine {
  try {
    const parsed = JSON.parse(line) as unknown;
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as LogLine;
  } catch {
    // a line that is not JSON is shown as is
  }
  return { time: Date.now(), level: 'info', msg: line };
}

/** The errno-style code under a fetch failure (`TypeError: fetch failed` wraps it, sometimes in an AggregateError). */
function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) {
      const c = causeCode(inner[0]);
      if (c !== undefined) return c;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function describeCause(err: unknown): string {
  return causeCode(err) ?? (err instanceof Error ? err.message : String(err));
}

function snippet(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 200 ? `${one.slice(0, 200)}…` : one;
}

// ---- small helpers the admin commands share ----

/** `1234` -> `1.2 kB` */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1_000_000).toFixed(1)} MB`;
}

/** `12.345` -> `12 ms`, `0.42` -> `0.42 ms` */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  return ms >= 10 ? `${Math.round(ms)} ms` : `${Number(ms.toPrecision(2))} ms`;
}

let epipeHandled = false;
/**
 * Exit quietly when stdout is closed early (`fezz list --json | head`) instead of dying on an
 * unhandled EPIPE. Commands install it as a `preAction` hook.
 */
export function exitQuietlyOnEpipe(): void {
  if (epipeHandled) return;
  epipeHandled = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}
