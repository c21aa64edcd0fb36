/**
 * The request-id ABI endpoints on the admin listener (DESIGN.md "The request-id ABI"):
 * `GET /admin/get-request-info`, `POST /admin/push-response-info`,
 * `POST /admin/push-error-info`, each with `?request_id=N`, and their batch forms
 * `POST /admin/get-request-info/batch` and `POST /admin/push-response-info/batch`, which
 * carry up to 256 ids per call so that a busy plugin pays one HTTP exchange per batch
 * instead of two per request (docs/abi.md "Batches"). Streaming (docs/abi.md "Streamed
 * bodies"): `GET /admin/get-request-body` answers the request body as raw bytes (as they
 * arrive, when it is streamed), `POST /admin/push-response-stream` takes a JSON prelude line
 * and then the response body as a chunked upload, passed on to the client with backpressure.
 *
 * A call made with a plugin's ABI token (`AdminRequest.scope`, the function key) reaches only
 * the ids pending for that function: another function's id answers exactly as an unknown id
 * does (404 FEZZ_ERR_ABI_UNKNOWN_ID, per element in the batches) and is never fetched,
 * answered or failed. The admin token (`scope` null) reaches every id.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { FezzError, fezzError, statusText } from '../errors.js';
import { errorResponse } from '../wire/error-response.js';
import type { PendingEntry, PendingStore } from '../abi/pending-store.js';
import { toRequestInfo, fromResponseInfo, fromStreamPrelude, toWireResponse, parseAbiJson } from '../abi/codec.js';
import { batchFetchSchema, batchPushEnvelopeSchema, batchPushItemSchema, errorInfoSchema, MAX_PRELUDE_BYTES } from '../abi/schema.js';
import { PreludeError, readPrelude, UploadStream } from '../abi/push-stream.js';
import { describeIssues } from '../manifest/schema.js';
import type { AdminRequest, AdminRoute } from './admin-server.js';
import type { BodyStream, WireResponse } from '../wire/types.js';

const MAX_ID = (1n << 63n) - 1n;

/** Parse `request_id` from a query string. @throws FezzError FEZZ_ERR_ABI_BAD_ID */
export function parseRequestId(search: URLSearchParams): string {
  return canonicalId(search.get('request_id'));
}

/** A decimal id in canonical form (no leading zeros). @throws FezzError FEZZ_ERR_ABI_BAD_ID */
function canonicalId(raw: unknown): string {
  if (typeof raw !== 'string' || !/^[0-9]{1,19}$/.test(raw)) throw fezzError('FEZZ_ERR_ABI_BAD_ID', [JSON.stringify(raw ?? null)]);
  const n = BigInt(raw);
  if (n < 1n || n > MAX_ID) throw fezzError('FEZZ_ERR_ABI_BAD_ID', [JSON.stringify(raw)]);
  return n.toString();
}

const json = (body: string): WireResponse => ({ status: 200, headers: ['content-type', 'application/json'], body });
const ok = (): WireResponse => json('{"ok":true}');

/**
 * After a push-response-stream is settled, how long the host's response writer has to start
 * reading it, in ms: it reads at once unless the response is never written (its client left
 * before the prelude came); then the plugin's upload is cancelled rather than left hanging.
 */
const UNREAD_MS = 10_000;
/**
 * Most time a get-request-body answer of a streamed body may wait for the plugin to read
 * what was written (a socket 'drain'), in ms; past it the body stream is cancelled.
 */
const BODY_DRAIN_MS = 30_000;

/** Why the host cancelled a streamed response, for the plugin: its status code and words. */
function streamCutError(id: string, reason: string): FezzError {
  switch (reason) {
    case 'client': return fezzError('FEZZ_ERR_ABI_STREAM_CANCELLED', [id, 'the client closed its connection']);
    case 'send': return fezzError('FEZZ_ERR_ABI_STREAM_CANCELLED', [id, 'the client read nothing for limits.streamIdleMs']);
    case 'unread': return fezzError('FEZZ_ERR_ABI_STREAM_CANCELLED', [id, 'the host never started writing it: its client had left']);
    case 'idle': return fezzError('FEZZ_ERR_ABI_STREAM_TIMEOUT', [id, 'no chunk from the plugin for limits.streamIdleMs']);
    case 'max': return fezzError('FEZZ_ERR_ABI_STREAM_TIMEOUT', [id, 'the body ran past limits.streamMaxMs']);
    default: return fezzError('FEZZ_ERR_ABI_STREAM_CANCELLED', [id, reason]);
  }
}

