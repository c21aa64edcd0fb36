/**
 * The streamed push of the request-id ABI (`POST /admin/push-response-stream?request_id=N`,
 * docs/abi.md "Streamed responses"): the plugin's HTTP request body is a one-line JSON
 * prelude (status and headers) ending in `\n`, then the response body, sent with chunked
 * transfer encoding. {@link UploadStream} reads that body, unbuffered, straight from the
 * admin listener's IncomingMessage: first the prelude ({@link readPrelude}), then, as the
 * {@link BodyStream} of the client's `WireResponse`, the rest, one chunk per `read()`. The
 * host's response writer calls `read()` again only once the client's socket took the
 * previous chunk, and the plugin's upload is not read in between (Node stops reading a
 * paused socket), so the plugin sends only as fast as the client takes: flat host memory
 * whatever the size of the body.
 *
 * The model is AWS Lambda's Runtime API response streaming (a chunked POST of the response,
 * a JSON prelude with status and headers, an error reported in a trailer); see docs/abi.md
 * for what fezz changed and why.
 */
import type { IncomingMessage } from 'node:http';
import type { BodyStream } from '../wire/stream-channel.js';

/** The trailer by which a plugin fails its stream at the end of the body (Lambda: `Lambda-Runtime-Function-Error-Type`). */
export const STREAM_ERROR_TRAILER = 'fezz-stream-error';

/** How an upload ended, once (`UploadStream.ended`). */
export type UploadEnd =
  /** The plugin's body ended and the host's writer took all of it. */
  | { kind: 'complete' }
  /** The plugin ended its body with a `Fezz-Stream-Error` trailer: the client's connection is reset. */
  | { kind: 'aborted'; message: string }
  /** The plugin's connection broke before the end of its body: the client's connection is reset. */
  | { kind: 'broken'; message: string }
  /** The host's writer cancelled the stream (the client left, a limit fired, no body to send). */
  | { kind: 'cancelled'; reason: string };

/** Why {@link readPrelude} found no usable prelude. */
export class PreludeError extends Error {
  constructor(message: string, readonly kind: 'too-large' | 'no-newline' | 'broken') {
    super(message);
    this.name = 'PreludeError';
  }
}

/**
 * The body of one push-response-stream call, read from its IncomingMessage in paused mode
 * (`req.read()` on `'readable'`), so that nothing is read from the plugin's socket until
 * somebody asks for the next chunk. One read at a time.
 */
export class UploadStream implements BodyStream {
  readonly #req: IncomingMessage;
  /** Bytes put back by {@link unshift} (what followed the prelude's newline). */
  #head: Buffer | null = null;
  #waiter: { resolve: (c: Buffer | null) => void; reject: (e: Error) => void } | null = null;
  #failure: Error | null = null;
  #cancelled: string | null = null;
  #end: UploadEnd | null = null;
  #resolveEnd!: (end: UploadEnd) => void;
  #reads = 0;
  #unreadTimer: NodeJS.Timeout | null = null;
  readonly #onReadable = (): void => this.#pump();
  readonly #onEnd = (): void => this.#pump();
  readonly #onError = (err: Error): void => { this.#fail(err.message || 'connection error'); };
  readonly #onClose = (): void => { if (!this.#req.readableEnded) this.#fail('the connection closed before the end of the body'); };

  /** Resolves once with how the upload ended; never rejects. */
  readonly ended: Promise<UploadEnd>;

