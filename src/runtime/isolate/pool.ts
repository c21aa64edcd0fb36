/**
 * The isolate runtime: a pool of instances for one function version, on the host thread.
 * An instance is a `worker_threads` Worker (isolation `thread`) or a sandbox process under
 * bubblewrap (isolation `sandbox`, src/runtime/sandbox/); the pool sees either through
 * {@link InstanceTransport}, with the same messages (protocol.ts). Instances start on first
 * use (cold start), serve up to `limits.concurrency` requests each, get requests
 * least-loaded first, and are evicted after `idleTtlSeconds` idle (keeping `instances.min`).
 * Past `instances.max` x `concurrency`, requests wait in a bounded FIFO (`limits.maxQueue`),
 * then get 503 + Retry-After.
 *
 * Faults stay inside an instance: a throw is a 500 for that request only; a worker that
 * exits, crashes or runs out of memory fails its in-flight requests (500) and is replaced;
 * a request past `limits.timeoutMs` gets 504, and if the worker's event loop then does not
 * answer a ping within the grace period (a synchronous loop), the worker is terminated and
 * its other in-flight requests get 504 too.
 */
import { Buffer } from 'node:buffer';
import { admitBundle, dropSpare, ensureSpare, startWorker, takeSpare } from './spares.js';
import { NO_GRANTS, type WorkerGrants } from './permissions.js';
import { trimAfterExit } from './memory-trim.js';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errorResponse, errorResponseWithMessage } from '../../wire/error-response.js';
import type { WireResponse } from '../../wire/types.js';
import type { Limits } from '../../manifest/schema.js';
import type { FunctionRuntime, InvokeRequest, RuntimeStats } from '../types.js';
import { EARLY_FLUSH_REQUESTS, EXIT_EXTERNAL_OUT_OF_MEMORY, FromWorker, ToWorker, type InstanceTransport, type RequestMessage, type WorkerLoadData } from './protocol.js';
import { NO_FETCH_HINT } from '../handler/contract.js';
import path from 'node:path';
import { startEgressProxy, type EgressProxy } from '../../egress/proxy.js';
import { EGRESS_SOCKET } from '../../egress/connector.js';
import { StreamReceiver, StreamSender, type BodyStream } from '../../wire/stream-channel.js';
import { admitSandboxBundle, dropSandboxSpare, ensureSandboxSpare, startSandbox, takeSandboxSpare } from '../sandbox/spares.js';
import { SocketBook } from '../../websocket/book.js';
import { HostSocketEnd } from '../../websocket/host-end.js';
import { CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR } from '../../wire/websocket.js';


/** What a pool needs to know about its function. */
export interface IsolatePoolOptions {
  /** `id@version`, used in logs and error messages. */
  fnKey: string;
  /** file:// URL of the bundled module. */
  moduleUrl: string;
  env: Record<string, string>;
  handlerNames: string[];
  /**
   * Whether the module must have a default `fetch` handler. False for a function with cron
   * triggers (a scheduled-only module, as a Worker may be): an HTTP request for its default
   * handler then gets 500 FEZZ_ERR_HANDLER_MISSING. @default true
   */
  requireFetch?: boolean;
  limits: Limits;
  instances: { min: number; max: number };
  /** Idle TTL in ms. */
  idleTtlMs: number;
  logger: Logger;
  /** Put handler messages and stacks in 500 bodies. */
  dev: boolean;  /** Deadline for an instance to load the function, in ms, whether or not a request waits. */
  startTimeoutMs: number;
  /** What its workers may reach beyond its bundle (the manifest's `permissions`). @default none */
  grants?: WorkerGrants;
  /** Where its instances run: worker threads, or sandbox processes (bwrap). @default 'thread' */
  isolation?: 'thread' | 'sandbox';
  /**
   * `permissions.outbound`: a sandbox instance of a function with any gets an egress proxy of
   * its own (src/egress/), its only way out. @default []
   */
  outbound?: readonly string[];
}

const enum State { Starting, Ready, Stopping, Dead }

interface Task {
  id: number;
  msg: RequestMessage;
  transfer: ArrayBuffer[] | undefined;
  /** performance.now() ms after which the request gets 504. */
  deadline: number;
  resolve: (res: WireResponse) => void;
  requestId: string;
  /** The instance running it, once sent; null while queued. */
  inst: Instance | null;
  /** Its client left while it was queued: skipped when dequeued. */
  cancelled: boolean;
  /** The request body the host streams to the instance (WireRequest.bodyStream), or undefined. */
  body: BodyStream | undefined;
  /** Sends `body` once the task is on an instance. */
  bodySender: StreamSender | null;
}

class Instance {
  readonly seq: number;
  /** Its worker thread or sandbox process. */
  readonly worker: InstanceTransport;
  /** A sandbox's egress proxy (closed when the instance exits), or null. */
  egress: Promise<EgressProxy | null> | null = null;
  state = State.Starting;
  inflight = 0;
  readonly pending = new Map<number, Task>();
  /** Response bodies it is streaming (each holds its request's slot until it ends). */
  readonly streams = new Map<number, StreamReceiver>();
  /** Request bodies the host is streaming to it, by task id. */
  readonly bodies = new Map<number, StreamSender>();
  /** Its open WebSockets, by the id of the upgrade request each came from (they keep it from eviction). */
  readonly sockets = new Map<number, HostSocketEnd>();
  lastActive: number;
  readonly startedAt: number;
  timer: NodeJS.Timeout | null = null;
  killTimer: NodeJS.Timeout | null = null;
  /** Fires `startTimeoutMs` after the spawn unless the module loaded (Ready) first. */
  startTimer: NodeJS.Timeout | null = null;
  lastError: (Error & { code?: string }) | null = null;
  /** Why the pool stopped this instance on purpose, if it did. */
  stopReason: 'unresponsive' | 'evicted' | 'closed' | 'load-error' | 'out-of-memory' | null = null;
  onDrained: (() => void) | null = null;
  /** Request (and stream credit) messages waiting for this turn's postMessage (see protocol.ts "Batching"). */
  outbox: unknown[][] = [];
  outTransfer: ArrayBuffer[] = [];
  flushScheduled = false;
  constructor(seq: number, worker: InstanceTransport, now: number) {
    this.seq = seq;
    this.worker = worker;
    this.lastActive = now;
    this.startedAt = now;
  }
}

