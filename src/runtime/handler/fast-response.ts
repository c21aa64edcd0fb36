/**
 * A lightweight `Response` for function code. Workers-style handlers build a `Response` for
 * every request, and undici's constructor (streams, Headers, brand checks) costs more than
 * the whole rest of the request path. This class stores `(body, init)` as given and is read
 * directly by {@link readResponse} when the body is a string, bytes or null; any other use
 * (`.body`, `.clone()`, `.blob()`, ...) materialises a real undici `Response` once and
 * delegates to it, so handlers see standard behaviour. `instanceof Response` holds because
 * the prototype chain is linked to the real `Response.prototype`.
 * (The same idea as @hono/node-server's lightweight Response; written here for fezz.)
 */

export const RealResponse: typeof Response = globalThis.Response;
const kState = Symbol('fezz.response');

type Body = ConstructorParameters<typeof Response>[0];
type HeadersInit = ConstructorParameters<typeof Headers>[0] & {};

interface State {
  body: Body;
  init: ResponseInit | undefined;
  real: Response | null;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

export class FastResponse {
  [kState]: State;

  constructor(body?: Body, init?: ResponseInit) {
    if (init !== undefined && init !== null) {
      const status = init.status;
      if (status !== undefined && (!Number.isInteger(status) || status < 200 || status > 599)) {
        throw new RangeError(`Response status must be an integer from 200 to 599, received ${String(status)}`);
      }
      if (status !== undefined && NULL_BODY_STATUS.has(status) && body !== null && body !== undefined) {
        throw new TypeError(`Response with status ${status} cannot have a body`);
      }
    }
    this[kState] = { body: body ?? null, init, real: null };
  }

  get status(): number { const s = this[kState]; return s.real ? s.real.status : (s.init?.status ?? 200); }
  get ok(): boolean { const st = this.status; return st >= 200 && st < 300; }
  get statusText(): string { const s = this[kState]; return s.real ? s.real.statusText : (s.init?.statusText ?? ''); }
  /** Materialises the real Response: from then on its Headers object is the source of truth. */
  get headers(): Headers { return materialize(this).headers; }

