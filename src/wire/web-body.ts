/**
 * A web `ReadableStream` (a function's response body) as a {@link BodyStream}, and back: how
 * the inline runtime hands a stream to the host's writer, and how a worker reads one to send it
 * as stream messages. Chunks must be bytes (`Uint8Array`, any `ArrayBufferView` or
 * `ArrayBuffer`); a string chunk is encoded as UTF-8 (lenient: Workers refuses it); anything
 * else fails the stream with a TypeError, as in Workers.
 */
import type { BodyStream } from './stream-channel.js';

const encoder = new TextEncoder();

/** A chunk of a function's stream as bytes. @throws TypeError for a chunk that is not bytes or text. */
export function chunkBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === 'string') return encoder.encode(value);
  throw new TypeError(`a response body stream must produce bytes (Uint8Array), got ${value === null ? 'null' : typeof value}`);
}

/**
 * Read `rs` as a BodyStream. `onCancel` runs when the consumer cancels (before the stream's own
 * `cancel()` is called with the reason).
 */
export function bodyStreamOf(rs: ReadableStream<unknown>, onCancel?: (reason: string) => void): BodyStream {
  const reader = rs.getReader();
  let cancelled = false;
  return {
    async read() {
      const r = await reader.read();
      return r.done ? null : chunkBytes(r.value);
    },
    cancel(reason) {
      if (cancelled) return;
      cancelled = true;
      onCancel?.(reason);
      reader.cancel(reason).catch(() => undefined);
    },
  };
}

/**
 * A BodyStream as a web `ReadableStream` (pull-based: a chunk is read from the source only when
 * the reader wants one, so backpressure reaches the producer). Cancelling it cancels the source.
 */
export function readableOf(source: BodyStream): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = await source.read();
      if (chunk === null) controller.close();
      else controller.enqueue(chunk);
    },
    cancel(reason) { source.cancel(reason instanceof Error ? reason.message : String(reason ?? 'cancelled')); },
  }, { highWaterMark: 0 });
}

/** Read a whole BodyStream into one buffer. Rejects as the stream does. */
export async function readAll(source: BodyStream): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (let c = await source.read(); c !== null; c = await source.read()) { parts.push(c); size += c.byteLength; }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.byteLength; }
  return out;
}
