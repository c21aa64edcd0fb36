/**
 * Runs inside each isolate instance: loads one function module, then serves the requests the
 * pool posts to it, many at once. Nothing here runs on the host thread. The same code serves
 * both tiers through {@link runInstance}: in a worker thread (the thread tier) over
 * `parentPort`, started at the bottom of this file; in a sandbox process (the sandbox tier,
 * src/runtime/sandbox/sandbox-entry.ts) on the process's main thread, over the fd-3 socket.
 * A hardened instance runs the lockdown (lockdown.ts) before anything else.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AsyncLocalStorage } from 'node:async_hooks';
import { format } from 'node:util';
import { getHeapStatistics } from 'node:v8';
import { FastRequest, abortRequest } from '../handler/fast-request.js';
import { installFastResponse, readResponse, describe, type ResponseParts } from '../handler/fast-response.js';
import { resolveHandlers, WaitUntilTracker, type Context, type Env, type Handler, type ModuleHandlers } from '../handler/contract.js';
import { EXIT_EXTERNAL_OUT_OF_MEMORY, FromWorker, ToWorker, type InstancePort, type RequestMessage, type WorkerLoadData } from './protocol.js';
import type { WireRequest } from '../../wire/types.js';
import { StreamReceiver, StreamSender } from '../../wire/stream-channel.js';
import { chunkBytes } from '../../wire/web-body.js';
import { lockDown } from './lockdown.js';
import { installPlatformGlobals } from './platform-globals.js';
import type { WorkerStartData } from './spares.js';
import { findScheduled, scheduledEntry, SCHEDULED_HANDLER, type ScheduledHandler } from '../types.js';
import { StackMapper } from '../../build/source-map.js';
import { exposeEnvAsGlobals, installServiceWorkerGlobals, watchModule, withServiceWorker } from '../handler/service-worker.js';
import { SocketHub, pairsMade, upgradeOf, type UpgradeParts } from '../../websocket/function-socket.js';

let port: InstancePort;
let data: WorkerLoadData;
let env: Env = Object.freeze({});

let handlers: ModuleHandlers | null = null;
/** Maps the function's bundle positions in stacks and console lines to its own files (build/source-map.ts); set at load. */
let stackMapper: StackMapper | null = null;
/** `text` with the bundle's positions mapped (a substring search when it names none). */
const mapStack = (text: string): string => (stackMapper === null ? text : stackMapper.map(text));
/** What a scheduled event (cron trigger) runs: the module's `scheduled` export, adapted (runtime/types.ts). */
let scheduled: Handler = scheduledEntry(null);
/** URLPattern and navigator installed (runInstance starts it; load waits for it). */
let platformReady: Promise<void> = Promise.resolve();
const beforeLoad: RequestMessage[] = [];
/** In-flight requests by pool-local id, for `Abort`. */
const inflight = new Map<number, FastRequest>();
/** Response bodies being streamed to the host, by pool-local id (the request stays in `inflight`). */
const responseStreams = new Map<number, StreamSender>();
/** Request bodies the host streams in, by pool-local id. */
const requestBodies = new Map<number, StreamReceiver>();
const RESPONSE_STREAM_TAGS = { chunk: FromWorker.StreamChunk, end: FromWorker.StreamEnd, error: FromWorker.StreamError };
/** Requests that are WebSocket upgrades (the function may answer 101 with a WebSocket): pool-local id -> the host's request id. */
const upgrades = new Map<number, string>();
const waitUntil = new WaitUntilTracker((err) => { console.error('waitUntil promise rejected:', err); });

// Every console.* call becomes a host log line tagged with the function and the request it
// ran for (AsyncLocalStorage follows the request through awaits and timers).
const currentRequest = new AsyncLocalStorage<RequestScope>();

/** What the async context of a request carries: the pool-local id and the host's request id. */
interface RequestScope { readonly id: number; readonly requestId: string }
const consoleLevels = { log: 'info', info: 'info', debug: 'debug', trace: 'debug', warn: 'warn', error: 'error' } as const;

// Outgoing per-request messages, posted together once per event-loop turn (see protocol.ts).
let outbox: unknown[][] = [];
let outTransfer: ArrayBuffer[] = [];
let flushScheduled = false;

function emit(msg: unknown[], transfer?: ArrayBuffer): void {
  outbox.push(msg);
  if (transfer !== undefined) outTransfer.push(transfer);
  if (!flushScheduled) { flushScheduled = true; setImmediate(flush); }
}

