/**
 * The request-id ABI endpoints on the admin listener (DESIGN.md "The request-id ABI"):
 * `GET /admin/get-request-info`, `POST /admin/push-response-info`,
 * `POST /admin/push-error-info`, each with `?request_id=N`, and their batch forms
 * `POST /admin/get-request-info/batch` and `POST /admin/push-response-info/batch`, which
 * carry up to 256 ids per call so that a busy plugin pays one HTTP exchange per batch
 * instead of two per request (docs/abi.md "Batches").
 *
 * A call made with a plugin's ABI token (`AdminRequest.scope`, the function key) reaches only
 * the ids pending for that function: another function's id answers exactly as an unknown id
 * does (404 FEZZ_ERR_ABI_UNKNOWN_ID, per element in the batches) and is never fetched,
 * answered or failed. The admin token (`scope` null) reaches every id.
 */
import type { Logger } from 'pino';
import { FezzError, fezzError, statusText } from '../errors.js';
import { errorResponse } from '../wire/error-response.js';
import type { PendingEntry, PendingStore } from '../abi/pending-store.js';
import { toRequestInfo, fromResponseInfo, toWireResponse, parseAbiJson } from '../abi/codec.js';
import { batchFetchSchema, batchPushEnvelopeSchema, batchPushItemSchema, errorInfoSchema } from '../abi/schema.js';
import { describeIssues } from '../manifest/schema.js';
import type { AdminRoute } from './admin-server.js';
import type { WireResponse } from '../wire/types.js';

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

/** A failed batch element: the error body's fields plus the element's id. */
function itemError(id: string | null, err: unknown): { id: string | null; error: string; code: string; message: string; statusCode: number } {
  const e = err instanceof FezzError ? err : fezzError('FEZZ_ERR_ABI_BAD_BODY', ['batch element', String(err)]);
  return { id, error: statusText(e.statusCode), code: e.code, message: e.message, statusCode: e.statusCode };
}

/**
 * The five ABI routes over `store`, all marked `abi` (a plugin's token may call them).
 * Statuses: 200; 400 bad id or body; 404 unknown, expired or another function's id; 409
 * already answered (a push); 413 from the listener.
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

  return [
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
