/**
 * Writing a streamed response body (issue 12): the status and headers are already written
 * (and flushed, so the client sees them at once); each chunk the {@link BodyStream} yields goes
 * to the socket as it comes, and the next one is read only once the socket took it (`write()`
 * returned true, or after 'drain'): a slow client slows the producer down instead of filling
 * the host's memory. Whatever produces the stream (a worker, a sandbox, an inline function, a
 * plugin's chunked push) is read the same way.
 *
 * How it ends ({@link StreamEnd}):
 * - `complete`: the stream ended; the response is ended (the terminating chunk goes out);
 * - `error`: a read rejected (the function's stream failed mid-way): the connection is reset,
 *   so the client cannot take a truncated body as complete;
 * - `client`: the client left: the stream is cancelled (the function's `cancel()` runs);
 * - `idle`: no progress (no chunk from the producer, or, waiting on the client, no drain and
 *   no byte taken by the kernel) for `idleMs` (`limits.streamIdleMs`); `send` when it was the
 *   client that stalled;
 * - `max`: the body took longer than `maxMs` (`limits.streamMaxMs`).
 * Every end but `complete` cancels the stream and destroys the response.
 */
import type { ServerResponse } from 'node:http';
import type { BodyStream } from '../wire/stream-channel.js';

/** Queued chunks are joined into one write up to this many bytes. */
const COALESCE_BYTES = 256 * 1024;

export type StreamEnd = 'complete' | 'error' | 'client' | 'idle' | 'send' | 'max';

/** Time limits of one streamed body, in ms. */
export interface StreamLimits {
  /** Most time without progress (a chunk read, or a drain), in ms. */
  idleMs: number;
  /** Most time for the whole body, in ms. */
  maxMs: number;
}

/**
 * Pump `stream` into `res` (whose head is written) until it ends; `onEnd` runs once, with the
 * error for `error`.
 */
export function pipeBodyStream(res: ServerResponse, stream: BodyStream, limits: StreamLimits, onEnd: (end: StreamEnd, err?: unknown) => void): void {
  let done = false;
  let waitingOn: 'producer' | 'client' = 'producer';
  const finish = (end: StreamEnd, err?: unknown): void => {
    if (done) return;
    done = true;
    clearTimeout(idle);
    clearTimeout(max);
    res.off('close', onClose);
    res.off('drain', pump);
    if (end === 'complete') {
      res.end();
    } else {
      if (end !== 'error') stream.cancel(end);
      res.destroy();
    }
    onEnd(end, err);
  };
  // A client that takes the bytes slowly still makes progress: the kernel keeps accepting them.
  let sentAtArm = 0;
  const onIdle = (): void => {
    const sent = res.socket?.bytesWritten ?? 0;
    if (waitingOn === 'client' && sent > sentAtArm) { sentAtArm = sent; idle.refresh(); return; }
    finish(waitingOn === 'client' ? 'send' : 'idle');
  };
  const idle = setTimeout(onIdle, limits.idleMs);
  const max = setTimeout(() => finish('max'), limits.maxMs);
  const progress = (): void => { sentAtArm = res.socket?.bytesWritten ?? 0; idle.refresh(); };
  const onClose = (): void => { if (!res.writableFinished) finish('client'); };
  res.on('close', onClose);

  function pump(): void {
    if (done) return;
    waitingOn = 'producer';
    progress();
    stream.read().then((chunk) => {
      if (done) return;
      if (chunk === null) { finish('complete'); return; }
      progress();
      // What else is already queued goes out with it, as one write (one chunk, one system
      // call). Not cork(): on Node 24 a write made while corked never emits 'drain'.
      let out = chunk;
      let ended = false;
      if (stream.tryRead !== undefined) {
        let parts: Uint8Array[] | null = null;
        let size = chunk.byteLength;
        while (size < COALESCE_BYTES) {
          const next = stream.tryRead();
          if (next === undefined) break;
          if (next === null) { ended = true; break; }
          (parts ??= [chunk]).push(next);
          size += next.byteLength;
        }
        if (parts !== null) out = Buffer.concat(parts, size);
      }
      // (An empty chunk is skipped: with chunked framing it would read as the end.)
      const ok = out.byteLength === 0 || res.write(out);
      if (ended) { finish('complete'); return; }
      if (ok) { pump(); return; }
      waitingOn = 'client';
      res.once('drain', pump);
    }, (err: unknown) => finish('error', err));
  }
  pump();
}
