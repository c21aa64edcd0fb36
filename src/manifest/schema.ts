/**
 * The `fezz.json` manifest schema (zod). Contract: DESIGN.md "The manifest".
 * Everything but `id`, `version` and `entry` has a default; unknown fields are an error, so a
 * typo never silently falls back to a default.
 */
import { z } from 'zod';
import { Cron } from 'croner';

/** Function ids: lower-case letters, digits and dashes, starting with a letter or digit. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]*$/;
/** Semver 2.0 (major.minor.patch, optional pre-release and build), or the literal `latest`. */
export const VERSION_PATTERN =
  /^(latest|(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)$/;

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** Runtime kinds. `isolate` (default): worker threads; `inline`: the host thread; `process`, `native`: plugins. */
export const RUNTIMES = ['isolate', 'inline', 'process', 'native'] as const;

/**
 * Isolation tiers of an isolate function (DESIGN.md "Security model"): `thread` (worker
 * threads of the host process, hardened: defense in depth) or `sandbox` (a separate process
 * under bubblewrap: the boundary).
 */
export const ISOLATIONS = ['thread', 'sandbox'] as const;

const routeSchema = z.strictObject({
  /** HTTP method, e.g. `"GET"`; `"*"` matches every method. */
  method: z.enum([...HTTP_METHODS, '*']).default('GET'),
  /** find-my-way path: `/todos/:id`, `/files/*`. Must start with `/`. */
  path: z.string().regex(/^\//, 'must start with "/"'),
  /** Name of the exported handler to call; the default export's `fetch` when absent. */
  handler: z.string().regex(/^[A-Za-z_$][\w$]*$/, 'must be a JavaScript identifier').optional(),
});

const limitsSchema = z.strictObject({
  /**
   * Per-request deadline in ms, until the function returns its Response (status and headers);
   * past it the client gets 504. A streamed body after that is bounded by the two below.
   * @default 10000
   */
  timeoutMs: z.number().int().min(1).max(15 * 60_000).default(10_000),
  /** A streamed response (or request) body with no chunk for this long is cut, in ms. @default 30000 */
  streamIdleMs: z.number().int().min(1).max(24 * 3600_000).default(30_000),
  /** A streamed response body lasting longer than this is cut, in ms. @default 900000 (15 min, as Lambda) */
  streamMaxMs: z.number().int().min(1).max(24 * 3600_000).default(15 * 60_000),
  /** Old-generation heap limit per isolate in MB (worker `resourceLimits`). @default 128 */
  memoryMb: z.number().int().min(8).max(16_384).default(128),
  /** Concurrent requests per instance. @default 64 */
  concurrency: z.number().int().min(1).max(10_000).default(64),
  /** Requests waiting for a free slot, per function version; past it 503. @default 1000 */
  maxQueue: z.number().int().min(0).max(1_000_000).default(1000),
  /** Largest request body in bytes; past it 413. @default 6291456 (6 MiB, as Lambda) */
  maxBodyBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(6 * 1024 * 1024),
  /**
   * WebSockets open at once per function version (docs/websockets.md); the next upgrade gets
   * 503 FEZZ_ERR_WEBSOCKET_LIMIT with `Retry-After`. Isolate and inline functions only.
   * @default 1000
   */
  maxWebSockets: z.number().int().min(0).max(1_000_000).default(1000),
  /**
   * A WebSocket with no message either way and no ping or pong for this long is closed with
   * 1001 `"idle timeout"`, in ms. Clients keep an idle socket open by pinging.
   * @default 300000 (5 min)
   */
  webSocketIdleMs: z.number().int().min(100).max(24 * 3600_000).default(300_000),
  /**
   * Largest WebSocket message either way, in bytes: the client's bigger message closes the
   * socket with 1009; the function's `send()` of a bigger one throws a RangeError.
   * @default 1048576 (1 MiB, as Cloudflare Workers)
   */
  webSocketMaxMessageBytes: z.number().int().min(125).max(64 * 1024 * 1024).default(1024 * 1024),
});

const instancesSchema = z.strictObject({
  /** Instances kept warm even when idle. @default 0 */
  min: z.number().int().min(0).max(256).default(0),
  /** Most instances started under load. @default 2 */
  max: z.number().int().min(1).max(256).default(2),
});

/**
 * What a function may reach beyond its own bundle; everything else is denied (DESIGN.md
 * "Security model", modelled on Deno's `--allow-*` and Spin's `allowed_outbound_hosts`).
 */
const permissionsSchema = z.strictObject({
  /**
   * Hosts the function may call: `"https://api.example.com"`, `"api.example.com:8443"`,
   * `"*.internal.example"`. Needed to import `node:http`, `https`, `net`, `tls`, `dgram`,
   * `dns`, `http2`. @default [] (no outbound network)
   */
  outbound: z.array(z.string().regex(/^(https?:\/\/)?(\*\.)?[A-Za-z0-9.-]+(:(\d{1,5}|\*))?\/?$/, 'must be a host, e.g. "https://api.example.com", "api.example.com:8443" or "*.example.com"')).max(256).default([]),
  /**
   * Files or directories inside the function's directory that it may read at run time, e.g.
   * `"static/"`. Needed to import `node:fs`. @default [] (only its own bundle)
   */
  files: z.array(z.string().min(1).refine((f) => !f.startsWith('/') && !f.split(/[\\/]/).includes('..'), 'must be a relative path inside the function directory')).max(256).default([]),
  /** Names of the host's environment variables handed to the function's `env`. @default [] */
  env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name').refine((n) => !n.startsWith('FEZZ_'), 'FEZZ_* variables are the host\'s own')).max(256).default([]),
});