function flush(): void {
  flushScheduled = false;
  if (outbox.length === 0) return;
  const batch = outbox;
  const transfer = outTransfer;
  outbox = [];
  outTransfer = [];
  if (batch.length === 1) port.postMessage(batch[0], transfer);
  else port.postMessage([FromWorker.Batch, batch], transfer);
}

/** A control message: after whatever is queued. */
function direct(msg: unknown[]): void {
  flush();
  port.postMessage(msg);
}

/**
 * The function's WebSockets (src/websocket/function-socket.ts), by the id of the upgrade
 * request each came from. Their events run in that request's async context (console lines
 * carry its id); a listener's throw is reported like any error nothing handled.
 */
const sockets = new SocketHub({
  post: (msg, transfer) => emit(msg, transfer),
  run: (requestId, fn) => currentRequest.run({ id: -1, requestId }, fn),
  reportError: (err, kind, requestId) => currentRequest.run({ id: -1, requestId }, () => onUncaught(kind, err)),
});

/*
 * An error nothing handled (a throw in a timer callback, a promise rejected with no handler)
 * does not end the instance, as in workerd: it is reported to the host with the request whose
 * async context it came from, and that request, if it is still running, fails with 500. The
 * instance goes on serving the others, unless its memory is over the limit.
 */
function onUncaught(kind: 'uncaughtException' | 'unhandledRejection', err: unknown): void {
  try {
    const scope = currentRequest.getStore();
    const e = err as { name?: string; message?: string; stack?: string } | null;
    const message = e !== null && typeof e === 'object' ? `${String(e.name ?? 'Error')}: ${String(e.message ?? '')}` : String(err);
    const stack = e !== null && typeof e === 'object' && typeof e.stack === 'string' ? e.stack : '';
    emit([FromWorker.Uncaught, kind, scope?.requestId ?? null, message, mapStack(stack)]);
    if (scope !== undefined) fail(scope.id, err);
    if (overExternalLimit()) exitOutOfMemory();
  } catch {
    // Reporting must never throw from here (that would end the thread).
  }
}

function onMessage(msg: unknown[]): void {
  switch (msg[0]) {
    case ToWorker.Batch:
      for (const m of msg[1] as unknown[][]) onMessage(m);
      break;
    case ToWorker.Request:
      // Its streamed body's chunks may follow at once, before the module is loaded: take them.
      if ((msg as RequestMessage)[9] === true) acceptBody((msg as RequestMessage)[1]);
      if (handlers === null) beforeLoad.push(msg as RequestMessage);
      else handle(msg as RequestMessage);
      break;
    case ToWorker.Ping:
      direct([FromWorker.Pong]);
      break;
    case ToWorker.Abort: {
      const r = inflight.get(msg[1] as number);
      if (r) {
        abortRequest(r, msg[2] === 'client'
          ? new DOMException('The client closed the connection', 'AbortError')
          : new DOMException('The request timed out', 'TimeoutError'));
      }
      break;
    }
    case ToWorker.Drain:
      void waitUntil.drain().then(() => direct([FromWorker.Drained]));
      break;
    case ToWorker.StreamCredit:
      responseStreams.get(msg[1] as number)?.credit(msg[2] as number);
      break;
    case ToWorker.StreamCancel:
      responseStreams.get(msg[1] as number)?.cancel(String(msg[2]));
      break;
    case ToWorker.BodyChunk: {
      const r = requestBodies.get(msg[1] as number);
      if (r !== undefined) {
        if (msg[2] instanceof Uint8Array) r.push(msg[2]);
        else r.fail('a malformed body chunk');
      }
      break;
    }
    case ToWorker.BodyEnd:
      requestBodies.get(msg[1] as number)?.end();
      break;
    case ToWorker.BodyError:
      requestBodies.get(msg[1] as number)?.fail(String(msg[2]));
      break;
    case ToWorker.WsMessage:
    case ToWorker.WsClose:
    case ToWorker.WsCredit:
      sockets.onMessage(msg);
      break;
    case ToWorker.Load:
      void load(msg[1] as WorkerLoadData);
      break;
  }
}

/*
 * resourceLimits caps the V8 heap only: ArrayBuffers and Buffers live outside it, and a
 * function hoarding them could grow the whole process until the kernel kills the host. So
 * the worker checks its own external memory (0.4 µs) before each response and every 250 ms,
 * and past `limits.memoryMb` fails that request and exits; the host replaces it.
 */
