/**
 * Message frames on a byte stream (the unix socket between the host and a sandbox process):
 * each frame is a 4-byte unsigned length (little-endian) followed by that many bytes of
 * payload, one message. A frame carries exactly what `postMessage` carries (arrays, strings,
 * numbers, null, plain objects, Uint8Array/Buffer), in one of two encodings, told apart by
 * the payload's first byte:
 *
 * - the compact encoding below (first byte < 0x20), for messages made only of null,
 *   undefined, booleans, numbers, strings, dense arrays, plain objects and Uint8Arrays: every
 *   per-request message (protocol.ts). Written and read in one pass in JavaScript, about 5x
 *   cheaper than `v8.serialize` + `v8.deserialize` per request message (measured: ~2 µs to
 *   ~0.4 µs for a request and its response), and no ArrayBuffer per frame on the way out;
 * - `v8.serialize(message)` (first byte 0xFF, V8's version tag): the structured clone
 *   algorithm, for anything else (a Map, a Date, a sparse array, another typed array...).
 *
 * A transfer list has no meaning on a stream: its buffers are copied.
 *
 * One difference from `v8.deserialize`, to match `postMessage`: a Buffer arrives as a plain
 * Uint8Array. Byte arrays are views into the received chunk, not copies.
 *
 * The compact encoding: one tag byte per value, then
 * - `NULL`, `UNDEFINED`, `TRUE`, `FALSE`: nothing;
 * - `INT`: int32 LE; `FLOAT`: float64 LE (every other number: fractions, -0, NaN, large);
 * - `STR`: u32 byte length, UTF-8 (a string with a lone surrogate, which UTF-8 cannot carry,
 *   is `STR16`: u32 byte length, UTF-16 LE);
 * - `ARRAY`: u32 length, then the elements; `OBJECT`: u32 count, then key (a `STR` body, no
 *   tag) and value pairs; `BYTES`: u32 length, the bytes.
 * What an untrusted sandbox sends is bounds-checked as it is read: a length past the frame's
 * end, or an unknown tag, throws (the host then stops that sandbox).
 */
import { Buffer } from 'node:buffer';
import { DefaultDeserializer, serialize } from 'node:v8';

/** Largest frame accepted by default, in bytes (a longer length is a corrupt stream): 1 GiB. */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

const NULL = 0, UNDEFINED = 1, TRUE = 2, FALSE = 3, INT = 4, FLOAT = 5, STR = 6, STR16 = 7, ARRAY = 8, OBJECT = 9, BYTES = 10;
/** The first byte of a `v8.serialize` payload (kVersionTag). */
const V8_VERSION_TAG = 0xff;

/** `v8.deserialize`, with Buffers turned into plain Uint8Arrays over the same bytes. */
class PlainDeserializer extends DefaultDeserializer {
  _readHostObject(): unknown {
    const v = (DefaultDeserializer.prototype as unknown as { _readHostObject(this: DefaultDeserializer): unknown })._readHostObject.call(this);
    return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
  }
}

function v8Deserialize(bytes: Buffer): unknown {
  const d = new PlainDeserializer(bytes);
  d.readHeader();
  return d.readValue();
}

// ---- encoding ------------------------------------------------------------------------------

/** Thrown inside the compact encoder for a value it does not carry: the frame falls back to v8. */
const UNSUPPORTED = Symbol('unsupported');

/** Scratch space the compact encoder writes into; grows as needed, handed off when large. */
let out = Buffer.allocUnsafeSlow(64 * 1024);
let pos = 0;
/** A frame this large is sent from the scratch buffer itself (a new one replaces it), not copied. */
const HAND_OFF_BYTES = 16 * 1024;
const DEFAULT_SCRATCH = 64 * 1024;

function reserve(n: number): void {
  if (pos + n <= out.byteLength) return;
  const bigger = Buffer.allocUnsafeSlow(Math.max(out.byteLength * 2, pos + n));
  out.copy(bigger, 0, 0, pos);
  out = bigger;
}

/** No lone surrogate (`String#isWellFormed`, Node 20+; a regular expression before). */
const isWellFormed: (s: string) => boolean = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
  ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
  : (s) => !/\p{Surrogate}/u.test(s);

