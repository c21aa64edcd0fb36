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
  /** The body: UTF-8 text, or base64 when `bodyEncoding` is `"base64"`. `""` when none. */
  body: z.string(),
  bodyEncoding: z.enum(['utf8', 'base64']),
  /** Epoch milliseconds after which the host answers 504 and forgets the request. */
  deadlineMs: z.number().int(),
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

/** `POST /admin/push-error-info?request_id=N` takes this; the client gets 500. */
export const errorInfoSchema = z.strictObject({
  message: z.string(),
}).meta({ title: 'ErrorInfo' });

export type RequestInfo = z.output<typeof requestInfoSchema>;
export type ResponseInfo = z.output<typeof responseInfoSchema>;

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
      ErrorInfo: strip(z.toJSONSchema(errorInfoSchema, opts)),
    },
  };
}

function strip(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = schema;
  return rest;
}
