/**
 * A lazily materialised web `Request` for function code. The handler gets an object that is
 * `instanceof Request` and answers `method`, `url`, `headers`, `text()`, `json()`,
 * `arrayBuffer()`, `bytes()` and `signal` straight from the wire form; anything else
 * (`body` stream, `formData()`, `clone()`, ...) builds a real undici `Request` once and
 * delegates to it. Building undici's Request for every call is what halves a worker's
 * throughput (see issue "Benchmarks against the peers"); most handlers never need it.
 */
import type { WireRequest } from '../../wire/types.js';
import { readAll, readableOf } from '../../wire/web-body.js';

export const RealRequest: typeof Request = globalThis.Request;
const kState = Symbol('fezz.request');
const decoder = new TextDecoder();

interface State {
  wire: WireRequest;
  headers: Headers | null;
  real: Request | null;
  used: boolean;
  /** `wire.body` is this request's alone (see the constructor). */
  bodyOwned: boolean;
  /** Created on first `signal` access: most handlers never look at it. */
  controller: AbortController | null;
  abortReason: unknown;
}

export class FastRequest {
  [kState]: State;

  /**
   * @param bodyOwned true when `wire.body` belongs to this request alone (an isolate's copy):
   *   `arrayBuffer()` then hands out its buffer instead of a copy. The inline runtime passes
   *   false: its body is the host's.
   */
  constructor(wire: WireRequest, bodyOwned = false) {
    this[kState] = { wire, headers: null, real: null, used: false, bodyOwned, controller: null, abortReason: undefined };
  }

  get method(): string { return this[kState].wire.method; }
  get url(): string { return this[kState].wire.url; }
  get headers(): Headers {
    const s = this[kState];
    if (s.real) return s.real.headers;
    if (s.headers === null) {
      const h = new Headers();
      const raw = s.wire.headers;
      for (let i = 0; i < raw.length; i += 2) h.append(raw[i]!, raw[i + 1]!);
      s.headers = h;
    }
    return s.headers;
  }
  get signal(): AbortSignal {
    const s = this[kState];
    if (s.controller === null) {
      s.controller = new AbortController();
      if (s.abortReason !== undefined) s.controller.abort(s.abortReason);
    }
    return s.controller.signal;
  }
  get bodyUsed(): boolean { const s = this[kState]; return s.real ? s.real.bodyUsed : s.used; }

  arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = this.#take();
    if (bytes instanceof Promise) return bytes.then((b) => b.slice().buffer as ArrayBuffer);
    // The body is read once (bodyUsed), so an owned buffer that is exactly the body can be
    // given away; anything else (a view into a larger buffer, the host's bytes) is copied.
    const s = this[kState];
    if (s.bodyOwned && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
      return Promise.resolve(bytes.buffer as ArrayBuffer);
    }
    return Promise.resolve(bytes.slice().buffer as ArrayBuffer);
  }
  bytes(): Promise<Uint8Array> {
    const bytes = this.#take();
    return bytes instanceof Promise ? bytes : Promise.resolve(bytes);
  }
  text(): Promise<string> {
    const bytes = this.#take();
    if (bytes instanceof Promise) return bytes.then((b) => decoder.decode(b));
    return Promise.resolve(decoder.decode(bytes));
  }
  json(): Promise<unknown> {
    return this.text().then((t) => JSON.parse(t));
  }

  /** Consume the body once, as the fetch spec requires. */
  #take(): Uint8Array | Promise<Uint8Array> {
    const s = this[kState];
    if (s.real) return s.real.arrayBuffer().then((b) => new Uint8Array(b));
    if (s.used) return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
    s.used = true;
    // A streamed body (large or chunked upload) is read whole only when asked for whole.
    if (s.wire.bodyStream !== undefined) return readAll(s.wire.bodyStream);
    return s.wire.body ?? new Uint8Array(0);
  }
}

/** Abort `request.signal` (now, or when first read) with `reason`, e.g. on timeout. */
export function abortRequest(r: FastRequest, reason: unknown): void {
  const s = r[kState];
  if (s.abortReason !== undefined) return;
  s.abortReason = reason;
  if (s.controller !== null) s.controller.abort(reason);
}

function materialize(r: FastRequest): Request {
  const s = r[kState];
  if (s.real === null) {
    if (s.used) throw new TypeError('Body is unusable: Body has already been read');
    const w = s.wire;
    const hasBody = (w.body !== null || w.bodyStream !== undefined) && w.method !== 'GET' && w.method !== 'HEAD';
    s.real = new RealRequest(w.url, {
      method: w.method,
      headers: s.headers ?? r.headers,
      // `request.body` of a streamed upload reads from the socket as the function reads it.
      body: hasBody ? (w.bodyStream !== undefined ? readableOf(w.bodyStream) : w.body) : null,
      signal: r.signal,
      duplex: 'half', // undici needs it for a body
    } as RequestInit);
  }
  return s.real;
}

for (const key of Reflect.ownKeys(RealRequest.prototype)) {
  if (key === 'constructor' || Object.prototype.hasOwnProperty.call(FastRequest.prototype, key)) continue;
  const desc = Object.getOwnPropertyDescriptor(RealRequest.prototype, key)!;
  if (typeof desc.value === 'function') {
    Object.defineProperty(FastRequest.prototype, key, {
      configurable: true, writable: true,
      value(this: FastRequest, ...args: unknown[]) {
        const real = materialize(this) as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>;
        return real[key as string]!(...args);
      },
    });
  } else if (desc.get) {
    Object.defineProperty(FastRequest.prototype, key, {
      configurable: true,
      get(this: FastRequest) { return (materialize(this) as unknown as Record<PropertyKey, unknown>)[key]; },
    });
  }
}
Object.setPrototypeOf(FastRequest.prototype, RealRequest.prototype);