function writeString(s: string): void {
  const n = s.length;
  reserve(5 + n * 3);
  const at = pos;
  pos += 5;
  // Short ASCII strings (header names, methods, ids) byte by byte; the rest through Buffer.
  if (n <= 32) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      out[pos + i] = c;
    }
    if (i === n) {
      out[at] = STR;
      out.writeUInt32LE(n, at + 1);
      pos += n;
      return;
    }
  }
  if (isWellFormed(s)) {
    const k = out.write(s, pos, 'utf8');
    out[at] = STR;
    out.writeUInt32LE(k, at + 1);
    pos += k;
  } else {
    // A lone surrogate: UTF-8 would replace it, UTF-16 keeps it (as structured clone does).
    const k = out.write(s, pos, 'utf16le');
    out[at] = STR16;
    out.writeUInt32LE(k, at + 1);
    pos += k;
  }
}

function writeValue(v: unknown): void {
  switch (typeof v) {
    case 'string':
      writeString(v);
      return;
    case 'number':
      if ((v | 0) === v && !Object.is(v, -0)) {
        reserve(5);
        out[pos] = INT;
        out.writeInt32LE(v, pos + 1);
        pos += 5;
      } else {
        reserve(9);
        out[pos] = FLOAT;
        out.writeDoubleLE(v, pos + 1);
        pos += 9;
      }
      return;
    case 'boolean':
      reserve(1);
      out[pos++] = v ? TRUE : FALSE;
      return;
    case 'undefined':
      reserve(1);
      out[pos++] = UNDEFINED;
      return;
    case 'object': {
      if (v === null) {
        reserve(1);
        out[pos++] = NULL;
        return;
      }
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto === Array.prototype) {
        const a = v as unknown[];
        const n = a.length;
        reserve(5);
        out[pos] = ARRAY;
        out.writeUInt32LE(n, pos + 1);
        pos += 5;
        for (let i = 0; i < n; i++) {
          const e = a[i];
          if (e === undefined && !(i in a)) throw UNSUPPORTED; // a hole: structured clone keeps it
          writeValue(e);
        }
        return;
      }
      if (v instanceof Uint8Array && (proto === Uint8Array.prototype || proto === Buffer.prototype)) {
        const n = v.byteLength;
        reserve(5 + n);
        out[pos] = BYTES;
        out.writeUInt32LE(n, pos + 1);
        out.set(v, pos + 5);
        pos += 5 + n;
        return;
      }
      if (proto === Object.prototype || proto === null) {
        const keys = Object.keys(v);
        reserve(5);
        out[pos] = OBJECT;
        out.writeUInt32LE(keys.length, pos + 1);
        pos += 5;
        for (const k of keys) {
          writeString(k);
          writeValue((v as Record<string, unknown>)[k]);
        }
        return;
      }
      throw UNSUPPORTED;
    }
    default:
      throw UNSUPPORTED; // bigint, symbol, function
  }
}

/** Whether the compact encoder is running (a getter that posts a message re-enters it). */
let encoding = false;

/** One frame for `message`: header and payload in one buffer (one write). */
export function encodeFrame(message: unknown): Buffer {
  if (encoding) return v8Frame(message);
  encoding = true;
  pos = 4;
  try {
    writeValue(message);
  } catch (err) {
    if (err !== UNSUPPORTED) throw err;
    return v8Frame(message);
  } finally {
    encoding = false;
  }
  const len = pos - 4;
  out.writeUInt32LE(len, 0);
  if (pos >= HAND_OFF_BYTES) {
    // Large (a body): the scratch buffer goes to the socket as it is, and a new one replaces it.
    const frame = out.subarray(0, pos);
    out = Buffer.allocUnsafeSlow(DEFAULT_SCRATCH);
    return frame;
  }
  // Small: a copy of exactly this size (from Buffer's pool: no ArrayBuffer per frame).
  const frame = Buffer.allocUnsafe(pos);
  out.copy(frame, 0, 0, pos);
  return frame;
}

function v8Frame(message: unknown): Buffer {
  const payload = serialize(message);
  const frame = Buffer.allocUnsafe(4 + payload.byteLength);
  frame.writeUInt32LE(payload.byteLength, 0);
  payload.copy(frame, 4);
  return frame;
}

// ---- decoding ------------------------------------------------------------------------------

/** The payload being read: `buf[at .. end)`. Module state: decoding is synchronous, never nested. */
let inp: Buffer = Buffer.alloc(0);
let at = 0;
let end = 0;

function corrupt(what: string): never {
  throw new RangeError(`corrupt frame: ${what}`);
}

function readLength(): number {
  if (end - at < 4) corrupt('truncated length');
  const n = inp.readUInt32LE(at);
  at += 4;
  return n;
}

