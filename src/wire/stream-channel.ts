/**
 * Streamed bodies across a message boundary, with flow control by credit (issue 12). One
 * stream is a sequence of messages under one id (the request's slot): chunks, then an end or
 * an error; the consumer sends credit back, the producer sends only while it has credit, so
 * neither side buffers more than a window whatever the speeds of the producer and the final
 * consumer. The messages are plain arrays of numbers, strings and Uint8Arrays: they cross a
 * worker `MessagePort` (chunks transferred, not copied) and a framed unix socket to a sandbox
 * process (serialized) alike. Who sends which tags is up to the caller (protocol.ts): a
 * response body flows worker -> host, a request body host -> worker, with the same classes.
 *
 * Contract, for a window of W bytes and chunks of at most {@link MAX_CHUNK_BYTES}:
 * - the producer starts with W bytes of credit and sends a chunk only while its credit is
 *   above 0 (so it may overshoot by one chunk); every chunk costs its length;
 * - the consumer grants the bytes back once its reader has taken them, in grants of at least
 *   W/4 (so a producer is never blocked by the bytes not yet granted: it still has 3/4 of W);
 * - a producer that sends more than W + one chunk unacknowledged has broken the contract (a
 *   sandbox is untrusted): the stream fails and is cancelled.
 */

/** Bytes a producer may have in flight, unacknowledged. */
export const STREAM_WINDOW_BYTES = 256 * 1024;
/** Largest chunk message; larger chunks are split. */
export const MAX_CHUNK_BYTES = 64 * 1024;

/**
 * A body that arrives over time, as the consumer sees it: what the host's response writer
 * reads a streamed response from, whatever runtime produced it.
 */
export interface BodyStream {
  /**
   * The next chunk, or `null` at the end. Rejects when the producer failed mid-way (the
   * response must then be reset, never ended as if complete). One read at a time.
   */
  read(): Promise<Uint8Array | null>;
  /** The consumer is gone (client left, a limit fired): stop the producer. Idempotent. */
  cancel(reason: string): void;
  /**
   * A chunk that is already here, without waiting: the chunk, `null` at the end, or
   * `undefined` when the next one has not arrived (then use {@link read}). Optional: lets a
   * writer send what is queued in one system call.
   */
  tryRead?(): Uint8Array | null | undefined;
}

/** Posts one message of the stream; `transfer` is the chunk's own buffer when there is one. */
export type PostStreamMessage = (message: unknown[], transfer?: ArrayBuffer) => void;

/**
 * The consumer's end of one stream: fed by the caller's message handler ({@link push},
 * {@link end}, {@link fail}), read through {@link BodyStream}. Sends credit with `grant` and
 * a cancel with `cancelRemote`.
 */
export class StreamReceiver implements BodyStream {
  readonly #grant: (bytes: number) => void;
  readonly #cancelRemote: (reason: string) => void;
  readonly #window: number;
  #queue: Uint8Array[] = [];
  /** Bytes received and not granted back (queued + taken by the reader). */
  #unacked = 0;
  /** Bytes the reader took and that were not granted back yet. */
  #owed = 0;
  #done = false;
  #error: Error | null = null;
  #cancelled = false;
  #waiter: { resolve: (c: Uint8Array | null) => void; reject: (e: Error) => void } | null = null;

  constructor(grant: (bytes: number) => void, cancelRemote: (reason: string) => void, window = STREAM_WINDOW_BYTES) {
    this.#grant = grant;
    this.#cancelRemote = cancelRemote;
    this.#window = window;
  }

  /** Whether it ended, failed or was cancelled. */
  get closed(): boolean { return this.#done || this.#cancelled || this.#error !== null; }

  /** A chunk arrived. A producer past its window fails the stream and is cancelled. */
  push(chunk: Uint8Array): void {
    if (this.closed) return;
    this.#unacked += chunk.byteLength;
    if (this.#unacked > this.#window + MAX_CHUNK_BYTES) {
      this.fail(`stream flow control violated: ${this.#unacked} bytes unacknowledged, window ${this.#window}`);
      this.#cancelRemote('flow control violated');
      return;
    }
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      this.#owed += chunk.byteLength;
      w.resolve(chunk);
    } else {
      this.#queue.push(chunk);
    }
  }

  /** The producer finished: reads return what is queued, then null. */
  end(): void {
    if (this.closed) return;
    this.#done = true;
    if (this.#waiter !== null && this.#queue.length === 0) {
      const w = this.#waiter;
      this.#waiter = null;
      w.resolve(null);
    }
  }

  /** The producer failed: queued chunks are dropped and reads reject with `message`. */
  fail(message: string): void {
    if (this.closed) return;
    this.#error = new Error(message);
    this.#queue = [];
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.reject(this.#error);
    }
  }