/** A failed batch element: the error body's fields plus the element's id. */
function itemError(id: string | null, err: unknown): { id: string | null; error: string; code: string; message: string; statusCode: number } {
  const e = err instanceof FezzError ? err : fezzError('FEZZ_ERR_ABI_BAD_BODY', ['batch element', String(err)]);
  return { id, error: statusText(e.statusCode), code: e.code, message: e.message, statusCode: e.statusCode };
}

/**
 * The seven ABI routes over `store`, all marked `abi` (a plugin's token may call them).
 * Statuses: 200; 400 bad id or body; 404 unknown, expired or another function's id; 409
 * already answered (a push) or a streamed body read twice; 413 from the listener, or a
 * push-response-stream prelude over 64 KiB; 499/408 a streamed response the host cancelled
 * (client gone / a stream limit).
 */
export function abiRoutes(store: PendingStore, logger: Logger): AdminRoute[] {
  /**
   * The id's entry, or the 404/409 error for it. `scope`: the caller's function key (a
   * plugin token), or null (the admin token); another function's entry is a 404.
   */
  const lookup = (id: string, forPush: boolean, scope: string | null): PendingEntry => {
    const entry = store.get(id);
    if (entry === undefined || (scope !== null && entry.fnKey !== scope)) {
      if (forPush && store.wasAnswered(id, scope)) throw fezzError('FEZZ_ERR_ABI_ALREADY_ANSWERED', [id]);
      throw fezzError('FEZZ_ERR_ABI_UNKNOWN_ID', [id]);
    }
    return entry;
  };

  const fetchOne = (id: string, scope: string | null) => {
    const entry = lookup(id, false, scope);
    entry.fetched = true;
    return toRequestInfo(entry.wire, entry.deadlineMs);
  };

  /** The plugin's answer for `entry` is unusable: its client gets 502 now rather than a hang. */
  const malformed = (entry: PendingEntry, e: FezzError): never => {
    logger.error({ fn: entry.fnKey, requestId: entry.id, err: e.message }, 'plugin pushed a malformed response');
    store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_BAD_RESPONSE', [entry.fnKey, e.message]), true);
    throw e;
  };

  const pushError = (entry: PendingEntry, message: string): void => {
    logger.error({ fn: entry.fnKey, requestId: entry.id, pluginError: message }, 'plugin reported an error');
    store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_ERROR', [entry.fnKey, 'see the host log']), true);
  };

  /** One element of a batch push. @throws FezzError, after settling the request when it is pending */
  const pushItem = (raw: unknown, endpoint: string, scope: string | null): string => {
    const id = canonicalId(typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined);
    const entry = lookup(id, true, scope);
    const parsed = batchPushItemSchema.safeParse(raw);
    if (!parsed.success) malformed(entry, fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, describeIssues(parsed.error)]));
    const item = parsed.data!;
    if ('error' in item) {
      pushError(entry, item.error.message);
    } else {
      let res: WireResponse;
      try {
        res = toWireResponse(item.response, endpoint);
      } catch (err) {
        return malformed(entry, err as FezzError);
      }
      store.settle(id, res, true);
    }
    return id;
  };

  /**
   * `POST /admin/push-response-stream`: the prelude, then settle the request with a stream
   * that reads the rest of the upload; answers the plugin once the stream is over.
   */
  const pushStream = async ({ search, scope, req }: AdminRequest): Promise<WireResponse> => {
    const id = parseRequestId(search);
    const entry = lookup(id, true, scope); // 400/404/409 before a byte of the body is read
    const log = { fn: entry.fnKey, requestId: id };
    const up = new UploadStream(req);
    // Until the prelude is in, the request may expire (its deadline bounds a plugin that
    // never sends one) or be answered otherwise (its plugin process died, another push).
    let unwatch = (): void => {};
    const gone = new Promise<never>((_, reject) => {
      unwatch = store.onGone(entry, (expired) => reject(expired ? 'expired' : 'answered'));
    });
    let text: string;
    try {
      text = await Promise.race([readPrelude(up, MAX_PRELUDE_BYTES), gone]);
    } catch (why) {
      up.release();
      if (why === 'expired' || why === 'answered') {
        logger.warn({ ...log, why }, `push-response-stream: the request was ${why} before the prelude came`);
        lookup(id, true, scope); // throws 404 (expired) or 409 (answered)
        throw fezzError('FEZZ_ERR_ABI_UNKNOWN_ID', [id]);
      }
      const e = why as PreludeError;
      if (e.kind === 'broken') {
        logger.error({ ...log, err: e.message }, "push-response-stream: the plugin's connection broke before the prelude");
        store.settle(id, errorResponse('FEZZ_ERR_PLUGIN_BAD_RESPONSE', [entry.fnKey, 'its push-response-stream connection broke before the prelude']), true);
        throw fezzError('FEZZ_ERR_BAD_REQUEST', ['the request body was cut off']);
      }
      return malformed(entry, e.kind === 'too-large'
        ? fezzError('FEZZ_ERR_ABI_PRELUDE_TOO_LARGE', [MAX_PRELUDE_BYTES])
        : fezzError('FEZZ_ERR_ABI_BAD_BODY', ['push-response-stream', e.message]));
    } finally {
      unwatch();
    }
    let head: { status: number; headers: string[] };
    try {
      head = fromStreamPrelude(text);
    } catch (err) {
      up.release();
      return malformed(entry, err as FezzError);
    }
    if (!store.settle(id, { status: head.status, headers: head.headers, body: null, stream: up }, true)) {
      up.release();
      lookup(id, true, scope); // answered or expired meanwhile: 409/404
      throw fezzError('FEZZ_ERR_ABI_UNKNOWN_ID', [id]);
    }
    up.armUnreadGuard(UNREAD_MS);
    const end = await up.ended;
    switch (end.kind) {
      case 'complete':
        return ok();
      case 'aborted':
        // read() rejected: the client's connection is reset (the host's writer logs it).
        logger.warn({ ...log, pluginError: end.message }, 'plugin aborted its streamed response (Fezz-Stream-Error trailer): client connection reset');
        return ok();
      case 'broken':
        logger.error({ ...log, err: end.message }, "plugin's streamed response broke mid-way: client connection reset");
        throw fezzError('FEZZ_ERR_BAD_REQUEST', ['the request body was cut off']); // nobody reads it
      case 'cancelled': {
        up.release();
        // HEAD, 204, 304: the head went out and there is no body to send; not a failure.
        if (end.reason === 'no content') return ok();
        const e = streamCutError(id, end.reason);
        logger.warn({ ...log, reason: end.reason, status: e.statusCode }, "streamed response cancelled by the host: the plugin's push is answered with an error, its upload discarded");
        throw e;
      }
    }
  };

  /**
   * `GET /admin/get-request-body`: the buffered body as one answer, or a streamed one piped
   * to the plugin with backpressure (read the next chunk only once the plugin's socket took
   * the last), once.
   */
  const getBody = ({ search, scope, res }: AdminRequest): WireResponse | null => {
    const entry = lookup(parseRequestId(search), false, scope);
    entry.fetched = true;
    const stream = entry.wire.bodyStream;
    if (stream === undefined) {
      return { status: 200, headers: ['content-type', 'application/octet-stream'], body: entry.wire.body ?? EMPTY };
    }
    if (entry.bodyTaken) throw fezzError('FEZZ_ERR_ABI_BODY_CONSUMED', [entry.id]);
    entry.bodyTaken = true;
    pipeRequestBody(stream, res, logger, { fn: entry.fnKey, requestId: entry.id });
    return null;
  };

  return [
    {
      method: 'GET', path: '/admin/get-request-body', abi: true,
      handle: getBody,
    },
    {
      // Raw: the body is a prelude line, then the response body (docs/abi.md "Streamed bodies").
      method: 'POST', path: '/admin/push-response-stream', abi: true, raw: true,
      handle: pushStream,
    },
    {
      method: 'GET', path: '/admin/get-request-info', abi: true,
      handle: ({ search, scope }) => json(JSON.stringify(fetchOne(parseRequestId(search), scope))),
    },
    {
      method: 'POST', path: '/admin/push-response-info', abi: true,
      handle: ({ search, body, scope }) => {
        const entry = lookup(parseRequestId(search), true, scope);
        let res;
        try {
          res = fromResponseInfo(body.toString('utf8'));
        } catch (err) {
          malformed(entry, err as FezzError);
        }
        store.settle(entry.id, res!, true);
        return ok();
      },
    },
    {
      method: 'POST', path: '/admin/push-error-info', abi: true,
      handle: ({ search, body, scope }) => {
        const entry = lookup(parseRequestId(search), true, scope);
        let message: string;
        try {
          message = errorInfoSchema.parse(JSON.parse(body.toString('utf8'))).message;
        } catch (err) {
          store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_BAD_RESPONSE', [entry.fnKey, 'malformed push-error-info']), true);
          throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['push-error-info', 'expected JSON {"message": string}'], err);
        }
        pushError(entry, message);
        return ok();
      },
    },
    {
      // Body {"ids": ["<id>", ...]} (1-256). Answers {"requests": [...]}: per id, in order,
      // its RequestInfo plus "id", or the error fields (404 unknown or not the caller's, 400 bad id) plus "id".
      method: 'POST', path: '/admin/get-request-info/batch', abi: true,
      handle: ({ body, scope }) => {
        const endpoint = 'get-request-info/batch';
        const parsed = batchFetchSchema.safeParse(parseAbiJson(body.toString('utf8'), endpoint));
        if (!parsed.success) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, describeIssues(parsed.error)]);
        const requests = parsed.data.ids.map((raw) => {
          let id: string | null = null;
          try {
            id = canonicalId(raw);
            return { id, ...fetchOne(id, scope) };
          } catch (err) {
            return itemError(id ?? raw, err);
          }
        });
        return json(JSON.stringify({ requests }));
      },
    },
    {
      // Body {"responses": [{"id", "response": ResponseInfo} | {"id", "error": ErrorInfo}, ...]}
      // (1-256). Answers {"results": [...]}: per element, in order, {"id", "ok": true} or the
      // error fields with "ok": false. A malformed element fails only its own request (502).
      method: 'POST', path: '/admin/push-response-info/batch', abi: true,
      handle: ({ body, scope }) => {
        const endpoint = 'push-response-info/batch';
        const parsed = batchPushEnvelopeSchema.safeParse(parseAbiJson(body.toString('utf8'), endpoint));
        if (!parsed.success) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, describeIssues(parsed.error)]);
        const results = parsed.data.responses.map((raw) => {
          try {
            return { id: pushItem(raw, endpoint, scope), ok: true };
          } catch (err) {
            const rawId = typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined;
            return { ...itemError(typeof rawId === 'string' ? rawId : null, err), ok: false };
          }
        });
        return json(JSON.stringify({ results }));
      },
    },
  ];
}

