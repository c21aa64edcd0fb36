/**
 * Message frames on a byte stream (the unix socket between the host and a sandbox process):
 * each frame is a 4-byte unsigned length (little-endian) followed by that many bytes of
 * `v8.serialize(message)`: the structured clone algorithm, so a frame carries exactly what
 * `postMessage` carries (arrays, strings, numbers, null, plain objects, Uint8Array/Buffer).
 * A transfer list has no meaning on a stream: its buffers are copied.
 *
 * One difference from `v8.deserialize`, to match `postMessage`: a Buffer arrives as a plain
 * Uint8Array (Buffer#slice shares memory where Uint8Array#slice copies, and the request and
 * response code relies on the copy). Byte arrays are views into the received chunk, not copies.
 */
import { Buffer } from 'node:buffer';
import { DefaultDeserializer, serialize } from 'node:v8';

/** Largest frame accepted by default, in bytes (a longer length is a corrupt stream): 1 GiB. */
export const MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** `v8.deserialize`, with Buffers turned into plain Uint8Arrays over the same bytes. */
class PlainDeserializer extends DefaultDeserializer {
  _readHostObject(): unknown {
    const v = (DefaultDeserializer.prototype as unknown as { _readHostObject(this: DefaultDeserializer): unknown })._readHostObject.call(this);
    return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
  }
}

function deserialize(bytes: Buffer): unknown {
  const d = new PlainDeserializer(bytes);
  d.readHeader();
  return d.readValue();
}

/** One frame for `message`: header and payload in one buffer (one write). */
export function encodeFrame(message: unknown): Buffer {
  const payload = serialize(message);
  const frame = Buffer.allocUnsafe(4 + payload.byteLength);
  frame.writeUInt32LE(payload.byteLength, 0);
  payload.copy(frame, 4);
  return frame;
}

/**
 * Incremental decoder: feed it chunks as they arrive, it calls `onMessage` for each complete
 * frame, in order. A chunk may hold part of a frame, one frame or many.
 * @throws RangeError from {@link FrameDecoder.push} when a length exceeds the decoder's
 *   `maxBytes` ({@link MAX_FRAME_BYTES} by default; the host reading a sandbox uses less: what
 *   an untrusted process sends must not be able to make the host buffer a gigabyte).
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
        this.#onMessage(deserialize(chunk.subarray(off + 4, off + 4 + len)));
        off += 4 + len;
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
      this.#onMessage(deserialize(payload));
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
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.byteLength, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}
