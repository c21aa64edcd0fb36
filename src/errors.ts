/**
 * The error registry: every `FEZZ_ERR_*` code fezz produces, with its message template,
 * the HTTP status it maps to and its base class. One place, grouped by area, so that the
 * docs (`docs/errors.md`) and the code can be checked against each other.
 * Codes are never reused once retired (see Fastify `lib/errors.js` for the pattern).
 */

type Base = typeof Error | typeof TypeError | typeof RangeError;

interface ErrorSpec {
  /** Message template; `%s` placeholders are filled in order from the arguments. */
  readonly message: string;
  /** The HTTP status a request that fails with this error gets. */
  readonly statusCode: number;
  readonly base: Base;
}

export const errorSpecs = {
  // --- routing (host/router) ---
  FEZZ_ERR_ROUTE_NOT_FOUND: { message: 'No function serves %s %s', statusCode: 404, base: Error },
  FEZZ_ERR_FUNCTION_NOT_FOUND: { message: 'Unknown function %s', statusCode: 404, base: Error },
  FEZZ_ERR_METHOD_NOT_ALLOWED: { message: 'Method %s is not allowed on %s', statusCode: 405, base: Error },
  FEZZ_ERR_ROUTE_CONFLICT: { message: 'Route %s %s of %s is already claimed by %s', statusCode: 500, base: Error },
  FEZZ_ERR_ROUTE_RESERVED: { message: 'Route %s of %s is reserved by the host (/rpc/*, /healthz, /admin/*)', statusCode: 500, base: Error },
  FEZZ_ERR_ROUTE_INVALID: { message: 'Route %s %s of %s is invalid: %s', statusCode: 500, base: Error },

  // --- request admission (host/dispatch) ---
  FEZZ_ERR_BODY_TOO_LARGE: { message: 'Request body exceeds the limit of %s bytes', statusCode: 413, base: RangeError },
  FEZZ_ERR_QUEUE_FULL: { message: 'Function %s is at capacity (queue of %s full); retry later', statusCode: 503, base: Error },
  FEZZ_ERR_BAD_REQUEST: { message: 'Bad request: %s', statusCode: 400, base: Error },
  FEZZ_ERR_SHUTTING_DOWN: { message: 'The host is shutting down', statusCode: 503, base: Error },
  FEZZ_ERR_BODY_STALLED: { message: 'Request body stalled: no bytes for %s ms', statusCode: 408, base: Error },
  FEZZ_ERR_REQUEST_TIMEOUT: { message: 'The request was not received in time', statusCode: 408, base: Error },
  FEZZ_ERR_HEADERS_TOO_LARGE: { message: 'Request header fields too large', statusCode: 431, base: RangeError },
  FEZZ_ERR_CLIENT_GONE: { message: 'The client closed the connection before the response (request to %s)', statusCode: 499, base: Error },
  FEZZ_ERR_STREAM_IDLE: { message: 'Response stream of %s cut: no progress for %s ms (limits.streamIdleMs)', statusCode: 504, base: Error },
  FEZZ_ERR_STREAM_MAX: { message: 'Response stream of %s cut: longer than %s ms (limits.streamMaxMs)', statusCode: 504, base: Error },
  FEZZ_ERR_STREAM_FAILED: { message: 'Response stream of %s failed mid-way: %s', statusCode: 502, base: Error },

  // --- running a function (runtime) ---
  FEZZ_ERR_HANDLER_TIMEOUT: { message: 'Function %s did not answer within %s ms', statusCode: 504, base: Error },
  FEZZ_ERR_HANDLER_THREW: { message: 'Function %s failed: %s', statusCode: 500, base: Error },
  FEZZ_ERR_HANDLER_BAD_RESPONSE: { message: 'Function %s returned %s, expected a Response', statusCode: 500, base: TypeError },
  FEZZ_ERR_HANDLER_MISSING: { message: 'Function %s has no handler %s: expected %s', statusCode: 500, base: TypeError },
  FEZZ_ERR_INSTANCE_CRASHED: { message: 'Function %s: its instance stopped (%s) while serving this request', statusCode: 500, base: Error },
  FEZZ_ERR_INSTANCE_OUT_OF_MEMORY: { message: 'Function %s ran out of memory (limit %s MB)', statusCode: 500, base: RangeError },
  FEZZ_ERR_INSTANCE_START_FAILED: { message: 'Function %s failed to start: %s', statusCode: 500, base: Error },

  // --- WebSockets (websocket/) ---
  FEZZ_ERR_WEBSOCKET_HANDSHAKE: { message: 'Bad WebSocket handshake: %s', statusCode: 400, base: Error },
  FEZZ_ERR_WEBSOCKET_UNSUPPORTED: { message: 'Function %s cannot accept WebSockets: its runtime (%s) does not carry them; isolate and inline functions do (docs/websockets.md)', statusCode: 501, base: Error },
  FEZZ_ERR_WEBSOCKET_LIMIT: { message: 'Function %s has %s WebSockets open already (limits.maxWebSockets); retry later', statusCode: 503, base: RangeError },

  // --- scheduled runs: cron triggers and `fezz trigger` (triggers/) ---
  FEZZ_ERR_SCHEDULED_MISSING: { message: 'Function %s has no scheduled handler: expected export default { scheduled(controller, env, ctx) { ... } } (a plugin: it answered that it handles no scheduled events)', statusCode: 409, base: TypeError },
  FEZZ_ERR_SCHEDULED_FAILED: { message: 'Scheduled run of %s (cron %s) failed: %s', statusCode: 500, base: Error },

  // --- plugins: the request-id ABI and the process/native runtimes (abi/, runtime/process) ---
  FEZZ_ERR_ABI_UNAUTHORIZED: { message: 'Missing or wrong bearer token', statusCode: 401, base: Error },
  FEZZ_ERR_ABI_FORBIDDEN: { message: 'This token may only fetch and answer its own function\'s requests', statusCode: 403, base: Error },
  FEZZ_ERR_ABI_BAD_ID: { message: 'request_id must be a decimal integer from 1 to 2^63-1, received %s', statusCode: 400, base: TypeError },
  FEZZ_ERR_ABI_UNKNOWN_ID: { message: 'No pending request %s (unknown, answered or expired)', statusCode: 404, base: Error },
  FEZZ_ERR_ABI_ALREADY_ANSWERED: { message: 'Request %s was already answered', statusCode: 409, base: Error },
  FEZZ_ERR_ABI_BAD_BODY: { message: 'Malformed %s body: %s', statusCode: 400, base: TypeError },
  FEZZ_ERR_ABI_BODY_TOO_LARGE: { message: 'ABI request body exceeds %s bytes', statusCode: 413, base: RangeError },
  FEZZ_ERR_ABI_PRELUDE_TOO_LARGE: { message: 'push-response-stream prelude exceeds %s bytes: it is one line of JSON ending in "\\n"', statusCode: 413, base: RangeError },
  FEZZ_ERR_ABI_BODY_CONSUMED: { message: 'The body of request %s is streamed and was already read: it cannot be replayed (call get-request-body once)', statusCode: 409, base: Error },
  FEZZ_ERR_ABI_STREAM_CANCELLED: { message: 'The streamed response of request %s was cancelled (%s): the rest of its body is discarded', statusCode: 499, base: Error },
  FEZZ_ERR_ABI_STREAM_TIMEOUT: { message: 'The streamed response of request %s was cut (%s): the rest of its body is discarded', statusCode: 408, base: Error },
  FEZZ_ERR_ADMIN_NOT_FOUND: { message: 'No admin endpoint %s %s', statusCode: 404, base: Error },
  FEZZ_ERR_ADMIN_METHOD: { message: 'Method %s is not allowed on %s', statusCode: 405, base: Error },
  FEZZ_ERR_ADMIN_INTERNAL: { message: 'Internal error in the admin listener: %s', statusCode: 500, base: Error },
  FEZZ_ERR_ADMIN_SOCKET_ONLY: { message: 'The admin token is accepted only on the admin socket %s, not on this TCP listener (it serves plugins\' ABI tokens): use --admin-socket or FEZZ_ADMIN_SOCKET', statusCode: 403, base: Error },
  FEZZ_ERR_PLUGIN_DOWN: { message: 'Function %s: its plugin process is down (%s)', statusCode: 502, base: Error },
  FEZZ_ERR_PLUGIN_BAD_RESPONSE: { message: 'Function %s pushed a malformed response: %s', statusCode: 502, base: Error },
  FEZZ_ERR_PLUGIN_ERROR: { message: 'Function %s reported an error: %s', statusCode: 500, base: Error },

  // --- operating: deploy, delete, reload (admin API) ---
  FEZZ_ERR_DEPLOY_REJECTED: { message: 'Deploy of %s refused: %s', statusCode: 422, base: Error },
  FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND: { message: 'No function version %s', statusCode: 404, base: Error },
  FEZZ_ERR_DEPLOY_IN_PROGRESS: { message: 'A deploy or delete of %s is already in progress; retry once it is done', statusCode: 409, base: Error },
  FEZZ_ERR_VERSION_EXISTS: { message: '%s is already deployed to %s with other content: versions are immutable; bump "version", or replace it explicitly (fezz deploy --replace; POST /admin/deploy?replace=1)', statusCode: 409, base: Error },

  // --- secrets: the encrypted store of per-function secret values (secrets/) ---
  FEZZ_ERR_SECRET_NAME_INVALID: { message: 'Invalid secret name %s: %s', statusCode: 400, base: TypeError },
  FEZZ_ERR_SECRET_VALUE_INVALID: { message: 'Invalid value for secret %s: %s', statusCode: 400, base: TypeError },
  FEZZ_ERR_SECRET_LIMIT: { message: 'Secret %s of %s: %s', statusCode: 413, base: RangeError },
  FEZZ_ERR_SECRET_NOT_FOUND: { message: 'Function %s has no secret %s', statusCode: 404, base: Error },
  FEZZ_ERR_SECRET_CLASH: { message: '%s: %s is both a secret and a manifest env value (%s); a name is one or the other: rename one, or remove it (fezz secret delete %s %s)', statusCode: 409, base: Error },
  FEZZ_ERR_SECRETS_DISABLED: { message: 'This host has no secrets store: start it with the secretsDir option (fezz serve has one by default: --secrets-dir)', statusCode: 501, base: Error },
  FEZZ_ERR_SECRETS_KEY: { message: 'Secrets key %s: %s', statusCode: 500, base: Error },
  FEZZ_ERR_SECRETS_STORE: { message: 'Secrets store file %s: %s', statusCode: 500, base: Error },
  FEZZ_ERR_DEV_VARS_INVALID: { message: 'Local secrets file %s: %s', statusCode: 500, base: TypeError },

  // --- fleets: deploys through an S3-compatible object store (fleet/) ---
  FEZZ_ERR_FLEET_URL_INVALID: { message: 'Invalid object store location %s: %s', statusCode: 400, base: TypeError },
  FEZZ_ERR_FLEET_STORE: { message: 'Object store %s: %s', statusCode: 502, base: Error },
  FEZZ_ERR_FLEET_STATE_INVALID: { message: 'Desired-state document %s is invalid: %s', statusCode: 502, base: TypeError },
  FEZZ_ERR_FLEET_BUNDLE_INVALID: { message: 'Bundle %s of %s is refused: %s', statusCode: 422, base: Error },
  FEZZ_ERR_FLEET_CONTENDED: { message: 'Gave up updating %s after %s attempts: other deploys kept changing it; retry', statusCode: 503, base: Error },

  // --- manifests and the functions directory (manifest/registry) ---
  FEZZ_ERR_MANIFEST_INVALID: { message: '%s: %s', statusCode: 500, base: TypeError },
  FEZZ_ERR_MANIFEST_DIR_NAME: { message: '%s: directory name must be "%s" (from the manifest\'s id and version), got "%s"', statusCode: 500, base: TypeError },
  FEZZ_ERR_ENTRY_MISSING: { message: '%s: field "entry": file %s does not exist%s', statusCode: 500, base: Error },
  FEZZ_ERR_ENTRY_OUTSIDE: { message: '%s: field "entry": %s must stay inside the function directory', statusCode: 500, base: RangeError },
  FEZZ_ERR_PERMISSION_DENIED: { message: '%s: the function imports %s, which its permissions do not grant: %s', statusCode: 500, base: Error },
  FEZZ_ERR_BUILD_FAILED: { message: '%s: bundling %s failed: %s', statusCode: 500, base: Error },

  // --- configuration (config/) ---
  FEZZ_ERR_CONFIG_INVALID: { message: 'Invalid option %s: expected %s, received %s', statusCode: 500, base: TypeError },
  FEZZ_ERR_ADMIN_SOCKET_IN_USE: { message: 'Admin socket %s is in use: a server answers on it (another fezz serve?); stop it or choose another --admin-socket', statusCode: 500, base: Error },
  FEZZ_ERR_ADMIN_SOCKET_UNUSABLE: { message: 'Cannot listen on the admin socket %s: %s', statusCode: 500, base: Error },
} as const satisfies Record<string, ErrorSpec>;