/** Most cron expressions one function may have. */
export const MAX_CRONS = 32;
/** Longest cron expression, in characters. */
export const MAX_CRON_LENGTH = 128;

/**
 * Compile cron expression `expr` read in IANA time zone `timezone`, the way the manifest
 * checks it and the scheduler (src/triggers/) runs it: croner's syntax and semantics, a
 * paused job (no timer; `nextRun()` gives its ticks).
 * @throws Error (croner's TypeError/RangeError) naming what is wrong with the expression.
 */
export function compileCron(expr: string, timezone: string): Cron {
  return new Cron(expr, { timezone, paused: true });
}

/** Why `timezone` is not a time zone this Node knows, or null when it is one. */
function timezoneProblem(timezone: string): string | null {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    return null;
  } catch {
    return `unknown time zone ${JSON.stringify(timezone)}: expected an IANA name such as "UTC" or "Europe/Berlin"`;
  }
}

/**
 * Cron triggers (docs/triggers.md): the host calls the module's `scheduled(controller, env,
 * ctx)` export (Cloudflare Workers' shape) on each tick of each cron; a plugin gets a
 * `POST /__fezz/scheduled` request (docs/abi.md "Scheduled events"). Only the latest version
 * of a function fires. A bad expression or time zone makes the function a load problem.
 */
const triggersSchema = z.strictObject({
  /**
   * Cron expressions in croner's syntax: 5 fields (`minute hour day-of-month month
   * day-of-week`, e.g. `"*\/5 * * * *"`), 6 with seconds first (`"*\/10 * * * * *"`), 7 with a
   * year last; names (`MON`, `JAN`), `L`, `W`, `#` and the nicknames `@hourly`, `@daily`,
   * `@weekly`, `@monthly`, `@yearly`. When both day fields are restricted, a day matching
   * either fires (Vixie cron). Each must fire at some time in the future. @default []
   */
  crons: z.array(z.string().min(1, 'must be a cron expression').max(MAX_CRON_LENGTH)).max(MAX_CRONS).default([]),
  /** IANA time zone the crons are read in, e.g. `"Europe/Berlin"` (daylight saving time follows croner's rules). @default "UTC" */
  timezone: z.string().min(1).max(64).default('UTC'),
  /**
   * Whether a tick may start a run while the previous run of the same cron is still going.
   * When false, that tick is skipped: logged and counted with outcome `skipped-overlap`.
   * @default false
   */
  overlap: z.boolean().default(false),
}).superRefine((t, ctx) => {
  const tzProblem = timezoneProblem(t.timezone);
  if (tzProblem !== null) {
    ctx.addIssue({ code: 'custom', path: ['timezone'], message: tzProblem });
    return;
  }
  const seen = new Set<string>();
  t.crons.forEach((expr, i) => {
    if (seen.has(expr)) {
      ctx.addIssue({ code: 'custom', path: ['crons', i], message: `${JSON.stringify(expr)} is listed twice` });
      return;
    }
    seen.add(expr);
    let next: Date | null;
    try {
      next = compileCron(expr, t.timezone).nextRun();
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: ['crons', i], message: `${JSON.stringify(expr)} is not a valid cron expression: ${String((err as Error).message).replace(/^CronPattern: /, '')}` });
      return;
    }
    if (next === null) ctx.addIssue({ code: 'custom', path: ['crons', i], message: `${JSON.stringify(expr)} never fires (no future time matches it)` });
  });
});