let externalLimitBytes = Infinity;

function overExternalLimit(): boolean {
  return getHeapStatistics().external_memory > externalLimitBytes;
}

function exitOutOfMemory(): never {
  flush();
  process.exit(EXIT_EXTERNAL_OUT_OF_MEMORY);
}


/**
 * Start serving over `p`: the lockdown first (when `hardened`), then the console, error and
 * memory hooks and the loader warm-up; the function arrives with the first Load message.
 * Call once per thread or process.
 */
export function runInstance(p: InstancePort, hardened: boolean, urlPatternPolyfill?: string): void {
  if (hardened) lockDown();
  port = p;
  installFastResponse();
  for (const [method, level] of Object.entries(consoleLevels)) {
    (console as unknown as Record<string, (...args: unknown[]) => void>)[method] = (...args: unknown[]) => {
      emit([FromWorker.Log, level, mapStack(format(...args)), currentRequest.getStore()?.requestId ?? null]);
    };
  }
  port.on('message', onMessage);
  process.on('uncaughtException', (err) => onUncaught('uncaughtException', err));
  process.on('unhandledRejection', (reason) => onUncaught('unhandledRejection', reason));
  setInterval(() => { if (overExternalLimit()) exitOutOfMemory(); }, 250).unref();
  // URLPattern and navigator where Node lacks them, loaded while the instance waits for its
  // function (a spare does this ahead of time); load() waits for it before importing.
  platformReady = installPlatformGlobals(urlPatternPolyfill);
  warmUp();
}

// Warm the ES module loader while this instance waits as a spare: the first dynamic import of a
// file in a thread (or process) sets up the loader and its file-reading path, and that should not be paid
// by the function's cold start (importing a real file rather than a data: URL took the
// function's import from ~2.5 to ~1.8 ms). Every bundle starts by importing node:module
// (the require shim), and so does the warm-up module. Then run the request/response code
// once so its first real use is not its first compilation.
// The warm-up file sits beside this one with the same extension: `.js` compiled, `.ts` from
// sources through tsx, `.mjs` bundled for a hardened worker run from sources (permissions.ts).
function warmUp(): void {
  const warmup = new URL(`./loader-warmup${/\.[cm]?[jt]s$/.exec(import.meta.url)?.[0] ?? '.js'}`, import.meta.url).href;
  void import(warmup).catch(() => undefined);
  try {
    void readResponse(new Response('warm-up', { headers: { 'content-type': 'text/plain' } }));
    void new FastRequest({ method: 'GET', url: 'http://localhost/', headers: ['host', 'localhost'], body: null }).headers;
  } catch { /* warming only */ }
}

/** Import the function (the worker may have been started blank, ahead of time). */
async function load(d: WorkerLoadData): Promise<void> {
  data = d;
  externalLimitBytes = d.memoryMb * 1024 * 1024;
  if (d.webSocketMaxMessageBytes !== undefined) sockets.maxMessageBytes = d.webSocketMaxMessageBytes;
  env = Object.freeze({ ...d.env });
  // The function sees its manifest env as process.env too, never the host's.
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, d.env);
  stackMapper = new StackMapper(d.moduleUrl);
  // Service-worker syntax (handler/service-worker.ts): the module may register its handlers with
  // addEventListener at import, and read the env as globals (removed again if it does not).
  installServiceWorkerGlobals();
  watchModule(d.moduleUrl);
  const hideEnv = exposeEnvAsGlobals(env);
  try {
    await platformReady;
    const sw = withServiceWorker(d.fnKey, d.moduleUrl, await import(d.moduleUrl) as Record<string, unknown>, d.requireFetch);
    if (!sw.serviceWorker) hideEnv();
    handlers = resolveHandlers(d.fnKey, sw.mod, d.handlerNames, d.requireFetch);
    const fn = findScheduled(sw.mod);
    scheduled = scheduledEntry(fn === null ? null : mappingErrors(fn));
  } catch (err) {
    const e = err as { code?: string; message?: string; stack?: string; resource?: string };
    let message = String(e?.message ?? err);
    if (e?.code === 'ERR_ACCESS_DENIED') {
      message += `${e.resource ? ` (${e.resource})` : ''}: an isolate function reads only its own bundle and the files its manifest grants (permissions.files), and starts no process, worker or native code (docs/security.md)`;
    }
    direct([FromWorker.LoadError, typeof e?.code === 'string' ? e.code : 'FEZZ_ERR_INSTANCE_START_FAILED', message, mapStack(String(e?.stack ?? ''))]);
    return;
  }
  direct([FromWorker.Ready]);
  for (const m of beforeLoad.splice(0)) handle(m);
}