const START_BACKOFF_MIN_MS = 1000;

// hot path -- change with care
/**
 * `[Response, id, status, headers, body, statusText?]` with a status 200-599, string headers
 * in pairs, a string, bytes or null body and an optional status text; or the network error
 * (`Response.error()`): status 0, no headers, null body.
 */
function wellFormed(m: unknown[]): boolean {
  const body = m[4];
  if (m[2] === 0) return body === null && Array.isArray(m[3]) && m[3].length === 0 && m.length === 5;
  return wellFormedHead(m, 5) && (body === null || typeof body === 'string' || body instanceof Uint8Array);
}

/** Longest status text passed on, in UTF-16 units (a reason phrase is a few words). */
const MAX_STATUS_TEXT = 512;

/** `[_, id, status, headers, ...]` with a status 200-599, string headers in pairs, and at `textAt` nothing or a status text. */
function wellFormedHead(m: unknown[], textAt: number): boolean {
  const status = m[2];
  const headers = m[3];
  if (typeof status !== 'number' || !(status >= 200 && status <= 599) || (status | 0) !== status) return false;
  if (!Array.isArray(headers) || (headers.length & 1) !== 0) return false;
  for (let i = 0; i < headers.length; i++) if (typeof headers[i] !== 'string') return false;
  if (m.length > textAt) {
    const text = m[textAt];
    if (m.length > textAt + 1 || typeof text !== 'string' || text.length > MAX_STATUS_TEXT) return false;
  }
  return true;
}

/**
 * A response from a well-formed Response message, with its status text when the instance sent
 * one. Status 0 is a network error (`Response.error()`): the host resets the client's connection.
 */
function wireOf(status: number, headers: string[], body: string | Uint8Array | null, text: unknown): WireResponse {
  return text === undefined ? { status, headers, body } : { status, headers, body, statusText: text as string };
}

const BODY_TAGS = { chunk: ToWorker.BodyChunk, end: ToWorker.BodyEnd, error: ToWorker.BodyError };

/** Post an instance's queued requests in one message (see protocol.ts "Batching"). */
function flushInstance(inst: Instance): void {
  inst.flushScheduled = false;
  const batch = inst.outbox;
  if (batch.length === 0) return;
  const transfer = inst.outTransfer;
  inst.outbox = [];
  inst.outTransfer = [];
  if (inst.state === State.Dead) return;
  if (batch.length === 1) inst.worker.postMessage(batch[0], transfer);
  else inst.worker.postMessage([ToWorker.Batch, batch], transfer);
}

/** A per-request message (stream credit) for this turn's batch. */
function queueMessage(inst: Instance, msg: unknown[]): void {
  inst.outbox.push(msg);
  if (!inst.flushScheduled) { inst.flushScheduled = true; setImmediate(flushInstance, inst); }
}

/** A control message: after whatever is queued for the instance. */
function postDirect(inst: Instance, msg: unknown[]): void {
  flushInstance(inst);
  inst.worker.postMessage(msg);
}
const START_BACKOFF_MAX_MS = 30_000;
const RETRY_AFTER = ['retry-after', '1'];

export class IsolatePool implements FunctionRuntime {
  readonly #o: IsolatePoolOptions;
  readonly #grants: WorkerGrants;
  readonly #sandbox: boolean;
  readonly #loadData: WorkerLoadData;
  /** Live instances (Starting or Ready). */
  #instances: Instance[] = [];
  #seq = 0;
  #taskSeq = 0;
  // FIFO of waiting tasks: array + head index, compacted now and then.
  #queue: Task[] = [];
  #qHead = 0;
  #queueTimer: NodeJS.Timeout | null = null;
  /** Queued tasks whose client left (still in #queue until dequeued). */
  #cancelledQueued = 0;
  #sweepTimer: NodeJS.Timeout | null = null;
  #closed = false;
  #startFailure: { code: string; message: string; until: number; backoff: number } | null = null;
  #stats = { coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0, uncaughtErrors: 0 };
  #lastError: string | null = null;
  #stopping = new Set<Instance>();
  #warmWaiters: Array<() => void> = [];
  #readyWaiters: Array<(err: string | null) => void> = [];

  /** Its open WebSockets (src/websocket/), capped at `limits.maxWebSockets`. */
  readonly webSockets: SocketBook;