/** The manifest as written in `fezz.json`, validated and with defaults applied. */
export const manifestSchema = z.strictObject({
  /** `[a-z0-9][a-z0-9-]*`, e.g. `"todos"`. */
  id: z.string().regex(ID_PATTERN, 'must match [a-z0-9][a-z0-9-]*'),
  /** Semver (`"1.2.0"`) or `"latest"`. */
  version: z.string().regex(VERSION_PATTERN, 'must be semver (e.g. "1.2.0") or "latest"'),
  /** Module (`.ts`, `.js`, `.mjs`), executable or `.so`, relative to the function directory. */
  entry: z.string().min(1, 'must be a relative file path'),
  /**
   * How it runs: `"isolate"` (a JS/TS module in worker threads, or a sandbox), `"inline"` (a
   * JS module on the host's own thread: trusted code only), `"process"` (an executable
   * speaking the request-id ABI, docs/abi.md), `"native"` (a shared library loaded by a
   * plugin host process). @default "isolate"
   */
  runtime: z.enum(RUNTIMES).default('isolate'),
  /**
   * Public routes to the function (find-my-way syntax); without any, it is reachable only at
   * `/rpc/<id>/*` (and `/rpc/<id>@<version>/*`). Two functions may not claim one route. @default []
   */
  routes: z.array(routeSchema).default([]),
  /** String values handed to the function as `env`. */
  env: z.record(z.string(), z.string()).default({}),
  /**
   * Secrets (set with `fezz secret put <id> <NAME>`, kept encrypted by the host, never in this
   * file) that a `process` or `native` plugin gets as environment variables, e.g.
   * `["API_KEY"]`: a plugin's environment holds only the secrets named here. JS functions
   * (`isolate`, `inline`) get every secret of their id in `env`, as Workers do, whatever this
   * says. A name that is not set is skipped. docs/secrets.md. @default none (no secret reaches a plugin)
   */
  secrets: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name').max(128).refine((n) => !n.startsWith('FEZZ_'), 'FEZZ_* names are the host\'s own')).max(128).optional(),
  /** Per-request and per-instance limits; each that fires answers with a clear status and error code (docs/operating.md). */
  limits: limitsSchema.default(limitsSchema.parse({})),
  /** How many instances (warm isolates, sandboxes or plugin processes) the host runs. */
  instances: instancesSchema.default(instancesSchema.parse({})),
  /** Seconds an idle instance is kept warm before eviction (fractions allowed). @default 300 */
  idleTtlSeconds: z.number().positive().max(7 * 24 * 3600).default(300),
  /** What the function may reach beyond its own bundle: network hosts, files, host environment variables. Everything else is denied (docs/security.md). */
  permissions: permissionsSchema.default(permissionsSchema.parse({})),
  /**
   * Where the function's instances run: `"thread"` (worker threads for isolate functions; plugin
   * processes as the host's user) or `"sandbox"` (a bubblewrap sandbox per instance, plugins
   * included). A host started with `--isolation sandbox` sandboxes every function whatever
   * this says. @default "thread"
   */
  isolation: z.enum(ISOLATIONS).default('thread'),
  /**
   * Cron triggers: `{ "crons": ["*\/5 * * * *"], "timezone": "UTC", "overlap": false }`
   * (docs/triggers.md). @default none (no scheduled runs)
   */
  triggers: triggersSchema.optional(),
}).refine((m) => m.isolation === 'thread' || m.runtime !== 'inline', {
  message: 'isolation "sandbox" is not available for runtime "inline" (it runs on the host\'s own thread): use runtime "isolate"', path: ['isolation'],
}).refine((m) => m.instances.min <= m.instances.max, {
  message: 'instances.min must not exceed instances.max', path: ['instances', 'min'],
});

/** A validated manifest with all defaults filled. */
export type Manifest = z.output<typeof manifestSchema>;
export type ManifestRoute = Manifest['routes'][number];
export type RuntimeKind = Manifest['runtime'];
export type Limits = Manifest['limits'];
export type Permissions = Manifest['permissions'];
export type Isolation = Manifest['isolation'];
export type Triggers = NonNullable<Manifest['triggers']>;

/**
 * Render zod issues as `field "limits.timeoutMs": expected ..., received ...` lines, one per
 * problem, so a log line names the field and what was expected.
 */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => {
    const field = issue.path.length ? issue.path.join('.') : '(root)';
    return `field "${field}": ${issue.message}`;
  }).join('; ');
}
