/**
 * The request-id ABI endpoints on the admin listener (DESIGN.md "The request-id ABI"):
 * `GET /admin/get-request-info`, `POST /admin/push-response-info`,
 * `POST /admin/push-error-info`, each with `?request_id=N`.
 */
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { errorResponse } from '../wire/error-response.js';
import type { PendingStore } from '../abi/pending-store.js';
import { toRequestInfo, fromResponseInfo } from '../abi/codec.js';
import { errorInfoSchema } from '../abi/schema.js';
import type { AdminRoute } from './admin-server.js';
import type { WireResponse } from '../wire/types.js';

const MAX_ID = (1n << 63n) - 1n;

/** Parse `request_id` from a query string. @throws FezzError FEZZ_ERR_ABI_BAD_ID */
export function parseRequestId(search: URLSearchParams): string {
  const raw = search.get('request_id');
  if (raw === null || !/^[0-9]{1,19}$/.test(raw)) throw fezzError('FEZZ_ERR_ABI_BAD_ID', [JSON.stringify(raw)]);
  const n = BigInt(raw);
  if (n < 1n || n > MAX_ID) throw fezzError('FEZZ_ERR_ABI_BAD_ID', [JSON.stringify(raw)]);
  return n.toString(); // canonical form: no leading zeros
}

const ok = (): WireResponse => ({ status: 200, headers: ['content-type', 'application/json'], body: '{"ok":true}' });

export function abiRoutes(store: PendingStore, logger: Logger): AdminRoute[] {
  /** The id's entry, or the 404/409 error for it. */
  const lookup = (search: URLSearchParams, forPush: boolean) => {
    const id = parseRequestId(search);
    const entry = store.get(id);
    if (entry === undefined) {
      if (forPush && store.wasAnswered(id)) throw fezzError('FEZZ_ERR_ABI_ALREADY_ANSWERED', [id]);
      throw fezzError('FEZZ_ERR_ABI_UNKNOWN_ID', [id]);
    }
    return entry;
  };

  return [
    {
      method: 'GET', path: '/admin/get-request-info',
      handle: ({ search }) => {
        const entry = lookup(search, false);
        entry.fetched = true;
        return { status: 200, headers: ['content-type', 'application/json'], body: JSON.stringify(toRequestInfo(entry.wire, entry.deadlineMs)) };
      },
    },
    {
      method: 'POST', path: '/admin/push-response-info',
      handle: ({ search, body }) => {
        const entry = lookup(search, true);
        let res;
        try {
          res = fromResponseInfo(body.toString('utf8'));
        } catch (err) {
          // The plugin's answer is unusable: the client gets 502 now rather than a hang.
          const e = err as FezzError;
          logger.error({ fn: entry.fnKey, requestId: entry.id, err: e.message }, 'plugin pushed a malformed response');
          store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_BAD_RESPONSE', [entry.fnKey, e.message]), true);
          throw e;
        }
        store.settle(entry.id, res, true);
        return ok();
      },
    },
    {
      method: 'POST', path: '/admin/push-error-info',
      handle: ({ search, body }) => {
        const entry = lookup(search, true);
        let message: string;
        try {
          message = errorInfoSchema.parse(JSON.parse(body.toString('utf8'))).message;
        } catch (err) {
          store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_BAD_RESPONSE', [entry.fnKey, 'malformed push-error-info']), true);
          throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['push-error-info', 'expected JSON {"message": string}'], err);
        }
        logger.error({ fn: entry.fnKey, requestId: entry.id, pluginError: message }, 'plugin reported an error');
        store.settle(entry.id, errorResponse('FEZZ_ERR_PLUGIN_ERROR', [entry.fnKey, 'see the host log']), true);
        return ok();
      },
    },
  ];
}