const EMPTY = new Uint8Array(0);

/**
 * Write a streamed request body to a plugin's get-request-body answer (200,
 * `application/octet-stream`, chunked): each chunk as `stream` yields it, the next read only
 * once `res` took the last (or after 'drain'). The end of the stream ends the answer; a
 * failing stream (the client sent too much, stalled or left) destroys it, so the plugin sees
 * a truncated body as an error; a plugin that leaves, or reads nothing for BODY_DRAIN_MS,
 * cancels the stream (the body cannot be replayed). Each failure is logged.
 */
function pipeRequestBody(stream: BodyStream, res: ServerResponse, logger: Logger, log: { fn: string; requestId: string }): void {
  let done = false;
  let drainTimer: NodeJS.Timeout | null = null;
  const finish = (how: 'complete' | 'error' | 'plugin' | 'stall', err?: unknown): void => {
    if (done) return;
    done = true;
    if (drainTimer !== null) clearTimeout(drainTimer);
    res.off('close', onClose);
    if (how === 'complete') { res.end(); return; }
    if (how === 'error') {
      logger.warn({ ...log, err: err instanceof Error ? err.message : String(err) }, 'get-request-body: the request body failed mid-way: the plugin\'s answer is cut');
    } else {
      stream.cancel(how === 'plugin' ? 'plugin left' : 'plugin stalled');
      logger.warn({ ...log, drainMs: how === 'stall' ? BODY_DRAIN_MS : undefined }, how === 'plugin'
        ? 'get-request-body: the plugin closed its connection before the end of the body: the body is cancelled'
        : 'get-request-body: the plugin read nothing for too long: the body is cancelled');
    }
    res.destroy();
  };
  const onClose = (): void => { if (!res.writableFinished) finish('plugin'); };
  res.on('close', onClose);
  res.writeHead(200, ['content-type', 'application/octet-stream', 'cache-control', 'no-store']);
  res.flushHeaders();
  const pump = (): void => {
    if (done) return;
    stream.read().then((chunk) => {
      if (done) return;
      if (chunk === null) { finish('complete'); return; }
      if (chunk.byteLength === 0 || res.write(chunk)) { pump(); return; }
      drainTimer = setTimeout(() => finish('stall'), BODY_DRAIN_MS);
      res.once('drain', () => {
        if (drainTimer !== null) { clearTimeout(drainTimer); drainTimer = null; }
        pump();
      });
    }, (err: unknown) => finish('error', err));
  };
  pump();
}