function readStringBody(tag: number): string {
  const n = readLength();
  if (n > end - at) corrupt('string past the end');
  const from = at;
  at += n;
  if (tag === STR) return inp.toString('utf8', from, at);
  if ((n & 1) !== 0) corrupt('odd UTF-16 length');
  return inp.toString('utf16le', from, at);
}

function readValue(): unknown {
  if (at >= end) corrupt('truncated value');
  const tag = inp[at++]!;
  switch (tag) {
    case STR:
    case STR16:
      return readStringBody(tag);
    case INT: {
      if (end - at < 4) corrupt('truncated int');
      const v = inp.readInt32LE(at);
      at += 4;
      return v;
    }
    case NULL: return null;
    case ARRAY: {
      const n = readLength();
      if (n > end - at) corrupt('array longer than the frame'); // each element takes a byte at least
      const a = new Array<unknown>(n);
      for (let i = 0; i < n; i++) a[i] = readValue();
      return a;
    }
    case BYTES: {
      const n = readLength();
      if (n > end - at) corrupt('bytes past the end');
      const v = new Uint8Array(inp.buffer, inp.byteOffset + at, n);
      at += n;
      return v;
    }
    case UNDEFINED: return undefined;
    case TRUE: return true;
    case FALSE: return false;
    case FLOAT: {
      if (end - at < 8) corrupt('truncated number');
      const v = inp.readDoubleLE(at);
      at += 8;
      return v;
    }
    case OBJECT: {
      const n = readLength();
      if (n > end - at) corrupt('object longer than the frame');
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        if (at >= end) corrupt('truncated key');
        const t = inp[at++]!;
        if (t !== STR && t !== STR16) corrupt('key is not a string');
        const k = readStringBody(t);
        const v = readValue();
        // Own data properties, as structured clone makes them ('__proto__' included).
        if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
        else o[k] = v;
      }
      return o;
    }
    default:
      return corrupt(`unknown tag ${tag}`);
  }
}

/** The message in `payload` (a frame without its length), in either encoding. */
function decodePayload(payload: Buffer): unknown {
  if (payload.byteLength > 0 && payload[0] === V8_VERSION_TAG) return v8Deserialize(payload);
  inp = payload;
  at = 0;
  end = payload.byteLength;
  try {
    const v = readValue();
    if (at !== end) corrupt('bytes after the message');
    return v;
  } finally {
    inp = EMPTY;
  }
}
const EMPTY = Buffer.alloc(0);

/**
 * Incremental decoder: feed it chunks as they arrive, it calls `onMessage` for each complete
 * frame, in order. A chunk may hold part of a frame, one frame or many.
 * @throws RangeError from {@link FrameDecoder.push} when a length exceeds the decoder's
 *   `maxBytes` ({@link MAX_FRAME_BYTES} by default; the host reading a sandbox uses less: what
 *   an untrusted process sends must not be able to make the host buffer a gigabyte), or when a
 *   payload is corrupt.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Length of the frame being read, or -1 while its header is incomplete. */
  #need = -1;
  readonly #onMessage: (message: unknown) => void;
  readonly #max: number;

  constructor(onMessage: (message: unknown) => void, maxBytes = MAX_FRAME_BYTES) {
    this.#onMessage = onMessage;
    this.#max = maxBytes;
  }

  push(chunk: Buffer): void {
    // Fast path: nothing buffered and the chunk holds whole frames.
    if (this.#buffered === 0) {
      let off = 0;
      while (chunk.byteLength - off >= 4) {
        const len = chunk.readUInt32LE(off);
        if (len > this.#max) throw new RangeError(`frame of ${len} bytes (at most ${this.#max})`);
        if (chunk.byteLength - off - 4 < len) break;
        const payload = chunk.subarray(off + 4, off + 4 + len);
        off += 4 + len;
        this.#onMessage(decodePayload(payload));
      }
      if (off === chunk.byteLength) return;
      chunk = chunk.subarray(off);
    }
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
    for (;;) {
      if (this.#need === -1) {
        if (this.#buffered < 4) return;
        this.#need = this.#take(4).readUInt32LE(0);
        if (this.#need > this.#max) throw new RangeError(`frame of ${this.#need} bytes (at most ${this.#max})`);
      }
      if (this.#buffered < this.#need) return;
      const payload = this.#take(this.#need);
      this.#need = -1;
      this.#onMessage(decodePayload(payload));
    }
  }

  /** The next `n` buffered bytes (one copy only when they span chunks). */
  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.byteLength >= n) {
      if (first.byteLength === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const copy = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.byteLength, n - off);
      c.copy(copy, off, 0, k);
      off += k;
      if (k === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return copy;
  }
}