  static json(data: unknown, init?: ResponseInit): Response {
    const body = JSON.stringify(data);
    if (body === undefined) throw new TypeError('Response.json: value is not JSON-serialisable');
    let headers: HeadersInit;
    if (init?.headers === undefined) {
      headers = { 'content-type': 'application/json' };
    } else {
      const h = new Headers(init.headers);
      if (!h.has('content-type')) h.set('content-type', 'application/json');
      headers = h;
    }
    return new FastResponse(body, { status: init?.status, statusText: init?.statusText, headers }) as unknown as Response;
  }
  static error(): Response { return RealResponse.error(); }
  static redirect(url: string | URL, status?: number): Response { return RealResponse.redirect(url, status as 301); }
}

function materialize(r: FastResponse): Response {
  const s = r[kState];
  if (s.real === null) s.real = new RealResponse(s.body as Body, s.init);
  return s.real;
}

// Every other member of Response.prototype (body, bodyUsed, type, url, redirected, clone,
// text, json, arrayBuffer, blob, formData, bytes, ...) delegates to the real Response.
for (const key of Reflect.ownKeys(RealResponse.prototype)) {
  if (key === 'constructor' || Object.prototype.hasOwnProperty.call(FastResponse.prototype, key)) continue;
  const desc = Object.getOwnPropertyDescriptor(RealResponse.prototype, key)!;
  if (typeof desc.value === 'function') {
    Object.defineProperty(FastResponse.prototype, key, {
      configurable: true, writable: true,
      value(this: FastResponse, ...args: unknown[]) {
        const real = materialize(this) as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>;
        return real[key as string]!(...args);
      },
    });
  } else if (desc.get) {
    Object.defineProperty(FastResponse.prototype, key, {
      configurable: true,
      get(this: FastResponse) { return (materialize(this) as unknown as Record<PropertyKey, unknown>)[key]; },
    });
  }
}
Object.setPrototypeOf(FastResponse.prototype, RealResponse.prototype);
Object.setPrototypeOf(FastResponse, RealResponse);

/** Replace `globalThis.Response` with {@link FastResponse}. Idempotent. */
export function installFastResponse(): void {
  if ((globalThis.Response as unknown) !== FastResponse) {
    Object.defineProperty(globalThis, 'Response', { value: FastResponse, writable: true, configurable: true });
  }
}

const TEXT_PLAIN = 'text/plain;charset=UTF-8';

/** The parts of a response the host writes: status, flat headers, whole body or a stream. */
export interface ResponseParts {
  status: number;
  headers: string[];
  /** The whole body; `null` when there is none or when it is streamed. */
  body: string | Uint8Array | null;
  /**
   * A body produced over time: a `ReadableStream` the function gave (or a `fetch()` body it
   * passed through). Strings, bytes, JSON, Blob, FormData and URLSearchParams are read whole
   * instead (the one-message path).
   */
  stream?: ReadableStream<Uint8Array>;
  /** True when `body` bytes were made here and nobody else holds them (safe to transfer). */
  owned: boolean;
}

/**
 * Read a handler's result into {@link ResponseParts}. Synchronous for a `FastResponse`
 * with a string, bytes or null body (the common case); a `ReadableStream` body (given to the
 * constructor, or a real `Response` such as a `fetch()` result) becomes `stream`; otherwise
 * (Blob, FormData, URLSearchParams) the real `Response` is read whole with `arrayBuffer()`.
 * @throws TypeError when `value` is not a Response.
 */
// hot path -- change with care
export function readResponse(value: unknown): ResponseParts | Promise<ResponseParts> {
  if (value instanceof FastResponse) {
    const s = value[kState];
    if (s.real === null) {
      const body = s.body;
      if (body === null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer) {
        const init = s.init;
        const status = init?.status ?? 200;
        const h = init?.headers;
        const headers: string[] = [];
        const hasType = h === undefined ? false : flattenHeaders(h, headers);
        if (typeof body === 'string' && !hasType) headers.push('content-type', TEXT_PLAIN);
        return { status, headers, body: body instanceof ArrayBuffer ? new Uint8Array(body) : body, owned: false };
      }
    }
    return readReal(materialize(value), isStream(s.body));
  }
  // A real Response: a fetch() result passed through, or one built before FastResponse was
  // installed. Its body is a stream whatever it was made from: stream it.
  if (value instanceof RealResponse) return readReal(value, true);
  throw new TypeError(`expected a Response, received ${describe(value)}`);
}

function isStream(body: unknown): boolean {
  return typeof body === 'object' && body !== null && typeof (body as { getReader?: unknown }).getReader === 'function';
}

function readReal(res: Response, stream: boolean): ResponseParts | Promise<ResponseParts> {
  const headers: string[] = [];
  for (const [k, v] of res.headers) {
    if (k === 'set-cookie') continue;
    headers.push(k, v);
  }
  for (const c of res.headers.getSetCookie()) headers.push('set-cookie', c);
  if (res.body === null) return { status: res.status, headers, body: null, owned: true };
  if (stream) {
    // fetch() decoded a compressed body: what goes out is the decoded bytes, so the encoding
    // and length the upstream gave no longer describe it.
    if (res.headers.has('content-encoding') && res.type !== 'default') stripHeaders(headers, ['content-encoding', 'content-length']);
    return { status: res.status, headers, body: null, stream: res.body, owned: true };
  }
  return res.arrayBuffer().then((b) => ({ status: res.status, headers, body: new Uint8Array(b), owned: true }));
}

/** Remove every `names` (lower case) header from flat `headers`, in place. */
function stripHeaders(headers: string[], names: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (names.includes(headers[i]!.toLowerCase())) headers.splice(i, 2);
  }
}

/** Flatten any `HeadersInit` into `out`; returns whether a content-type was among them. */
function flattenHeaders(h: HeadersInit, out: string[]): boolean {
  let hasType = false;
  if (h instanceof Headers) {
    for (const [k, v] of h) {
      if (k === 'set-cookie') continue;
      if (k === 'content-type') hasType = true;
      out.push(k, v);
    }
    for (const c of h.getSetCookie()) out.push('set-cookie', c);
  } else if (Array.isArray(h)) {
    for (const pair of h) {
      const k = String(pair[0]);
      if (k.length === 12 && k.toLowerCase() === 'content-type') hasType = true;
      out.push(k, String(pair[1]));
    }
  } else {
    for (const k in h) {
      if (k.length === 12 && k.toLowerCase() === 'content-type') hasType = true;
      out.push(k, String((h as Record<string, string>)[k]));
    }
  }
  return hasType;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}