export type FezzErrorCode = keyof typeof errorSpecs;

/** Fill `%s` placeholders in order. */
export function formatMessage(template: string, args: readonly unknown[]): string {
  let i = 0;
  return template.replace(/%s/g, () => (i < args.length ? String(args[i++]) : '%s'));
}

/**
 * An error with a registry code and an HTTP status. `cause` keeps a wrapped error.
 * Construct through {@link fezzError} so the code, message and status stay in sync.
 */
export class FezzError extends Error {
  readonly code: FezzErrorCode;
  readonly statusCode: number;
  constructor(code: FezzErrorCode, message: string, statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FezzError';
    this.code = code;
    this.statusCode = statusCode;
  }
}

/** Build a {@link FezzError} for `code`, filling the template with `args`. */
export function fezzError(code: FezzErrorCode, args: readonly unknown[] = [], cause?: unknown): FezzError {
  const spec: ErrorSpec = errorSpecs[code];
  const err = new FezzError(code, formatMessage(spec.message, args), spec.statusCode, cause === undefined ? undefined : { cause });
  return err;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
  409: 'Conflict', 413: 'Payload Too Large', 422: 'Unprocessable Entity', 431: 'Request Header Fields Too Large',
  499: 'Client Closed Request', 500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** The reason phrase for an error status (`"Not Found"`), used as the `error` field of error bodies. */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error';
}

/**
 * The fixed-shape JSON error body `{ error, code, message, statusCode }` every host-made
 * error response carries. Built by string concatenation, not a generic serializer, since
 * the shape never changes.
 */
export function errorBody(statusCode: number, code: string, message: string): string {
  return '{"error":' + JSON.stringify(statusText(statusCode)) + ',"code":' + JSON.stringify(code) +
    ',"message":' + JSON.stringify(message) + ',"statusCode":' + statusCode + '}';
}
