/**
 * The wire form: how a request and its response cross a boundary (host thread <-> worker
 * thread, host <-> plugin). Plain data only, cheap to structured-clone, so that no web
 * `Request`/`Response` object has to be built on the host side.
 *
 * Headers travel as a flat array `[name0, value0, name1, value1, ...]`, the shape of Node's
 * `IncomingMessage.rawHeaders` and of the array `ServerResponse.writeHead` accepts, so the
 * host passes them through without conversion.
 *
 * Bodies are whole for now (`Uint8Array` or, for text responses, a `string`, which clones
 * faster than bytes and is encoded once by the socket). A streamed body will be added as a
 * separate message kind carrying chunks under the same request id; nothing here assumes a
 * body is complete at header time other than the `body` field itself.
 */

/** A request as the function sees it. */
export interface WireRequest {
  /** Upper-case method, e.g. `"GET"`. */
  method: string;
  /** Absolute URL the function sees, e.g. `"http://localhost:3000/todos/1?x=1"` (path rewritten for `/rpc`). */
  url: string;
  /** Flat `[name, value, ...]`, names as the client sent them. */
  headers: string[];
  /** The whole body, or `null` when there is none. */
  body: Uint8Array | null;
}

/** A response as the host writes it. */
export interface WireResponse {
  /** HTTP status, 200–599. */
  status: number;
  /** Flat `[name, value, ...]`. `set-cookie` may appear several times. */
  headers: string[];
  /** Text (written as UTF-8), bytes, or `null` for an empty body. */
  body: string | Uint8Array | null;
}
