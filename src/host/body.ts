import type { IncomingMessage } from 'node:http';
import { fezzError } from '../errors.js';

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
 * @returns the bytes, or `null` when the request has no body.
 * @throws FezzError FEZZ_ERR_BODY_TOO_LARGE (413), as a rejection, as soon as the declared
 *   length or the bytes received pass `limit`; the rest is not read.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array | null> {
  if (!hasBody(req)) return Promise.resolve(null);
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(fezzError('FEZZ_ERR_BODY_TOO_LARGE', [limit]));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(fezzError('FEZZ_ERR_BODY_TOO_LARGE', [limit]));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => { cleanup(); reject(fezzError('FEZZ_ERR_BAD_REQUEST', [err.message], err)); };
    function cleanup(): void {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
