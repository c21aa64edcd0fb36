/**
 * A local S3-compatible store for tests: s3rver (3.7.1) behind a small HTTP proxy that adds
 * what s3rver lacks and the fleet relies on: conditional PUTs. s3rver ignores `If-Match` and
 * `If-None-Match` on PUT (real S3 honours both on PutObject); the proxy checks them against
 * the object's current ETag (an anonymous HEAD to s3rver) and answers 412
 * PreconditionFailed as S3 does. Every request on one object key runs alone (serialised
 * per key), so check-then-write cannot interleave, and a GET never sees a half-written object.
 * Requests are forwarded byte for byte (the Host header too), so SigV4 signatures still verify.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

/** The part of s3rver's API used here (the package ships no types). */
interface S3rverServer { run(): Promise<AddressInfo>; close(): Promise<void> }
const S3rver = createRequire(import.meta.url)('s3rver') as new (options: {
  port: number; address: string; silent: boolean; directory: string; configureBuckets: Array<{ name: string }>;
}) => S3rverServer;

/** The credentials s3rver accepts by default. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface LocalS3 {
  /** The proxy's URL: use it as the endpoint (AWS_ENDPOINT_URL). */
  url: string;
  /** s3rver's own URL (no conditional writes: for tampering in tests). */
  upstreamUrl: string;
  /** Conditional PUTs seen, and how many of them were refused with 412. */
  stats: { conditionalPuts: number; preconditionFailed: number };
  close(): Promise<void>;
}

/**
 * Start s3rver on 127.0.0.1:0 (files in a temp directory, bucket `buckets` created) and the
 * conditional proxy in front of it, on 127.0.0.1:0.
 */
export async function startLocalS3(buckets: string[]): Promise<LocalS3> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-s3rver-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: buckets.map((name) => ({ name })) });
  const addr = await server.run();
  const upstream = { host: '127.0.0.1', port: addr.port };
  const stats = { conditionalPuts: 0, preconditionFailed: 0 };
  const locks = new Map<string, Promise<void>>();

  /** Run `fn` once every earlier request on `key` is done. */
  const serialised = (key: string, fn: () => Promise<void>): Promise<void> => {
    const prev = locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(key, tail);
    void tail.then(() => { if (locks.get(key) === tail) locks.delete(key); });
    return run;
  };

  /** The object's current ETag, or null when it does not exist. */
  const currentEtag = (pathname: string): Promise<string | null> => new Promise((resolve, reject) => {
    const req = http.request({ ...upstream, method: 'HEAD', path: pathname }, (res) => {
      res.resume();
      if (res.statusCode === 404) resolve(null);
      else if (res.statusCode === 200) resolve(String(res.headers.etag ?? ''));
      else reject(new Error(`HEAD ${pathname} answered ${res.statusCode}`));
    });
    req.on('error', reject);
    req.end();
  });

  const forward = (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => new Promise((resolve) => {
    const up = http.request({ ...upstream, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
      res.on('close', () => resolve());
    });
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err));
      resolve();
    });
    req.pipe(up);
  });

  const refuse = (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => new Promise((resolve) => {
    stats.preconditionFailed++;
    const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-Match</Condition></Error>';
    req.resume();
    req.on('end', () => {
      res.writeHead(412, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body, () => resolve());
    });
  });

  const proxy = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://x').pathname;
    void serialised(pathname, async () => {
      const ifMatch = req.headers['if-match'];
      const ifNoneMatch = req.headers['if-none-match'];
      if (req.method === 'PUT' && (ifMatch !== undefined || ifNoneMatch !== undefined)) {
        stats.conditionalPuts++;
        const etag = await currentEtag(pathname);
        const fails = (ifNoneMatch !== undefined && (ifNoneMatch.trim() === '*' ? etag !== null : etag === ifNoneMatch.trim())) ||
          (ifMatch !== undefined && (etag === null || (ifMatch.trim() !== '*' && ifMatch.trim() !== etag)));
        if (fails) return refuse(req, res);
      }
      return forward(req, res);
    }).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const port = (proxy.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    upstreamUrl: `http://127.0.0.1:${addr.port}`,
    stats,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((r) => proxy.close(() => r()));
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
