/**
 * The pure parts of the SSE client (sse-client.ts), kept apart so they can be unit tested:
 * an incremental HTTP/1.1 response reader (head, then the body as `content-length`, chunked
 * or until close, with the chunked framing taken off) and an incremental `text/event-stream`
 * parser (https://html.spec.whatwg.org/multipage/server-sent-events.html, lines ended by LF or
 * CRLF; a lone CR is not taken as a line end).
 */

/** A response head: status code and headers (names lower-cased; a repeated one keeps the last). */
export interface HttpHead {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
}

const EMPTY = Buffer.alloc(0);
/** A head (or a chunk-size line) longer than this is refused. */
const MAX_LINE_BYTES = 64 * 1024;

type Mode = "head" | "size" | "data" | "data-crlf" | "trailers" | "length" | "close" | "done";

/**
 * Reads one HTTP/1.1 response from the bytes of a socket, fed as they arrive. `push` returns
 * the body bytes each call completed (views of the input, in order); `head` is set once the
 * head is in; `done` once the body is complete (last chunk and trailers, or `content-length`
 * bytes; a body delimited by the connection's end is complete at `end()`). Throws on bytes
 * that are not a response.
 */
export class HttpResponseReader {
  head: HttpHead | null = null;
  #mode: Mode = "head";
  #pending: Buffer = EMPTY;
  #left = 0;

  get done(): boolean {
    return this.#mode === "done";
  }

  push(bytes: Buffer): Buffer[] {
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, bytes]) : bytes;
    this.#pending = EMPTY;
    const out: Buffer[] = [];
    let i = 0;
    const wait = (): Buffer[] => {
      if (buf.length - i > MAX_LINE_BYTES) throw new Error(`HTTP ${this.#mode === "head" ? "head" : "chunk line"} over ${MAX_LINE_BYTES} bytes`);
      this.#pending = buf.subarray(i);
      return out;
    };
    while (i < buf.length && this.#mode !== "done") {
      switch (this.#mode) {
        case "head": {
          const end = buf.indexOf("\r\n\r\n", i, "latin1");
          if (end === -1) return wait();
          this.head = parseHead(buf.toString("latin1", i, end));
          i = end + 4;
          const te = this.head.headers.get("transfer-encoding");
          const length = this.head.headers.get("content-length");
          if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) this.#mode = "size";
          else if (length !== undefined) {
            this.#left = Number(length);
            if (!Number.isSafeInteger(this.#left) || this.#left < 0) throw new Error(`bad content-length ${JSON.stringify(length)}`);
            this.#mode = this.#left === 0 ? "done" : "length";
          } else if (this.head.status === 204 || this.head.status === 304) this.#mode = "done";
          else this.#mode = "close";
          break;
        }
        case "size": {
          const end = buf.indexOf("\r\n", i, "latin1");
          if (end === -1) return wait();
          const line = buf.toString("latin1", i, end);
          const hex = line.split(";")[0]!.trim();
          const size = /^[0-9a-fA-F]{1,12}$/.test(hex) ? Number.parseInt(hex, 16) : Number.NaN;
          if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`);
          i = end + 2;
          if (size === 0) this.#mode = "trailers";
          else {
            this.#left = size;
            this.#mode = "data";
          }
          break;
        }
        case "data":
        case "length": {
          const n = Math.min(this.#left, buf.length - i);
          out.push(buf.subarray(i, i + n));
          i += n;
          this.#left -= n;
          if (this.#left === 0) this.#mode = this.#mode === "data" ? "data-crlf" : "done";
          break;
        }
        case "data-crlf": {
          if (buf.length - i < 2) return wait();
          if (buf[i] !== 0x0d || buf[i + 1] !== 0x0a) throw new Error("chunk data not followed by CRLF");
          i += 2;
          this.#mode = "size";
          break;
        }
        case "trailers": {
          const end = buf.indexOf("\r\n", i, "latin1");
          if (end === -1) return wait();
          this.#mode = end === i ? "done" : "trailers"; // an empty line ends the trailers
          i = end + 2;
          break;
        }
        case "close":
          out.push(buf.subarray(i));
          i = buf.length;
          break;
      }
    }
    return out;
  }

  /** The connection ended: whether the response was complete. */
  end(): boolean {
    if (this.#mode === "close") this.#mode = "done";
    return this.#mode === "done";
  }
}

function parseHead(text: string): HttpHead {
  const [statusLine = "", ...lines] = text.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (match?.[1] === undefined) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(statusLine.slice(0, 40))}`);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(match[1]), headers };
}

/** One dispatched event: `event` is `"message"` when the stream named none. */
export interface SseEvent {
  readonly id: string | null;
  readonly event: string;
  readonly data: string;
}

/**
 * Parses `text/event-stream` text fed in arbitrary pieces (decode bytes with a streaming
 * TextDecoder first). `push` returns the events the piece completed: an event is dispatched
 * at the blank line after its fields; comments (`:` lines) and events without data are not.
 */
export class SseParser {
  #partial = "";
  #data: string[] = [];
  #event = "";
  #id: string | null = null;

  push(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    let text2 = this.#partial + text;
    let start = 0;
    for (;;) {
      const nl = text2.indexOf("\n", start);
      if (nl === -1) break;
      const end = nl > start && text2.charCodeAt(nl - 1) === 13 ? nl - 1 : nl; // CRLF
      this.#line(text2.slice(start, end), out);
      start = nl + 1;
    }
    text2 = text2.slice(start);
    this.#partial = text2;
    return out;
  }

  #line(line: string, out: SseEvent[]): void {
    if (line === "") {
      if (this.#data.length > 0) out.push({ id: this.#id, event: this.#event === "" ? "message" : this.#event, data: this.#data.join("\n") });
      this.#data = [];
      this.#event = "";
      return;
    }
    if (line.startsWith(":")) return; // a comment
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.#data.push(value);
    else if (field === "event") this.#event = value;
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    // retry and unknown fields: ignored
  }
}

/**
 * The send time an event of the bench's `sse` handler carries (`data: {"n":..,"t":..}`), with
 * its number; null when the data is not that shape.
 */
export function benchEventData(data: string): { n: number; t: number } | null {
  try {
    const parsed = JSON.parse(data) as unknown;
    if (typeof parsed !== "object" || parsed === null) return null;
    const { n, t } = parsed as { n?: unknown; t?: unknown };
    return typeof n === "number" && typeof t === "number" ? { n, t } : null;
  } catch {
    return null;
  }
}
