// Issue 11, egress from the sandbox tier: a sandboxed function's network namespace has only
// lo, and its fetch goes out through the host's egress proxy, which allows what
// permissions.outbound lists: an allowed address answers; a host:port not listed, an allowed
// name resolving to loopback, and the second hop of a redirect to a denied host are refused;
// a function granted no host has no network at all. Skipped (with the reason) only where
// bubblewrap cannot run and CI is not set.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { startHost, type TestHost } from '../helpers/host.js';

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

const CALLER = `export default { async fetch(request) {
  const target = new URL(request.url).searchParams.get('url');
  try {
    const res = await fetch(target);
    return Response.json({ status: res.status, body: await res.text() });
  } catch (err) {
    return Response.json({ error: String(err?.cause?.message ?? err?.message ?? err) });
  }
} };
`;

async function writeFn(dir: string, id: string, manifest: Record<string, unknown>): Promise<void> {
  await mkdir(path.join(dir, `${id}@1.0.0`), { recursive: true });
  await writeFile(path.join(dir, `${id}@1.0.0`, 'index.js'), CALLER);
  await writeFile(path.join(dir, `${id}@1.0.0`, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', isolation: 'sandbox', ...manifest }));
}

describe('egress from a sandbox goes only where permissions.outbound allows', { skip }, () => {
  let dir: string;
  let t: TestHost;
  const servers: http.Server[] = [];
  let allowed = 0;
  let denied = 0;

  const listen = async (handler: http.RequestListener): Promise<number> => {
    const s = http.createServer(handler);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return (s.address() as AddressInfo).port;
  };

  before(async () => {
    denied = await listen((_req, res) => res.end('denied upstream: must never be reached'));
    allowed = await listen((req, res) => {
      if (req.url === '/redirect') { res.writeHead(302, { location: `http://127.0.0.1:${denied}/` }).end(); return; }
      res.end(`allowed upstream ${req.url}`);
    });
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-sandbox-egress-'));
    await writeFn(dir, 'caller', { permissions: { outbound: [`127.0.0.1:${allowed}`, `localhost:${allowed}`] } });
    await writeFn(dir, 'offline', {});
    t = await startHost(dir);
  });
  after(async () => {
    await t.close();
    for (const s of servers) s.close();
    await rm(dir, { recursive: true, force: true });
  });

  const call = async (fn: string, url: string): Promise<{ status?: number; body?: string; error?: string }> => {
    const r = await fetch(`${t.url}/rpc/${fn}?url=${encodeURIComponent(url)}`);
    assert.equal(r.status, 200);
    return await r.json() as { status?: number; body?: string; error?: string };
  };

  it('an allowed address answers', async () => {
    assert.deepEqual(await call('caller', `http://127.0.0.1:${allowed}/hi`), { status: 200, body: 'allowed upstream /hi' });
  });

  it('a host:port not in the list is refused with the reason', async () => {
    const r = await call('caller', `http://127.0.0.1:${denied}/`);
    assert.match(r.error ?? '', /not in permissions\.outbound of caller@1\.0\.0/, JSON.stringify(r));
  });

  it('an allowed name that resolves to loopback is refused', async () => {
    const r = await call('caller', `http://localhost:${allowed}/`);
    assert.match(r.error ?? '', /not a public address/, JSON.stringify(r));
  });

  it('a redirect to a denied host is refused on the second hop', async () => {
    const r = await call('caller', `http://127.0.0.1:${allowed}/redirect`);
    assert.match(r.error ?? '', /not in permissions\.outbound/, JSON.stringify(r));
  });

  it('a function granted no host has no network', async () => {
    const r = await call('offline', `http://127.0.0.1:${allowed}/`);
    assert.match(r.error ?? '', /no outbound network/, JSON.stringify(r));
  });
});
