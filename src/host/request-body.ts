/**
 * A request body read from the socket while the function runs (issue 12): large and chunked
 * uploads reach the function as a stream instead of being buffered whole first. Pull-based:
 * the socket is read only when the consumer asks for the next chunk (Node stops reading the
 * connection once its small buffer is full), so a 1 GiB upload runs in flat host memory, at
 * the pace the function reads it.
 *
 * Limits, as for buffered bodies (body.ts): past `limit` bytes received (a declared length
 * over it is refused before streaming starts: middleware.ts), after `idleMs` without a byte
 * while a read waits, after `maxMs` for the whole body, or when the client leaves mid-body,
 * the stream fails with a {@link BodyLimitError} (413, 408, 499) and `onFail` runs once, so
 * the host can answer at once (413 the moment the limit is crossed) and close the connection.
 */
import type { IncomingMessage } from 'node:http';
import { BodyLimitError } from '../wire/types.js';
import type { BodyStream } from '../wire/stream-channel.js';

/** Bodies with a declared length up to this many bytes are read whole (the one-message path). */
export const STREAM_BODY_THRESHOLD = 1024 * 1024;

/** Whether a body this request announces is streamed rather than read whole. */
export function streamsBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return len === undefined || Number(len) > STREAM_BODY_THRESHOLD;
}

/** The body as a BodyStream; `onFail` gets the error when a limit fires or the client leaves. */
export function requestBodyStream(req: IncomingMessage, limit: number, idleMs: number, maxMs: number, onFail: (err: BodyLimitError) => void): BodyStream & { readonly done: boolean } {
  let size = 0;
  let failed: BodyLimitError | null = null;
  let ended = false;
  let waiter: { resolve: (c: Uint8Array | null) => void; reject: (e: Error) => void } | null = null;

  const fail = (err: BodyLimitError): void => {
    if (failed !== null || ended) return;
    failed = err;
    cleanup();
    req.pause();
    const w = waiter;
    waiter = null;
    w?.reject(err);
    onFail(err);
  };
  // Armed only while a read waits on the client: a function that reads slowly is not a stalled client.
  let timer: NodeJS.Timeout | null = null;
  const onIdle = (): void => fail(new BodyLimitError(`no request body bytes for ${idleMs} ms`, 408));
  // The whole body within maxMs (limits.streamMaxMs): a client trickling bytes cannot hold on forever.
  const total = setTimeout(() => fail(new BodyLimitError(`the request body took longer than ${maxMs} ms`, 408)), maxMs);

  const onReadable = (): void => { if (waiter !== null) pull(); };
  const onEnd = (): void => {
    ended = true;
    cleanup();
    const w = waiter;
    waiter = null;
    w?.resolve(null);
  };
  const onAborted = (): void => fail(new BodyLimitError('the client closed the connection during the body', 499));
  const onError = (): void => fail(new BodyLimitError('the request body failed', 499));
  function cleanup(): void {
    clearTimeout(total);
    if (timer !== null) { clearTimeout(timer); timer = null; }
    req.off('readable', onReadable);
    req.off('end', onEnd);
    req.off('aborted', onAborted);
    req.off('error', onError);
  }
  req.on('readable', onReadable);
  req.on('end', onEnd);
  req.on('aborted', onAborted);
  req.on('error', onError);

  /** Hand the waiter the next buffered chunk, if there is one. */
  function pull(): void {
    const chunk = req.read() as Buffer | null;
    if (chunk === null) { timer ??= setTimeout(onIdle, idleMs); return; } // 'readable' or 'end' comes next
    if (timer !== null) { clearTimeout(timer); timer = null; }
    size += chunk.length;
    if (size > limit) { fail(new BodyLimitError(`request body over ${limit} bytes`, 413)); return; }
    const w = waiter!;
    waiter = null;
    w.resolve(chunk);
  }

  return {
    get done() { return ended; },
    read(): Promise<Uint8Array | null> {
      if (failed !== null) return Promise.reject(failed);
      if (ended) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
        pull();
      });
    },
    cancel(): void {
      // The function does not want the rest: leave it unread; the connection closes after the response.
      if (failed !== null || ended) return;
      cleanup();
      const w = waiter;
      waiter = null;
      w?.resolve(null);
      ended = true;
    },
  };
}
