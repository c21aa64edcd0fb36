import type { IncomingMessage } from 'node:http';
import { fezzError } from '../errors.js';

/** Most time a body read whole may take, in ms (what Node's requestTimeout gave before). */
export const BODY_MAX_MS = 300_000;

/** Whether the request announces a body (Content-Length > 0 or Transfer-Encoding). */
export function hasBody(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') return raw[i + 1] !== '0';
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true;
  }
  return false;
}

/**
 * Read the whole request body, at most `limit` bytes.
 * With `Expect: 100-continue` (`expectContinue`), `100 Continue` is sent only once the
 * declared length is known to fit: a body over the limit is refused before the client sends it.
 * @param idleMs drop the body (408) after this many ms without a byte.
 * @returns the bytes, or `null` when the request has no body.
 * @throws FezzError FEZZ_ERR_BODY_TOO_LARGE (413), as a rejection, as soon as the declared
 *   length or the bytes received pass `limit`; the rest is not read. FEZZ_ERR_BODY_STALLED
 *   (408) after `idleMs` without a byte. FEZZ_ERR_REQUEST_TIMEOUT (408) when the whole body
 *   took longer than `totalMs` (a trickle). FEZZ_ERR_BAD_REQUEST (400) when the client broke it off.
 */
export function readBody(req: IncomingMessage, limit: number, idleMs: number, expectContinue?: () => void, totalMs = BODY_MAX_MS): Promise<Uint8Array | null> {
  if (!hasBody(req)) return Promise.resolve(null);
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(fezzError('FEZZ_ERR_BODY_TOO_LARGE', [limit]));
  expectContinue?.();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      cleanup();
      req.pause();
      reject(fezzError('FEZZ_ERR_BODY_STALLED', [idleMs]));
    }, idleMs);
    const total = setTimeout(() => {
      cleanup();
      req.pause();
      reject(fezzError('FEZZ_ERR_REQUEST_TIMEOUT', []));
    }, totalMs);
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(fezzError('FEZZ_ERR_BODY_TOO_LARGE', [limit]));
        return;
      }
      timer.refresh();
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => { cleanup(); reject(fezzError('FEZZ_ERR_BAD_REQUEST', [err.message], err)); };
    // The client went away mid-body: nothing more will come.
    const onAborted = (): void => { cleanup(); reject(fezzError('FEZZ_ERR_BAD_REQUEST', ['the client closed the connection during the body'])); };
    function cleanup(): void {
      clearTimeout(timer);
      clearTimeout(total);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