  constructor(options: IsolatePoolOptions) {
    this.#o = options;
    this.webSockets = new SocketBook(options.limits.maxWebSockets);
    this.#grants = options.grants ?? NO_GRANTS;
    this.#sandbox = options.isolation === 'sandbox';
    if (this.#sandbox) ensureSandboxSpare(options.limits.memoryMb, this.#grants.read);
    else ensureSpare(options.limits.memoryMb, this.#grants);
    this.#loadData = {
      fnKey: options.fnKey,
      moduleUrl: options.moduleUrl,
      env: options.env,
      handlerNames: options.handlerNames,
      requireFetch: options.requireFetch ?? true,
      memoryMb: options.limits.memoryMb,
      webSocketMaxMessageBytes: options.limits.webSocketMaxMessageBytes,
    };
  }

  /** Request bodies reach the instance as BodyChunk messages under credit. */
  readonly streamsRequestBody = true;

  // hot path -- change with care
  invoke(req: InvokeRequest): Promise<WireResponse> {
    if (this.#closed) return Promise.resolve(errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
    const now = performance.now();
    const sf = this.#startFailure;
    if (sf !== null && now < sf.until && this.#instances.length === 0) {
      return Promise.resolve(this.#startFailedResponse(sf.message));
    }
    const w = req.wire;
    let transfer: ArrayBuffer[] | undefined;
    let body = w.body;
    if (body !== null && !this.#sandbox) {
      // (A sandbox's frame copies the bytes anyway: framing.ts, no transfer there.)
      // Move the bytes instead of cloning them (a clone copies twice, and copies a pooled
      // view's whole 8 KiB slab): one copy into a buffer of exactly this size, not zero-filled
      // first, whose ArrayBuffer is transferred. The host's own bytes stay intact for any
      // middleware that looks at them after the function ran.
      const copy = Buffer.allocUnsafeSlow(body.byteLength);
      copy.set(body);
      body = copy;
      transfer = [copy.buffer as ArrayBuffer];
    }
    const id = ++this.#taskSeq;
    const msg: RequestMessage = [ToWorker.Request, id, w.method, w.url, w.headers, body, req.handler, req.params, req.requestId];
    if (w.bodyStream !== undefined) msg.push(true);
    if (w.upgrade !== undefined) { if (msg.length === 9) msg.push(undefined); msg.push(true); }
    return new Promise<WireResponse>((resolve) => {
      const task: Task = { id, msg, transfer, deadline: now + this.#o.limits.timeoutMs, resolve, requestId: req.requestId, inst: null, cancelled: false, body: w.bodyStream, bodySender: null };
      req.slot = task;
      const inst = this.#pick();
      if (inst !== null) this.#send(inst, task);
      else if (this.#queue.length - this.#qHead - this.#cancelledQueued < this.#o.limits.maxQueue) this.#enqueue(task);
      else resolve(errorResponse('FEZZ_ERR_QUEUE_FULL', [this.#o.fnKey, this.#o.limits.maxQueue], RETRY_AFTER));
    });
  }

  /** Least-loaded warm instance with a free slot; starts one when none is idle and max allows. */
  #pick(): Instance | null {
    const conc = this.#o.limits.concurrency;
    let ready: Instance | null = null;
    let starting: Instance | null = null;
    let idle = false;
    const list = this.#instances;
    for (let i = 0; i < list.length; i++) {
      const inst = list[i]!;
      // A suspect instance (timed out, ping unanswered yet) gets no new work.
      if (inst.killTimer !== null) continue;
      const n = inst.inflight;
      if (n === 0) idle = true;
      if (n >= conc) continue;
      if (inst.state === State.Ready) { if (ready === null || n < ready.inflight) ready = inst; }
      else if (starting === null || n < starting.inflight) starting = inst;
    }
    if (!idle && list.length < this.#o.instances.max && this.#canStart()) {
      const fresh = this.#spawn();
      if (ready === null) return fresh;
    }
    return ready ?? starting;
  }

  #canStart(): boolean {
    const sf = this.#startFailure;
    return sf === null || performance.now() >= sf.until;
  }

  /** The client left: drop the task from the queue, or abort it in its worker and free its slot. */
  cancel(req: InvokeRequest): void {
    const task = req.slot as Task | null;
    if (task === null || task.cancelled) return;
    const gone = (): WireResponse => errorResponse('FEZZ_ERR_CLIENT_GONE', [this.#o.fnKey]);
    const inst = task.inst;
    if (inst === null) {
      // Still queued (lazily removed: #dequeue skips it, and it no longer counts against maxQueue).
      task.cancelled = true;
      this.#cancelledQueued++;
      task.resolve(gone());
      return;
    }
    if (inst.pending.get(task.id) !== task) return; // answered, timed out or failed already
    task.cancelled = true;
    inst.pending.delete(task.id);
    if (inst.state !== State.Dead) postDirect(inst, [ToWorker.Abort, task.id, 'client']);
    task.resolve(gone());
    this.#release(inst, task.id);
  }

  #send(inst: Instance, task: Task): void {
    task.inst = inst;
    inst.inflight++;
    inst.pending.set(task.id, task);
    inst.outbox.push(task.msg);
    if (task.transfer !== undefined) inst.outTransfer.push(...task.transfer);
    if (inst.outbox.length >= EARLY_FLUSH_REQUESTS) flushInstance(inst);
    else if (!inst.flushScheduled) { inst.flushScheduled = true; setImmediate(flushInstance, inst); }
    if (inst.timer === null) inst.timer = setTimeout(this.#onInstanceTimer, this.#o.limits.timeoutMs, inst);
    if (task.body !== undefined) this.#sendBody(inst, task, task.body);
  }

  /** Stream `body` to `inst` as BodyChunk messages, after the Request message, as credit allows. */
  #sendBody(inst: Instance, task: Task, body: BodyStream): void {
    const sender = new StreamSender(task.id, (m, t) => {
      if (inst.state === State.Dead) return;
      flushInstance(inst); // the Request message first
      inst.worker.postMessage(m, t !== undefined ? [t] : undefined);
    }, BODY_TAGS);
    task.bodySender = sender;
    inst.bodies.set(task.id, sender);
    void sender.run(() => body.read(), (reason) => body.cancel(reason)).finally(() => {
      if (inst.bodies.get(task.id) === sender) inst.bodies.delete(task.id);
    });
  }

  #spawn(): Instance {
    const o = this.#o;
    // A pre-started blank instance makes the cold start just the import of the bundle.
    // It reads only its own inbox: the bundle is linked there first.
    let worker: InstanceTransport;
    let moduleUrl: string;
    let egress: Promise<EgressProxy | null> | null = null;
    if (this.#sandbox) {
      const proc = takeSandboxSpare(o.limits.memoryMb, this.#grants.read) ?? startSandbox(o.limits.memoryMb, this.#grants.read);
      moduleUrl = admitSandboxBundle(proc, o.moduleUrl);
      worker = proc;
      const outbound = o.outbound ?? [];
      if (outbound.length > 0) {
        // The sandbox reaches it as /fn/egress.sock (its inbox is bound at /fn, readable by its uid alone).
        egress = startEgressProxy({ socketPath: path.join(proc.inbox, EGRESS_SOCKET), mode: 0o666, outbound, fnKey: o.fnKey, logger: o.logger })
          .catch((err: unknown) => { o.logger.error({ fn: o.fnKey, err }, 'egress proxy could not start: this instance has no outbound network'); return null; });
      }
    } else {
      const w = takeSpare(o.limits.memoryMb, this.#grants) ?? startWorker(o.limits.memoryMb, this.#grants);
      moduleUrl = admitBundle(w, o.moduleUrl);
      worker = w;
    }
    const load = [ToWorker.Load, { ...this.#loadData, moduleUrl } satisfies WorkerLoadData];
    // With an egress proxy, Load goes once it listens (requests sent meanwhile wait in the instance for Load).
    if (egress === null) worker.postMessage(load);
    else void egress.then(() => worker.postMessage(load));
    const inst = new Instance(++this.#seq, worker, performance.now());
    inst.egress = egress;
    this.#instances.push(inst);
    worker.on('message', (m: unknown[]) => this.#onMessage(inst, m));
    worker.on('error', (err: Error) => { inst.lastError = err; });
    worker.on('exit', (code) => this.#onExit(inst, code));
    // The start has a deadline of its own, whether or not a request waits: a top level that
    // never settles (or loops) must not hold a reload, a deploy or the start-up forever.
    inst.startTimer = setTimeout(this.#onStartTimeout, o.startTimeoutMs, inst);
    this.#ensureSweep();
    return inst;
  }

  // hot path -- change with care
  #onMessage(inst: Instance, m: unknown[]): void {
    switch (m[0] as FromWorker) {
      case FromWorker.Batch:
        for (const one of m[1] as unknown[][]) this.#onMessage(inst, one);
        return;
      case FromWorker.Response: {
        const task = inst.pending.get(m[1] as number);
        if (task === undefined) return; // timed out already
        inst.pending.delete(task.id);
        // An instance (a sandbox above all) is not trusted to send a well-formed response.
        if (!wellFormed(m)) {
          this.#o.logger.error({ fn: this.#o.fnKey, requestId: task.requestId, instance: inst.seq }, 'instance sent a malformed response message');
          task.resolve(errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, 'a malformed response message from its instance']));
        } else {
          task.resolve(wireOf(m[2] as number, m[3] as string[], m[4] as string | Uint8Array | null, m[5]));
        }
        this.#release(inst, task.id);
        return;
      }
      case FromWorker.Error: {
        const task = inst.pending.get(m[1] as number);
        if (task === undefined) return;
        inst.pending.delete(task.id);
        const code = m[2] as string;
        const message = m[3] as string;
        this.#o.logger.error({ fn: this.#o.fnKey, requestId: task.requestId, code, err: { message, stack: m[4] } }, 'handler failed');
        const shown = this.#o.dev ? `Function ${this.#o.fnKey} failed: ${(m[4] as string) || message}` : `Function ${this.#o.fnKey} failed`;
        if (code === 'FEZZ_ERR_INSTANCE_OUT_OF_MEMORY') {
          // The worker is exiting (ArrayBuffer memory over the limit): take it out of rotation
          // now, so nothing new is sent to it, fail what it still had, and replace it.
          const oom = () => errorResponse('FEZZ_ERR_INSTANCE_OUT_OF_MEMORY', [this.#o.fnKey, this.#o.limits.memoryMb]);
          task.resolve(oom());
          this.#stats.crashes++;
          this.#lastError = message;
          this.#stop(inst, 'out-of-memory');
          this.#failAll(inst, oom);
          this.#refill();
          return;
        } else if (code === 'FEZZ_ERR_HANDLER_BAD_RESPONSE') {
          task.resolve(errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, message]));
        } else if (code === 'FEZZ_ERR_HANDLER_MISSING') {
          task.resolve(errorResponse('FEZZ_ERR_HANDLER_MISSING', [this.#o.fnKey, 'fetch', NO_FETCH_HINT]));
        } else {
          task.resolve(errorResponseWithMessage(500, 'FEZZ_ERR_HANDLER_THREW', shown));
        }
        this.#release(inst, task.id);
        return;
      }
      case FromWorker.StreamHead: {
        const task = inst.pending.get(m[1] as number);
        if (task === undefined) return; // timed out already (the worker's stream is cancelled below)
        inst.pending.delete(task.id);
        if (!wellFormedHead(m, 4)) {
          this.#o.logger.error({ fn: this.#o.fnKey, requestId: task.requestId, instance: inst.seq }, 'instance sent a malformed response message');
          task.resolve(errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, 'a malformed response message from its instance']));
          postDirect(inst, [ToWorker.StreamCancel, task.id, 'malformed']);
          this.#release(inst, task.id);
          return;
        }
        // The slot stays taken while the body streams: the function is still working.
        const id = task.id;
        const done = (): void => {
          if (inst.streams.get(id) !== receiver) return;
          inst.streams.delete(id);
          this.#release(inst, id);
        };
        const receiver = new StreamReceiver(
          (n) => { if (inst.state !== State.Dead) queueMessage(inst, [ToWorker.StreamCredit, id, n]); },
          (reason) => { if (inst.state !== State.Dead) postDirect(inst, [ToWorker.StreamCancel, id, reason]); done(); },
        );
        inst.streams.set(id, receiver);
        const head: WireResponse = { status: m[2] as number, headers: m[3] as string[], body: null, stream: receiver };
        if (m[4] !== undefined) head.statusText = m[4] as string;
        task.resolve(head);
        return;
      }
      case FromWorker.StreamChunk: {
        const r = inst.streams.get(m[1] as number);
        if (r === undefined) return;
        if (m[2] instanceof Uint8Array) r.push(m[2]);
        else { r.fail('a malformed stream chunk from its instance'); postDirect(inst, [ToWorker.StreamCancel, m[1], 'malformed']); }
        if (r.closed) this.#endStream(inst, m[1] as number);
        return;
      }
      case FromWorker.StreamEnd:
        inst.streams.get(m[1] as number)?.end();
        this.#endStream(inst, m[1] as number);
        return;
      case FromWorker.StreamError: {
        const r = inst.streams.get(m[1] as number);
        if (r === undefined) return;
        // The host's writer logs it with the request id when its read rejects.
        r.fail(String(m[2]));
        this.#endStream(inst, m[1] as number);
        return;
      }
      case FromWorker.BodyCredit:
        inst.bodies.get(m[1] as number)?.credit(m[2] as number);
        return;
      case FromWorker.WsAccept:
        this.#acceptSocket(inst, m);
        return;
      case FromWorker.WsMessage:
      case FromWorker.WsClose:
      case FromWorker.WsCredit:
        inst.sockets.get(m[1] as number)?.fromFunction(m);
        return;
      case FromWorker.BodyCancel:
        inst.bodies.get(m[1] as number)?.cancel(String(m[2]));
        return;
      case FromWorker.Pong:
        if (inst.killTimer !== null) {
          clearTimeout(inst.killTimer);
          inst.killTimer = null;
          this.#refill(); // it is healthy: give it what queued meanwhile
        }
        return;
      case FromWorker.Ready: {
        if (inst.state !== State.Starting) return;
        inst.state = State.Ready;
        if (inst.startTimer !== null) { clearTimeout(inst.startTimer); inst.startTimer = null; }
        this.#startFailure = null;
        this.#stats.coldStarts++;
        const now = performance.now();
        // Requests that waited for this cold start get their full timeout from now.
        for (const task of inst.pending.values()) task.deadline = now + this.#o.limits.timeoutMs;
        for (const w of this.#readyWaiters.splice(0)) w(null);
        const ms = now - inst.startedAt;
        this.#o.logger.debug({ fn: this.#o.fnKey, instance: inst.seq, coldStartMs: Math.round(ms * 10) / 10 }, 'instance ready');
        if (this.#warmWaiters.length > 0 && this.#instances.every((i) => i.state !== State.Starting)) this.#flushWarmWaiters();
        return;
      }
      case FromWorker.LoadError:
        this.#startFailed(inst, m[1] as string, m[2] as string, m[3] as string);
        return;
      case FromWorker.Drained:
        inst.onDrained?.();
        return;
      case FromWorker.Uncaught: {
        this.#stats.uncaughtErrors++;
        const requestId = m[2] as string | null;
        this.#o.logger.error({ fn: this.#o.fnKey, instance: inst.seq, requestId: requestId ?? undefined, kind: m[1], err: { message: m[3], stack: m[4] } },
          `uncaught error in the function (${m[1] as string}); the instance keeps serving`);
        return;
      }
      case FromWorker.Log: {
        const level = m[1] as 'info' | 'debug' | 'warn' | 'error';
        const requestId = m[3] as string | null;
        this.#o.logger[level](requestId === null ? { fn: this.#o.fnKey, stream: 'console' } : { fn: this.#o.fnKey, requestId, stream: 'console' }, m[2] as string);
        return;
      }
    }
  }

  /**
   * `[WsAccept, id, headers]`: upgrade request `id` was answered 101 with a WebSocket. Its
   * slot is free; the socket lives on this instance until it closes (or the instance stops).
   */
  #acceptSocket(inst: Instance, m: unknown[]): void {
    const id = m[1] as number;
    const task = inst.pending.get(id);
    if (task === undefined) {
      // Timed out or its client left meanwhile: the function's side closes at once.
      if (typeof id === 'number') queueMessage(inst, [ToWorker.WsClose, id, CLOSE_ABNORMAL, 'the upgrade request was cancelled']);
      return;
    }
    inst.pending.delete(id);
    const headers = m[2];
    if (task.msg[10] !== true || m.length !== 3 || !wellFormedHead([0, id, 200, headers], 4)) {
      this.#o.logger.error({ fn: this.#o.fnKey, requestId: task.requestId, instance: inst.seq }, 'instance sent a malformed WebSocket accept');
      queueMessage(inst, [ToWorker.WsClose, id, CLOSE_INTERNAL_ERROR, 'malformed']);
      task.resolve(errorResponse('FEZZ_ERR_HANDLER_BAD_RESPONSE', [this.#o.fnKey, 'a malformed WebSocket accept from its instance']));
      this.#release(inst, id);
      return;
    }
    const end = new HostSocketEnd({
      id,
      maxMessageBytes: this.#o.limits.webSocketMaxMessageBytes,
      post: (msg, transfer) => {
        if (inst.state === State.Dead) return;
        inst.outbox.push(msg);
        if (transfer !== undefined && !this.#sandbox) inst.outTransfer.push(transfer);
        if (!inst.flushScheduled) { inst.flushScheduled = true; setImmediate(flushInstance, inst); }
      },
      onDone: (e) => {
        if (inst.sockets.get(id) === e) inst.sockets.delete(id);
        inst.lastActive = performance.now();
      },
      onViolation: (_e, what) => {
        this.#o.logger.error({ fn: this.#o.fnKey, requestId: task.requestId, instance: inst.seq }, `WebSocket closed with 1011: its instance sent ${what}`);
      },
    });
    inst.sockets.set(id, end);
    task.resolve({ status: 101, headers: headers as string[], body: null, webSocket: end });
    this.#release(inst, id);
  }

  #onStartTimeout = (inst: Instance): void => {
    inst.startTimer = null;
    if (inst.state !== State.Starting) return;
    this.#startFailed(inst, 'FEZZ_ERR_INSTANCE_START_FAILED', `its module did not finish loading within ${this.#o.startTimeoutMs} ms (a top-level await that never settles, or a loop?)`, '');
  };

  /** The instance could not load its module: fail what waits on it, back off before retrying. */
  #startFailed(inst: Instance, code: string, message: string, stack: string): void {
    this.#lastError = message;
    const prev = this.#startFailure?.backoff ?? 0;
    const backoff = Math.min(START_BACKOFF_MAX_MS, prev === 0 ? START_BACKOFF_MIN_MS : prev * 2);
    this.#startFailure = { code, message, until: performance.now() + backoff, backoff };
    this.#o.logger.error({ fn: this.#o.fnKey, code, err: { message, stack }, retryInMs: backoff }, 'function failed to start');
    this.#stop(inst, 'load-error');
    this.#failAll(inst, () => this.#startFailedResponse(message));
    // Whatever waited in the queue would only wait for an instance that cannot start.
    this.#drainQueue(() => this.#startFailedResponse(message));
    if (this.#warmWaiters.length > 0) this.#flushWarmWaiters();
    for (const w of this.#readyWaiters.splice(0)) w(message);
  }

  #startFailedResponse(message: string): WireResponse {
    return this.#o.dev
      ? errorResponse('FEZZ_ERR_INSTANCE_START_FAILED', [this.#o.fnKey, message])
      : errorResponse('FEZZ_ERR_INSTANCE_START_FAILED', [this.#o.fnKey, 'see the host log']);
  }

  /** The instance finished producing stream `id` (ended, failed or malformed): its slot is free. */
  #endStream(inst: Instance, id: number): void {
    if (!inst.streams.delete(id)) return;
    this.#release(inst, id);
  }

  /**
   * A slot on `inst` is free (task `id` is done): stop streaming its request body, and hand the
   * slot the oldest queued task, if any.
   */
  #release(inst: Instance, id?: number): void {
    if (id !== undefined && inst.bodies.size > 0) {
      const body = inst.bodies.get(id);
      if (body !== undefined) { inst.bodies.delete(id); body.cancel('answered'); }
    }
    inst.inflight--;
    inst.lastActive = performance.now();
    if (this.#qHead < this.#queue.length && inst.state !== State.Dead && inst.state !== State.Stopping) {
      const task = this.#dequeue();
      if (task !== undefined) this.#send(inst, task);
    }
  }

  #enqueue(task: Task): void {
    this.#queue.push(task);
    if (this.#queueTimer === null) this.#queueTimer = setTimeout(this.#onQueueTimer, this.#o.limits.timeoutMs);
  }

  /** The oldest queued task whose client is still there. */
  #dequeue(): Task | undefined {
    for (;;) {
      if (this.#qHead >= this.#queue.length) return undefined;
      const task = this.#queue[this.#qHead]!;
      this.#queue[this.#qHead++] = undefined as unknown as Task;
      if (this.#qHead === this.#queue.length) { this.#queue = []; this.#qHead = 0; }
      else if (this.#qHead > 1024 && this.#qHead * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#qHead);
        this.#qHead = 0;
      }
      if (!task.cancelled) return task;
      this.#cancelledQueued--;
    }
  }

  #drainQueue(make: () => WireResponse): void {
    for (let t = this.#dequeue(); t !== undefined; t = this.#dequeue()) t.resolve(make());
  }

  /** Queued tasks share one timeout, so deadlines grow along the FIFO: expire from the head. */
  #onQueueTimer = (): void => {
    this.#queueTimer = null;
    const now = performance.now();
    while (this.#qHead < this.#queue.length && this.#queue[this.#qHead]!.deadline <= now) {
      const task = this.#dequeue();
      if (task === undefined) break;
      this.#stats.timeouts++;
      task.resolve(errorResponse('FEZZ_ERR_HANDLER_TIMEOUT', [this.#o.fnKey, this.#o.limits.timeoutMs]));
    }
    if (this.#qHead < this.#queue.length) {
      this.#queueTimer = setTimeout(this.#onQueueTimer, Math.max(1, this.#queue[this.#qHead]!.deadline - now));
    }
  };

  /**
   * One timer per instance instead of one per request: it fires at the earliest deadline,
   * times out what has expired and re-arms for the next one.
   */
  #onInstanceTimer = (inst: Instance): void => {
    // inst.timer stays set while we run, so #send (via #release) does not arm a second one.
    if (inst.state === State.Dead) { inst.timer = null; return; }
    const now = performance.now();
    if (inst.state === State.Starting) {
      // The timeout counts from when the handler can run; a start that hangs is a start
      // failure, decided by the instance's start timer.
      inst.timer = setTimeout(this.#onInstanceTimer, this.#o.limits.timeoutMs, inst);
      return;
    }
    let next = Infinity;
    let expired = false;
    for (const task of inst.pending.values()) {
      if (task.deadline <= now) {
        inst.pending.delete(task.id);
        expired = true;
        this.#stats.timeouts++;
        postDirect(inst, [ToWorker.Abort, task.id]);
        task.resolve(errorResponse('FEZZ_ERR_HANDLER_TIMEOUT', [this.#o.fnKey, this.#o.limits.timeoutMs]));
        this.#release(inst, task.id);
      } else if (task.deadline < next) next = task.deadline;
    }
    if (expired && inst.killTimer === null) {
      // A request ran out of time. If the event loop is stuck in synchronous code, the
      // ping goes unanswered and the instance is replaced.
      const grace = Math.max(100, Math.min(this.#o.limits.timeoutMs, 5000));
      inst.killTimer = setTimeout(() => this.#unresponsive(inst), grace);
      postDirect(inst, [ToWorker.Ping]);
    }
    inst.timer = next !== Infinity
      ? setTimeout(this.#onInstanceTimer, Math.max(1, next - now), inst)
      : null;
  };

  #unresponsive(inst: Instance): void {
    inst.killTimer = null;
    if (inst.state === State.Dead) return;
    this.#stats.crashes++;
    this.#lastError = `instance unresponsive for ${this.#o.limits.timeoutMs} ms (synchronous loop?)`;
    this.#o.logger.error({ fn: this.#o.fnKey, instance: inst.seq }, 'instance unresponsive after a timeout; terminating it');
    this.#stop(inst, 'unresponsive');
    this.#failAll(inst, () => errorResponse('FEZZ_ERR_HANDLER_TIMEOUT', [this.#o.fnKey, this.#o.limits.timeoutMs]));
    this.#refill();
  }

  #onExit(inst: Instance, code: number): void {
    if (inst.egress !== null) void inst.egress.then((p) => p?.close());
    const wasStarting = inst.state === State.Starting;
    const expected = inst.stopReason !== null;
    inst.state = State.Dead;
    trimAfterExit();
    this.#remove(inst);
    this.#stopping.delete(inst);
    if (inst.timer !== null) { clearTimeout(inst.timer); inst.timer = null; }
    if (inst.killTimer !== null) { clearTimeout(inst.killTimer); inst.killTimer = null; }
    if (inst.startTimer !== null) { clearTimeout(inst.startTimer); inst.startTimer = null; }
    inst.onDrained?.();
    if (expected) return;
    this.#stats.crashes++;
    const err = inst.lastError;
    const oom = err?.code === 'ERR_WORKER_OUT_OF_MEMORY' || code === EXIT_EXTERNAL_OUT_OF_MEMORY;
    const why = oom ? `out of memory (limit ${this.#o.limits.memoryMb} MB)` : err ? `${err.name}: ${err.message}` : `exited with code ${code}`;
    this.#lastError = why;
    this.#o.logger.error({ fn: this.#o.fnKey, instance: inst.seq, exitCode: code, err: err ?? undefined, inflight: inst.pending.size }, `instance stopped: ${why}`);
    if (wasStarting) {
      // Died during bootstrap: do not respawn in a loop.
      const prev = this.#startFailure?.backoff ?? 0;
      const backoff = Math.min(START_BACKOFF_MAX_MS, prev === 0 ? START_BACKOFF_MIN_MS : prev * 2);
      this.#startFailure = { code: 'FEZZ_ERR_INSTANCE_START_FAILED', message: why, until: performance.now() + backoff, backoff };
      this.#failAll(inst, () => this.#startFailedResponse(why));
      this.#drainQueue(() => this.#startFailedResponse(why));
      if (this.#warmWaiters.length > 0) this.#flushWarmWaiters();
      for (const w of this.#readyWaiters.splice(0)) w(why);
      return;
    }
    this.#failAll(inst, () => oom
      ? errorResponse('FEZZ_ERR_INSTANCE_OUT_OF_MEMORY', [this.#o.fnKey, this.#o.limits.memoryMb])
      : errorResponse('FEZZ_ERR_INSTANCE_CRASHED', [this.#o.fnKey, why]));
    this.#refill();
  }

  #failAll(inst: Instance, make: () => WireResponse): void {
    for (const task of inst.pending.values()) task.resolve(make());
    inst.pending.clear();
    // Bodies it was streaming end with an error: their clients' connections are reset.
    for (const r of inst.streams.values()) r.fail(`its instance stopped (${this.#lastError ?? 'stopped'})`);
    inst.streams.clear();
    for (const b of inst.bodies.values()) b.cancel('instance gone');
    inst.bodies.clear();
    // Its WebSockets end: their clients get 1011 (unless closing already, e.g. retired with 1001).
    if (inst.sockets.size > 0) {
      for (const end of inst.sockets.values()) end.fail(CLOSE_INTERNAL_ERROR, 'function instance stopped', 'instance');
      inst.sockets.clear();
    }
    inst.inflight = 0;
  }

  /** After losing an instance: keep `instances.min`, and give queued work somewhere to run. */
  #refill(): void {
    if (this.#closed) return;
    while (this.#instances.length < this.#o.instances.min && this.#canStart()) this.#spawn();
    while (this.#qHead < this.#queue.length) {
      const inst = this.#pick();
      if (inst === null) break;
      const task = this.#dequeue();
      if (task === undefined) break;
      this.#send(inst, task);
    }
  }

  #remove(inst: Instance): void {
    const i = this.#instances.indexOf(inst);
    if (i !== -1) this.#instances.splice(i, 1);
  }

  /** Take `inst` out of rotation and terminate its worker now. */
  #stop(inst: Instance, reason: NonNullable<Instance['stopReason']>): void {
    if (inst.state === State.Dead) return;
    inst.stopReason = reason;
    inst.state = State.Stopping;
    if (inst.startTimer !== null) { clearTimeout(inst.startTimer); inst.startTimer = null; }
    this.#remove(inst);
    void inst.worker.terminate();
  }

  /** Let `inst` settle its `waitUntil` work (at most `capMs`), then terminate it. */
  #retire(inst: Instance, reason: 'evicted' | 'closed', capMs: number): Promise<void> {
    inst.stopReason = reason;
    inst.state = State.Stopping;
    if (inst.startTimer !== null) { clearTimeout(inst.startTimer); inst.startTimer = null; }
    this.#remove(inst);
    this.#stopping.add(inst);
    return new Promise<void>((resolve) => {
      const cap = setTimeout(done, capMs);
      function done(): void { clearTimeout(cap); inst.onDrained = null; void inst.worker.terminate().then(() => resolve(), () => resolve()); }
      inst.onDrained = done;
      postDirect(inst, [ToWorker.Drain]);
    });
  }

  #ensureSweep(): void {
    if (this.#sweepTimer !== null || this.#instances.length <= this.#o.instances.min) return;
    const every = Math.max(20, Math.min(this.#o.idleTtlMs / 2, 30_000));
    this.#sweepTimer = setInterval(this.#sweep, every);
    this.#sweepTimer.unref();
  }

  /** Evict instances idle for the idle TTL, keeping `instances.min`. */
  #sweep = (): void => {
    const now = performance.now();
    for (const inst of [...this.#instances]) {
      if (this.#instances.length <= this.#o.instances.min) break;
      if (inst.state === State.Ready && inst.inflight === 0 && inst.sockets.size === 0 && now - inst.lastActive >= this.#o.idleTtlMs) {
        this.#stats.evictions++;
        this.#o.logger.debug({ fn: this.#o.fnKey, instance: inst.seq }, 'evicting idle instance');
        void this.#retire(inst, 'evicted', 30_000);
      }
    }
    if (this.#instances.length <= this.#o.instances.min && this.#sweepTimer !== null) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = null;
    }
  };

  #flushWarmWaiters(): void {
    for (const w of this.#warmWaiters.splice(0)) w();
  }

  warm(): Promise<void> {
    while (this.#instances.length < this.#o.instances.min && this.#canStart()) this.#spawn();
    if (this.#instances.every((i) => i.state !== State.Starting)) return Promise.resolve();
    return new Promise((resolve) => this.#warmWaiters.push(resolve));
  }

  ready(): Promise<string | null> {
    if (this.#instances.some((i) => i.state === State.Ready)) return Promise.resolve(null);
    if (this.#instances.length === 0) {
      if (!this.#canStart()) return Promise.resolve(this.#startFailure?.message ?? 'start failed');
      this.#spawn();
    }
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  stats(): RuntimeStats {
    let inflight = 0;
    for (const i of this.#instances) inflight += i.inflight;
    return {
      instances: this.#instances.length,
      inflight,
      queued: this.#queue.length - this.#qHead - this.#cancelledQueued,
      ...this.#stats,
      lastError: this.#lastError,
      webSockets: this.webSockets.stats(),
    };
  }

  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sandbox) dropSandboxSpare(this.#o.limits.memoryMb, this.#grants.read);
    else dropSpare(this.#o.limits.memoryMb, this.#grants);
    for (const w of this.#readyWaiters.splice(0)) w('the runtime was closed before it was ready');
    if (this.#warmWaiters.length > 0) this.#flushWarmWaiters();
    this.#drainQueue(() => errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
    if (this.#sweepTimer !== null) { clearInterval(this.#sweepTimer); this.#sweepTimer = null; }
    const deadline = performance.now() + graceMs;
    // Open WebSockets are in-flight work too: a retired version keeps its instances while they
    // are open, up to the grace, then they close with 1001.
    while ((this.#instances.some((i) => i.inflight > 0) || this.webSockets.open > 0) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (this.webSockets.open > 0) {
      this.#o.logger.info({ fn: this.#o.fnKey, webSockets: this.webSockets.open, graceMs }, 'closing the WebSockets still open on a stopping function version (1001)');
      this.webSockets.terminateAll(CLOSE_GOING_AWAY, 'function version retired', 'retired');
    }
    const stops: Promise<void>[] = [];
    for (const inst of [...this.#instances]) {
      this.#failAll(inst, () => errorResponse('FEZZ_ERR_SHUTTING_DOWN', [], RETRY_AFTER));
      stops.push(this.#retire(inst, 'closed', Math.max(0, deadline - performance.now())));
    }
    await Promise.all(stops);
  }
}
