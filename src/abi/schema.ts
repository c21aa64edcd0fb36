/**
 * The request-id ABI's JSON bodies (DESIGN.md "The request-id ABI"), as zod schemas. The
 * host validates pushes against these, and `docs/abi.schema.json` is generated from them
 * (a test checks the file is current), so the documentation and the code cannot drift.
 */
import { z } from 'zod';

const headerMap = z.record(z.string(), z.string());

/** `GET /admin/get-request-info?request_id=N` answers this. */
export const requestInfoSchema = z.strictObject({
  /** Upper-case method, e.g. `"POST"`. */
  method: z.string(),
  /** Path and query as the function sees them, e.g. `"/echo/a?x=1"` (rewritten for `/rpc`). */
  url: z.string(),
  /** Path only, e.g. `"/echo/a"`. */
  path: z.string(),
  /** Raw query string without `?`; `""` when none. */
  query: z.string(),
  /** Lower-case names; repeated headers joined with `", "`. */
  headers: headerMap,
  /** The body: UTF-8 text, or base64 when `bodyEncoding` is `"base64"`. `""` when none, or when it is streamed. */
  body: z.string(),
  bodyEncoding: z.enum(['utf8', 'base64']),
  /** Epoch milliseconds after which the host answers 504 and forgets the request. */
  deadlineMs: z.number().int(),
  /**
   * Present and `true` when the body arrives over time (a large or chunked upload): `body` is
   * then `""`, and the bytes are read once with `GET /admin/get-request-body?request_id=N`.
   * Absent when the body, if any, is whole in `body`.
   */
  bodyStreamed: z.boolean().optional(),
}).meta({ title: 'RequestInfo' });

/** `POST /admin/push-response-info?request_id=N` takes this. */
export const responseInfoSchema = z.strictObject({
  /** HTTP status, 200–599. @default 200 */
  status: z.number().int().min(200).max(599).default(200),
  /** Response headers; an array value sends the header once per element (e.g. set-cookie). */
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name'), z.union([z.string(), z.array(z.string())])).default({}),
  /** UTF-8 text, or base64 with `bodyEncoding: "base64"`. @default "" */
  body: z.string().default(''),
  bodyEncoding: z.enum(['utf8', 'base64']).default('utf8'),
}).meta({ title: 'ResponseInfo' });

/** Largest push-response-stream prelude, in bytes, its terminating `\n` included. */
export const MAX_PRELUDE_BYTES = 64 * 1024;

/**
 * The prelude of `POST /admin/push-response-stream?request_id=N`: the first line of the
 * plugin's request body, compact JSON (no raw newline) ending in `\n`, at most
 * {@link MAX_PRELUDE_BYTES} bytes with the `\n`. Every byte after the `\n` is the response
 * body. Same status and header rules as ResponseInfo.
 */
export const streamPreludeSchema = z.strictObject({
  /** HTTP status, 200–599. @default 200 */
  status: responseInfoSchema.shape.status,
  /** Response headers; an array value sends the header once per element (e.g. set-cookie). */
  headers: responseInfoSchema.shape.headers,
}).meta({ title: 'StreamPrelude' });

/** `POST /admin/push-error-info?request_id=N` takes this; the client gets 500. */
export const errorInfoSchema = z.strictObject({
  message: z.string(),
}).meta({ title: 'ErrorInfo' });

/** Most ids one batch call may carry. */
export const MAX_BATCH = 256;

/** A request id in a JSON body: a decimal string, because 63-bit ids do not fit a double. */
const idString = z.string().regex(/^[0-9]{1,19}$/, 'must be a decimal request id string, e.g. "4242"');

/**
 * `POST /admin/get-request-info/batch` takes this: up to 256 ids, as decimal strings. An id
 * that is not one fails only its own element (400), like an unknown id (404).
 */
export const batchFetchSchema = z.strictObject({
  ids: z.array(z.string().describe('a decimal request id, e.g. "4242"')).min(1).max(MAX_BATCH),
}).meta({ title: 'BatchFetch' });

/** One element of `BatchPush.responses`: a `response` (as push-response-info) or an `error` (as push-error-info). */
export const batchPushItemSchema = z.union([
  z.strictObject({ id: idString, response: responseInfoSchema }),
  z.strictObject({ id: idString, error: errorInfoSchema }),
]).meta({ title: 'BatchPushItem' });

/** `POST /admin/push-response-info/batch` takes this: up to 256 answers. */
export const batchPushSchema = z.strictObject({
  responses: z.array(batchPushItemSchema).min(1).max(MAX_BATCH),
}).meta({ title: 'BatchPush' });

/**
 * What the host checks a batch push against first: the envelope only. Each element is then
 * checked on its own (batchPushItemSchema), so one bad answer spoils only itself.
 */
export const batchPushEnvelopeSchema = z.strictObject({
  responses: z.array(z.unknown()).min(1).max(MAX_BATCH),
});

/** The error fields of a failed batch element, as in the host's error bodies. */
const itemError = {
  id: z.string(),
  error: z.string(),
  code: z.string(),
  message: z.string(),
  statusCode: z.number().int(),
};

/** `get-request-info/batch` answers `{ "requests": [...] }`, one element per id, in order. */
export const batchFetchAnswerSchema = z.strictObject({
  requests: z.array(z.union([
    requestInfoSchema.extend({ id: z.string() }),
    z.strictObject(itemError),
  ])),
}).meta({ title: 'BatchFetchAnswer' });

/** `push-response-info/batch` answers `{ "results": [...] }`, one element per answer, in order. */
export const batchPushAnswerSchema = z.strictObject({
  results: z.array(z.union([
    z.strictObject({ id: z.string(), ok: z.literal(true) }),
    z.strictObject({ ok: z.literal(false), ...itemError, id: z.string().nullable() }),
  ])),
}).meta({ title: 'BatchPushAnswer' });

export type RequestInfo = z.output<typeof requestInfoSchema>;
export type ResponseInfo = z.output<typeof responseInfoSchema>;
export type StreamPrelude = z.output<typeof streamPreludeSchema>;

/** The JSON Schema document published as `docs/abi.schema.json`. */
export function abiJsonSchema(): Record<string, unknown> {
  const opts = { io: 'input', target: 'draft-2020-12' } as const;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'fezz request-id ABI bodies',
    description: 'Generated from src/abi/schema.ts by `npm run gen:abi-schema`; do not edit by hand.',
    $defs: {
      RequestInfo: strip(z.toJSONSchema(requestInfoSchema, opts)),
      ResponseInfo: strip(z.toJSONSchema(responseInfoSchema, opts)),
      StreamPrelude: strip(z.toJSONSchema(streamPreludeSchema, opts)),
      ErrorInfo: strip(z.toJSONSchema(errorInfoSchema, opts)),
      BatchFetch: strip(z.toJSONSchema(batchFetchSchema, opts)),
      BatchFetchAnswer: strip(z.toJSONSchema(batchFetchAnswerSchema, opts)),
      BatchPush: strip(z.toJSONSchema(batchPushSchema, opts)),
      BatchPushItem: strip(z.toJSONSchema(batchPushItemSchema, opts)),
      BatchPushAnswer: strip(z.toJSONSchema(batchPushAnswerSchema, opts)),
    },
  };
}

function strip(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = schema;
  return rest;
}
