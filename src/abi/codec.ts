/**
 * Conversions between the wire form and the ABI's JSON bodies.
 */
import { fezzError } from '../errors.js';
import type { WireRequest, WireResponse } from '../wire/types.js';
import { responseInfoSchema, streamPreludeSchema, type RequestInfo, type ResponseInfo } from './schema.js';
import { describeIssues } from '../manifest/schema.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Build the `get-request-info` body for `wire`, due at `deadlineMs` (epoch ms). A streamed
 * body (`wire.bodyStream`) is not in it: `body` is `""` and `bodyStreamed` is true (the
 * plugin reads it with get-request-body).
 */
export function toRequestInfo(wire: WireRequest, deadlineMs: number): RequestInfo {
  // wire.url is absolute (http://host/path?q); the ABI gives path and query as the function sees them.
  const u = wire.url;
  const slash = u.indexOf('/', u.indexOf('//') + 2);
  const target = slash === -1 ? '/' : u.slice(slash);
  const q = target.indexOf('?');
  const headers: Record<string, string> = {};
  const raw = wire.headers;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const prev = headers[name];
    headers[name] = prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`;
  }
  let body = '';
  let bodyEncoding: 'utf8' | 'base64' = 'utf8';
  if (wire.body !== null && wire.body.byteLength > 0) {
    try {
      body = strictUtf8.decode(wire.body);
    } catch {
      body = Buffer.from(wire.body.buffer, wire.body.byteOffset, wire.body.byteLength).toString('base64');
      bodyEncoding = 'base64';
    }
  }
  const info: RequestInfo = {
    method: wire.method,
    url: target,
    path: q === -1 ? target : target.slice(0, q),
    query: q === -1 ? '' : target.slice(q + 1),
    headers, body, bodyEncoding, deadlineMs,
  };
  if (wire.bodyStream !== undefined) info.bodyStreamed = true;
  return info;
}

/**
 * Parse and validate a `push-response-info` body into a wire response.
 * @throws FezzError FEZZ_ERR_ABI_BAD_BODY naming what is wrong (bad JSON, a field, bad base64).
 */
export function fromResponseInfo(text: string): WireResponse {
  return fromResponseInfoValue(parseAbiJson(text, 'push-response-info'), 'push-response-info');
}

/** Parse an ABI request body (`endpoint` names it in errors). @throws FezzError FEZZ_ERR_ABI_BAD_BODY */
export function parseAbiJson(text: string, endpoint: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, `not valid JSON (${(err as Error).message})`]);
  }
}

/**
 * Validate an already-parsed ResponseInfo value (`endpoint` names it in errors) into a wire
 * response. @throws FezzError FEZZ_ERR_ABI_BAD_BODY
 */
export function fromResponseInfoValue(raw: unknown, endpoint: string): WireResponse {
  const parsed = responseInfoSchema.safeParse(raw);
  if (!parsed.success) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, describeIssues(parsed.error)]);
  return toWireResponse(parsed.data, endpoint);
}

/**
 * Parse and validate a push-response-stream prelude (the JSON text of its first line,
 * without the `\n`) into the status and flat headers of the streamed response.
 * @throws FezzError FEZZ_ERR_ABI_BAD_BODY naming what is wrong (bad JSON, a field).
 */
export function fromStreamPrelude(text: string): { status: number; headers: string[] } {
  const endpoint = 'push-response-stream prelude';
  const parsed = streamPreludeSchema.safeParse(parseAbiJson(text, endpoint));
  if (!parsed.success) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, describeIssues(parsed.error)]);
  const { status, headers } = toWireResponse({ ...parsed.data, body: '', bodyEncoding: 'utf8' }, endpoint);
  return { status, headers };
}

/** A validated ResponseInfo as a wire response. @throws FezzError FEZZ_ERR_ABI_BAD_BODY (bad base64) */
export function toWireResponse(info: ResponseInfo, endpoint: string): WireResponse {
  const headers: string[] = [];
  for (const name in info.headers) {
    const v = info.headers[name]!;
    if (Array.isArray(v)) for (const x of v) headers.push(name, x);
    else headers.push(name, v);
  }
  let body: string | Uint8Array | null = null;
  if (info.body !== '') {
    if (info.bodyEncoding === 'base64') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(info.body.replace(/\s+/g, ''))) {
        throw fezzError('FEZZ_ERR_ABI_BAD_BODY', [endpoint, 'field "body": not valid base64']);
      }
      body = Buffer.from(info.body, 'base64');
    } else {
      body = info.body;
    }
  }
  return { status: info.status, headers, body };
}
