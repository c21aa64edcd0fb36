import { errorBody, fezzError, type FezzErrorCode } from '../errors.js';
import type { WireResponse } from './types.js';

const JSON_TYPE = ['content-type', 'application/json; charset=utf-8'];

/**
 * A host-made error response: JSON `{ error, code, message, statusCode }` with the status
 * the registry gives `code`. `extraHeaders` (flat) are appended, e.g. `retry-after`.
 */
export function errorResponse(code: FezzErrorCode, args: readonly unknown[], extraHeaders?: string[]): WireResponse {
  const err = fezzError(code, args);
  return {
    status: err.statusCode,
    headers: extraHeaders ? [...JSON_TYPE, ...extraHeaders] : JSON_TYPE.slice(),
    body: errorBody(err.statusCode, code, err.message),
  };
}

/** Same shape with a message given in full (e.g. a handler error with its stack in dev mode). */
export function errorResponseWithMessage(status: number, code: string, message: string): WireResponse {
  return { status, headers: JSON_TYPE.slice(), body: errorBody(status, code, message) };
}