/** `fn`, with the stack of what it throws or rejects with mapped to the function's files (the scheduled run's outcome carries it). */
function mappingErrors(fn: ScheduledHandler): ScheduledHandler {
  return async (controller, e, ctx) => {
    try {
      return await fn(controller, e, ctx);
    } catch (err) {
      stackMapper?.mapError(err);
      throw err;
    }
  };
}

// hot path -- change with care
function handle(m: RequestMessage): void {
  const id = m[1];
  const wire: WireRequest = { method: m[2], url: m[3], headers: m[4], body: m[5] };
  if (m[9] === true) {
    const body = requestBodies.get(id);
    if (body !== undefined) wire.bodyStream = body;
  }
  if (m[10] === true) { wire.upgrade = 'websocket'; upgrades.set(id, m[8]); }
  // The body was moved to this worker for this request alone: the handler may have it as is.
  const fast = new FastRequest(wire, true);
  inflight.set(id, fast);
  const request = fast as unknown as Request;
  const ctx: Context = {
    requestId: m[8],
    params: m[7] ?? {},
    waitUntil: (p) => waitUntil.add(p),
    passThroughOnException() {},
  };
  const handler: Handler | null | undefined = m[6] === null ? handlers!.fetch : m[6] === SCHEDULED_HANDLER ? scheduled : handlers!.named.get(m[6]);
  if (handler === null || handler === undefined) {
    // A scheduled-only module (requireFetch false): the pool answers 500 FEZZ_ERR_HANDLER_MISSING.
    inflight.delete(id);
    if (m[9] === true) requestBodies.delete(id);
    upgrades.delete(id);
    emit([FromWorker.Error, id, 'FEZZ_ERR_HANDLER_MISSING', 'no fetch handler', '']);
    return;
  }
  let result: Response | Promise<Response>;
  try {
    result = currentRequest.run({ id, requestId: m[8] }, handler!, request, env, ctx);
  } catch (err) {
    fail(id, err);
    return;
  }
  if (result instanceof Promise) result.then((r) => finish(id, r), (err) => fail(id, err));
  else finish(id, result);
}

/** Request `id`'s body arrives as BodyChunk messages, read as the function reads it (credit flows back). */
function acceptBody(id: number): void {
  const body = new StreamReceiver((n) => emit([FromWorker.BodyCredit, id, n]), (reason) => {
    requestBodies.delete(id);
    emit([FromWorker.BodyCancel, id, reason]);
  });
  requestBodies.set(id, body);
}

function finish(id: number, value: unknown): void {
  if (upgrades.size > 0 || pairsMade()) {
    // A WebSocket upgrade, or a function that made a WebSocketPair: a 101 with a WebSocket?
    const requestId = upgrades.get(id);
    if (requestId !== undefined) upgrades.delete(id);
    const upgrade = upgradeOf(value);
    if (upgrade !== null) { acceptWebSocket(id, requestId, upgrade); return; }
  }
  let parts: ResponseParts | Promise<ResponseParts>;
  let statusText: string | undefined;
  try {
    parts = readResponse(value);
    statusText = customStatusText(value);
  } catch {
    inflight.delete(id);
    emit([FromWorker.Error, id, 'FEZZ_ERR_HANDLER_BAD_RESPONSE', describe(value), '']);
    return;
  }
  if (parts instanceof Promise) parts.then((p) => send(id, p, statusText), (err) => fail(id, err));
  else send(id, parts, statusText);
}

/**
 * Request `id` was answered 101 with a WebSocket: if it is an upgrade request (`requestId`
 * set), the socket goes to the host (WsAccept) and the request is over; else it is a bad response.
 */