  constructor(req: IncomingMessage) {
    this.#req = req;
    this.ended = new Promise((resolve) => { this.#resolveEnd = resolve; });
    req.on('readable', this.#onReadable);
    req.on('end', this.#onEnd);
    req.on('error', this.#onError);
    req.on('close', this.#onClose);
  }

  /** The next chunk of the raw upload (`null` at its end). Rejects when the connection broke. */
  next(): Promise<Buffer | null> {
    const h = this.#head;
    if (h !== null) {
      this.#head = null;
      return Promise.resolve(h);
    }
    if (this.#waiter !== null) return Promise.reject(new Error('UploadStream: one read at a time'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#pump();
    });
  }

  /** Put `chunk` back: the next {@link next} returns it first. */
  unshift(chunk: Buffer): void {
    if (chunk.byteLength > 0) this.#head = this.#head === null ? chunk : Buffer.concat([chunk, this.#head]);
  }

  #pump(): void {
    const w = this.#waiter;
    if (w === null) return;
    if (this.#cancelled !== null) { this.#waiter = null; w.resolve(null); return; }
    if (this.#failure !== null) { this.#waiter = null; w.reject(this.#failure); return; }
    const chunk = this.#req.read() as Buffer | null;
    if (chunk !== null) { this.#waiter = null; w.resolve(chunk); return; }
    if (this.#req.readableEnded) { this.#waiter = null; w.resolve(null); }
    // else: 'readable', 'end', 'error' or 'close' calls again.
  }

  #fail(message: string): void {
    if (this.#failure !== null || this.#end !== null) return;
    this.#failure = new Error(`the plugin's push-response-stream upload failed: ${message}`);
    this.#pump();
  }

  #settle(end: UploadEnd): void {
    if (this.#end !== null) return;
    this.#end = end;
    if (this.#unreadTimer !== null) clearTimeout(this.#unreadTimer);
    this.#resolveEnd(end);
  }

  /**
   * The response body's next chunk, for the host's writer. Resolves `null` at the end of
   * the plugin's body (or once cancelled); rejects when the plugin's connection broke or it
   * sent a `Fezz-Stream-Error` trailer (the writer then resets the client's connection).
   */
  async read(): Promise<Uint8Array | null> {
    this.#reads++;
    if (this.#end !== null) {
      if (this.#end.kind === 'complete' || this.#end.kind === 'cancelled') return null;
      throw new Error(this.#end.message);
    }
    let chunk: Buffer | null;
    try {
      chunk = await this.next();
    } catch (err) {
      const message = (err as Error).message;
      this.#settle({ kind: 'broken', message });
      throw err;
    }
    if (chunk !== null) return chunk;
    if (this.#cancelled !== null) return null;
    const trailer = this.#req.trailers[STREAM_ERROR_TRAILER];
    if (typeof trailer === 'string' && trailer !== '') {
      this.#settle({ kind: 'aborted', message: trailer });
      throw new Error(`the plugin aborted its streamed response: ${trailer}`);
    }
    this.#settle({ kind: 'complete' });
    return null;
  }

  /** The host's writer is done with the stream before its end (`reason`: client, idle, max, ...). Idempotent. */
  cancel(reason: string): void {
    if (this.#end !== null || this.#cancelled !== null) return;
    this.#cancelled = reason;
    this.#settle({ kind: 'cancelled', reason });
    this.#pump();
  }

  /**
   * Cancel with `reason` 'unread' unless the host's writer calls {@link read} (or cancels)
   * within `ms`: a response that is never written (its client left before the prelude) must
   * not leave the plugin's upload hanging.
   */
  armUnreadGuard(ms: number): void {
    if (this.#end !== null || this.#reads > 0) return;
    this.#unreadTimer = setTimeout(() => { if (this.#reads === 0) this.cancel('unread'); }, ms);
    this.#unreadTimer.unref();
  }

  /**
   * Stop reading the upload: the listeners are removed (an 'error' one stays, so a late
   * connection error is not thrown), so the admin listener can discard the rest.
   */
  release(): void {
    const req = this.#req;
    req.off('readable', this.#onReadable);
    req.off('end', this.#onEnd);
    req.off('close', this.#onClose);
    req.off('error', this.#onError);
    req.on('error', ignore);
    if (this.#unreadTimer !== null) clearTimeout(this.#unreadTimer);
  }
}

function ignore(): void { /* a late error of a released upload */ }

/**
 * Read the prelude: the bytes up to the first `\n`, which must come within `max` bytes
 * (the `\n` included). What follows the `\n` is put back into `up`.
 * @returns the prelude's text, without the `\n`.
 * @throws PreludeError `too-large` (no `\n` within `max` bytes), `no-newline` (the body ended
 *   first), `broken` (the connection broke first).
 */
export async function readPrelude(up: UploadStream, max: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for (;;) {
    let chunk: Buffer | null;
    try {
      chunk = await up.next();
    } catch (err) {
      throw new PreludeError((err as Error).message, 'broken');
    }
    if (chunk === null) throw new PreludeError(`the body ended after ${size} bytes without the prelude's terminating newline`, 'no-newline');
    const nl = chunk.indexOf(10);
    if (nl !== -1) {
      if (size + nl + 1 > max) throw new PreludeError(`no newline within ${max} bytes`, 'too-large');
      parts.push(chunk.subarray(0, nl));
      up.unshift(chunk.subarray(nl + 1));
      return Buffer.concat(parts, size + nl).toString('utf8');
    }
    size += chunk.byteLength;
    if (size >= max) throw new PreludeError(`no newline within ${max} bytes`, 'too-large');
    parts.push(chunk);
  }
}
