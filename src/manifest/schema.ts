/**
 * The `fezz.json` manifest schema (zod). Contract: DESIGN.md "The manifest".
 * Everything but `id`, `version` and `entry` has a default; unknown fields are an error, so a
 * typo never silently falls back to a default.
 */
import { z } from 'zod';

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

/** The manifest as written in `fezz.json`, validated and with defaults applied. */
export const manifestSchema = z.strictObject({
  /** `[a-z0-9][a-z0-9-]*`, e.g. `"todos"`. */
  id: z.string().regex(ID_PATTERN, 'must match [a-z0-9][a-z0-9-]*'),
  /** Semver (`"1.2.0"`) or `"latest"`. */
  version: z.string().regex(VERSION_PATTERN, 'must be semver (e.g. "1.2.0") or "latest"'),
  /** Module (`.ts`, `.js`, `.mjs`), executable or `.so`, relative to the function directory. */
  entry: z.string().min(1, 'must be a relative file path'),
  runtime: z.enum(RUNTIMES).default('isolate'),
  routes: z.array(routeSchema).default([]),
  /** String values handed to the function as `env`. */
  env: z.record(z.string(), z.string()).default({}),
  limits: limitsSchema.default(limitsSchema.parse({})),
  instances: instancesSchema.default(instancesSchema.parse({})),
  /** Seconds an idle instance is kept warm before eviction (fractions allowed). @default 300 */
  idleTtlSeconds: z.number().positive().max(7 * 24 * 3600).default(300),
  permissions: permissionsSchema.default(permissionsSchema.parse({})),
  /**
   * Where the function's instances run: `"thread"` (worker threads for isolate functions; plugin
   * processes as the host's user) or `"sandbox"` (a bubblewrap sandbox per instance, plugins
   * included). A host started with `--isolation sandbox` sandboxes every function whatever
   * this says. @default "thread"
   */
  isolation: z.enum(ISOLATIONS).default('thread'),
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