function acceptWebSocket(id: number, requestId: string | undefined, upgrade: UpgradeParts): void {
  if (!inflight.has(id)) return; // answered already (an error the host has sent)
  const problem = requestId === undefined
    ? 'a 101 response with a WebSocket to a request that is not a WebSocket upgrade'
    : sockets.adopt(id, requestId, upgrade, () => {
      inflight.delete(id);
      emit([FromWorker.WsAccept, id, upgrade.headers]);
    });
  if (problem !== null) {
    inflight.delete(id);
    emit([FromWorker.Error, id, 'FEZZ_ERR_HANDLER_BAD_RESPONSE', problem, '']);
  }
}

/**
 * The reason phrase a function's Response carries (`statusText`), or undefined for none: it
 * travels as the optional last element of Response/StreamHead messages (protocol.ts).
 */
function customStatusText(value: unknown): string | undefined {
  const t = (value as { statusText?: unknown }).statusText;
  return typeof t === 'string' && t !== '' ? t : undefined;
}

// hot path -- change with care
function send(id: number, p: ResponseParts, statusText: string | undefined): void {
  if (requestBodies.size > 0) requestBodies.delete(id);
  if (p.stream !== undefined) { sendStream(id, p, p.stream, statusText); return; }
  if (!inflight.delete(id)) return; // already timed out and forgotten by the host
  if (overExternalLimit()) {
    emit([FromWorker.Error, id, 'FEZZ_ERR_INSTANCE_OUT_OF_MEMORY', `ArrayBuffer memory over ${data.memoryMb} MB`, '']);
    exitOutOfMemory();
  }
  let body = p.body;
  if (body instanceof Uint8Array) {
    // Structured clone copies a view's whole backing buffer: trim views first. Bytes read
    // from a real Response are ours alone, so their buffer is moved, not copied.
    if (p.owned && body.byteOffset === 0 && body.byteLength === body.buffer.byteLength) {
      emit(statusText === undefined ? [FromWorker.Response, id, p.status, p.headers, body] : [FromWorker.Response, id, p.status, p.headers, body, statusText], body.buffer as ArrayBuffer);
      return;
    }
    if (body.byteLength !== body.buffer.byteLength) body = body.slice();
  }
  // Response.error() arrives here as status 0 with no headers or body: the host resets the connection.
  emit(statusText === undefined ? [FromWorker.Response, id, p.status, p.headers, body] : [FromWorker.Response, id, p.status, p.headers, body, statusText]);
}

/**
 * The head now, then the body as StreamChunk messages while the host grants credit. The
 * request stays in flight (its signal can still abort) until the stream ends or is cancelled.
 */
function sendStream(id: number, p: ResponseParts, rs: ReadableStream<Uint8Array>, statusText: string | undefined): void {
  const fast = inflight.get(id);
  if (fast === undefined) { void rs.cancel('the request timed out').catch(() => undefined); return; }
  emit(statusText === undefined ? [FromWorker.StreamHead, id, p.status, p.headers] : [FromWorker.StreamHead, id, p.status, p.headers, statusText]);
  const reader = rs.getReader();
  const sender = new StreamSender(id, emit as (m: unknown[], t?: ArrayBuffer) => void, RESPONSE_STREAM_TAGS);
  responseStreams.set(id, sender);
  void sender.run(async () => {
    if (overExternalLimit()) exitOutOfMemory();
    const r = await reader.read();
    return r.done ? null : chunkBytes(r.value);
  }, (reason) => {
    if (reason === 'client') abortRequest(fast, new DOMException('The client closed the connection', 'AbortError'));
    reader.cancel(reason).catch(() => undefined);
  }).finally(() => {
    responseStreams.delete(id);
    inflight.delete(id);
  });
}

function fail(id: number, err: unknown): void {
  if (requestBodies.size > 0) requestBodies.delete(id);
  if (upgrades.size > 0) upgrades.delete(id);
  if (!inflight.delete(id)) return;
  const e = err as { name?: string; message?: string; stack?: string } | null;
  const message = e && typeof e === 'object' ? `${e.name ?? 'Error'}: ${e.message ?? ''}` : String(err);
  const stack = e && typeof e === 'object' && typeof e.stack === 'string' ? mapStack(e.stack) : '';
  emit([FromWorker.Error, id, 'FEZZ_ERR_HANDLER_THREW', message, stack]);
}

// In a worker thread (the thread tier), serve the pool over parentPort. Imported in a sandbox
// process, where there is no parentPort, this does nothing: sandbox-entry.ts calls runInstance.
if (parentPort !== null) {
  const start = workerData as WorkerStartData | null;
  runInstance(parentPort, start?.hardened === true, start?.urlPattern);
}