  read(): Promise<Uint8Array | null> {
    this.#settleCredit();
    if (this.#error !== null) return Promise.reject(this.#error);
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.#owed += next.byteLength;
      return Promise.resolve(next);
    }
    if (this.#done || this.#cancelled) return Promise.resolve(null);
    return new Promise((resolve, reject) => { this.#waiter = { resolve, reject }; });
  }

  /**
   * Grant back what the reader took, once it is worth a message (W/4): what is owed below that
   * leaves the producer at least 3/4 of its window, so it is never blocked by it.
   */
  #settleCredit(): void {
    if (this.#owed === 0 || this.closed) return;
    if (this.#owed >= this.#window / 4) {
      const n = this.#owed;
      this.#owed = 0;
      this.#unacked -= n;
      this.#grant(n);
    }
  }

  tryRead(): Uint8Array | null | undefined {
    if (this.#error !== null) return undefined; // read() rejects with it
    const next = this.#queue.shift();
    if (next !== undefined) {
      this.#owed += next.byteLength;
      this.#settleCredit();
      return next;
    }
    return this.#done || this.#cancelled ? null : undefined;
  }

  cancel(reason: string): void {
    if (this.closed) return;
    this.#cancelled = true;
    this.#queue = [];
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.resolve(null);
    }
    this.#cancelRemote(reason);
  }
}

/** Tags of the three producer messages of one direction (protocol.ts). */
export interface StreamTags {
  /** `[chunk, id, Uint8Array]` */
  chunk: number;
  /** `[end, id]` */
  end: number;
  /** `[error, id, message]` */
  error: number;
}

/**
 * The producer's end of one stream: pumps `pull` (a web stream's reader, a socket's async
 * iterator) into messages while it has credit. {@link credit} and {@link cancel} are fed by
 * the caller's message handler.
 */
export class StreamSender {
  readonly #id: number;
  readonly #post: PostStreamMessage;
  readonly #tags: StreamTags;
  #credit: number;
  #cancelled: string | null = null;
  #wake: (() => void) | null = null;
  #onCancel: ((reason: string) => void) | null = null;

  constructor(id: number, post: PostStreamMessage, tags: StreamTags, window = STREAM_WINDOW_BYTES) {
    this.#id = id;
    this.#post = post;
    this.#tags = tags;
    this.#credit = window;
  }

  /** The consumer took `bytes` more. */
  credit(bytes: number): void {
    if (!(bytes > 0)) return;
    this.#credit += bytes;
    this.#wakeUp();
  }

  /** The consumer is gone: the pump stops and `onCancel` (of {@link run}) runs once. */
  cancel(reason: string): void {
    if (this.#cancelled !== null) return;
    this.#cancelled = reason;
    this.#wakeUp();
    this.#onCancel?.(reason);
  }

  get cancelled(): boolean { return this.#cancelled !== null; }

  #wakeUp(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /**
   * Send everything `pull` yields, then an end message; an error from `pull` becomes an error
   * message. `onCancel` runs if the consumer cancels (release the source there). Resolves
   * when the stream is over either way; never rejects.
   */
  async run(pull: () => Promise<Uint8Array | null>, onCancel: (reason: string) => void): Promise<void> {
    this.#onCancel = onCancel;
    if (this.#cancelled !== null) { onCancel(this.#cancelled); return; }
    try {
      for (;;) {
        while (this.#credit <= 0 && this.#cancelled === null) await new Promise<void>((r) => { this.#wake = r; });
        if (this.#cancelled !== null) return;
        const chunk = await pull();
        if (this.#cancelled !== null) return;
        if (chunk === null) { this.#post([this.#tags.end, this.#id]); return; }
        for (let at = 0; at < chunk.byteLength; at += MAX_CHUNK_BYTES) {
          while (this.#credit <= 0 && this.#cancelled === null) await new Promise<void>((r) => { this.#wake = r; });
          if (this.#cancelled !== null) return;
          // A copy of its own: the transfer must not detach a buffer the source still holds.
          // (Uint8Array's slice, which copies: a Buffer's own slice() is a view.)
          const part = Uint8Array.prototype.slice.call(chunk, at, Math.min(chunk.byteLength, at + MAX_CHUNK_BYTES));
          this.#credit -= part.byteLength;
          this.#post([this.#tags.chunk, this.#id, part], part.buffer as ArrayBuffer);
        }
      }
    } catch (err) {
      if (this.#cancelled !== null) return;
      this.#post([this.#tags.error, this.#id, err instanceof Error ? `${err.name}: ${err.message}` : String(err)]);
    }
  }
}

/**
 * The consumer's side of the credit contract above, for a channel whose messages are pushed
 * to their consumer (dispatched as events, written to a socket) instead of pulled with
 * `read()`: the WebSocket messages of src/websocket/. The same rules as {@link StreamReceiver}:
 * a producer may have `window` bytes unacknowledged plus one message of at most `slack` bytes;
 * the consumer grants bytes back once it took them, in grants of at least window/4 (or all
 * that is owed, when the channel goes quiet: see {@link grant}).
 */
export class CreditLedger {
  readonly window: number;
  readonly #limit: number;
  /** Bytes received and not granted back. */
  #unacked = 0;
  /** Bytes consumed and not granted back yet. */
  #owed = 0;

  /**
   * @param window bytes the producer may have in flight, @default STREAM_WINDOW_BYTES.
   * @param slack the largest message, in bytes: how far past the window the last one may reach.
   */
  constructor(window = STREAM_WINDOW_BYTES, slack = MAX_CHUNK_BYTES) {
    this.window = window;
    this.#limit = window + slack;
  }

  /** Bytes received and not granted back yet. */
  get unacked(): number { return this.#unacked; }

  /** Bytes consumed and not granted back yet. */
  get owed(): number { return this.#owed; }

  /** A message of `bytes` arrived. False when it breaks the contract (more than window + slack unacknowledged). */
  received(bytes: number): boolean {
    this.#unacked += bytes;
    return this.#unacked <= this.#limit;
  }

  /** The consumer took `bytes` of what arrived. */
  consumed(bytes: number): void {
    this.#owed += bytes;
  }

  /**
   * The bytes to grant back now: everything owed once it reaches `min` (by default window/4,
   * so a busy channel sends few credit messages; 1 to flush what is owed when it goes quiet),
   * else 0. What is returned counts as granted.
   */
  grant(min = this.window / 4): number {
    const n = this.#owed;
    if (n === 0 || n < min) return 0;
    this.#owed = 0;
    this.#unacked -= n;
    return n;
  }
}
