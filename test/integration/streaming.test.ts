// Issue 12: response bodies stream end to end, in every runtime (thread, sandbox, inline).
// A function that returns `new Response(readableStream)` gets its head sent at once and each
// chunk as it is enqueued (server-sent events arrive spaced, not all at the end); a large body
// runs in flat host memory; a client that stops reading holds the function's producer back
// (credit across the thread or process boundary); a client that leaves runs the stream's
// cancel() and aborts request.signal; a stream that fails mid-way resets the connection; a
// fetch() body passes through as a stream, decoded bodies without the upstream's encoding.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { startHost, type TestHost } from '../helpers/host.js';

const sandboxOk = (await probeSandbox()).ok;
if (!sandboxOk && process.env.CI === 'true') throw new Error('CI: bubblewrap must run here');

const SOURCE = `
let produced = 0;
let cancelled = null;
let aborted = null;
const enc = new TextEncoder();
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const p = url.pathname.replace(/^\\/[^/]+/, '');
    if (p === '/sse') {
      let i = 0;
      let timer;
      return new Response(new ReadableStream({
        start(c) {
          const tick = () => {
            c.enqueue(enc.encode('data: ' + i + '\\n\\n'));
            if (++i === 5) { c.close(); return; }
            timer = setTimeout(tick, 150);
          };
          tick();
        },
        cancel() { clearTimeout(timer); },
      }), { headers: { 'content-type': 'text/event-stream' } });
    }
    if (p === '/big') {
      const total = Number(url.searchParams.get('mb')) * 1024 * 1024;
      let sent = 0;
      const chunk = new Uint8Array(64 * 1024).fill(120);
      produced = 0;
      cancelled = null;
      aborted = null;
      request.signal.addEventListener('abort', () => { aborted = String(request.signal.reason && request.signal.reason.name); });
      return new Response(new ReadableStream({
        pull(c) {
          if (sent >= total) { c.close(); return; }
          c.enqueue(chunk.slice());
          sent += chunk.length;
          produced = sent;
        },
        cancel(reason) { cancelled = String(reason); },
      }, { highWaterMark: 0 }));
    }
    if (p === '/state') return Response.json({ produced, cancelled, aborted });
    if (p === '/fail') {
      let n = 0;
      return new Response(new ReadableStream({
        async pull(c) {
          if (n++ < 3) { c.enqueue(enc.encode('part ' + n + ' ')); return; }
          await new Promise((r) => setTimeout(r, 20));
          c.error(new Error('the database went away'));
        },
      }));
    }
    if (p === '/proxy') return fetch(env.UPSTREAM + url.searchParams.get('path'));
    if (p === '/text') return new Response('plain text');
    return new Response('not found', { status: 404 });
  },
};
`;

const RUNTIMES = [
  { name: 'thread', manifest: {} },
  { name: 'sandbox', manifest: { isolation: 'sandbox', permissions: { outbound: ['127.0.0.1:*'] } } },
  { name: 'inline', manifest: { runtime: 'inline' } },
] as const;

async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
}

describe('streamed responses (issue 12)', () => {
  let dir: string;
  let t: TestHost;
  let upstream: http.Server;

  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url === '/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const timer = setInterval(() => { res.write(`data: up${i}\n\n`); if (++i === 3) { clearInterval(timer); res.end(); } }, 150);
        return;
      }
      if (req.url === '/gzip') {
        const body = zlib.gzipSync(Buffer.from('hello, decoded world'));
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': String(body.length) });
        res.end(body);
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const port = (upstream.address() as net.AddressInfo).port;
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-streaming-'));
    for (const r of RUNTIMES) {
      if (r.name === 'sandbox' && !sandboxOk) continue;
      const d = path.join(dir, `s-${r.name}@1.0.0`);
      await mkdir(d);
      await writeFile(path.join(d, 'index.js'), SOURCE);
      await writeFile(path.join(d, 'fezz.json'), JSON.stringify({
        id: `s-${r.name}`, version: '1.0.0', entry: 'index.js', env: { UPSTREAM: `http://127.0.0.1:${port}` },
        routes: [{ method: 'GET', path: `/s-${r.name}/*` }], instances: { max: 1 }, limits: { streamIdleMs: 2000 }, ...r.manifest,
      }));
    }
    t = await startHost(dir);
    assert.deepEqual(t.host.problems, []);
  });

  after(async () => {
    await t?.close();
    upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const r of RUNTIMES) {
    const skip = r.name === 'sandbox' && !sandboxOk ? 'bubblewrap cannot run here' : false;
    const base = (): string => `${t.url}/s-${r.name}`;

    describe(`runtime ${r.name}`, { skip }, () => {
      it('server-sent events arrive one by one, the first at once', async () => {
        const t0 = performance.now();
        const res = await fetch(`${base()}/sse`);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), 'text/event-stream');
        assert.equal(res.headers.get('transfer-encoding'), 'chunked');
        const reader = res.body!.getReader();
        const arrivals: number[] = [];
        let text = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arrivals.push(performance.now() - t0);
          text += new TextDecoder().decode(value);
        }
        assert.equal(text, [0, 1, 2, 3, 4].map((i) => `data: ${i}\n\n`).join(''));
        assert.ok(arrivals.length >= 4, `in pieces: ${arrivals.map((a) => a.toFixed(0)).join(', ')} ms`);
        assert.ok(arrivals[arrivals.length - 1]! - arrivals[0]! >= 450, `spread over the function's 600 ms: ${arrivals.map((a) => a.toFixed(0)).join(', ')}`);
      });

      it('plain bodies keep the one-message path (a content-length, no chunking)', async () => {
        const res = await fetch(`${base()}/text`);
        assert.equal(await res.text(), 'plain text');
        assert.equal(res.headers.get('content-length'), '10');
      });

      it('200 MB streams through in flat host memory', async () => {
        const before = await rssOf(process.pid);
        const res = await fetch(`${base()}/big?mb=200`);
        let n = 0;
        let peak = before;
        let sampled = 0;
        for await (const chunk of res.body!) {
          n += (chunk as Uint8Array).byteLength;
          if (n - sampled > 16 * 1024 * 1024) { sampled = n; peak = Math.max(peak, await rssOf(process.pid)); }
        }
        assert.equal(n, 200 * 1024 * 1024);
        const growth = peak - before;
        console.log(`  ${r.name}: 200 MB streamed, host RSS growth ${(growth / 1048576).toFixed(1)} MB`);
        assert.ok(growth < 100 * 1024 * 1024, `host RSS grew by ${(growth / 1048576).toFixed(1)} MB`);
      });

      it('a client that reads nothing holds the producer back; leaving runs cancel() and aborts request.signal', async () => {
        const { port } = new URL(t.url);
        const sock = net.connect(Number(port), '127.0.0.1');
        sock.write(`GET /s-${r.name}/big?mb=500 HTTP/1.1\r\nHost: x\r\n\r\n`);
        await new Promise((res) => setTimeout(res, 600));
        sock.pause();
        await new Promise((res) => setTimeout(res, 800));
        const a = await (await fetch(`${base()}/state`)).json() as { produced: number };
        await new Promise((res) => setTimeout(res, 400));
        const b = await (await fetch(`${base()}/state`)).json() as { produced: number };
        console.log(`  ${r.name}: producer at ${(a.produced / 1048576).toFixed(1)} MB, 400 ms later ${(b.produced / 1048576).toFixed(1)} MB`);
        assert.ok(b.produced - a.produced <= 1024 * 1024, 'the producer waits for the client');
        assert.ok(b.produced < 64 * 1024 * 1024, `bounded by windows and socket buffers, not the body: ${b.produced}`);
        sock.destroy();
        let s = { cancelled: null as string | null, aborted: null as string | null };
        for (let i = 0; i < 50 && s.cancelled === null; i++) {
          await new Promise((res) => setTimeout(res, 50));
          s = await (await fetch(`${base()}/state`)).json() as typeof s;
        }
        assert.equal(s.cancelled, 'client', 'the stream\'s cancel() ran with the reason');
        if (r.name !== 'inline' || s.aborted !== null) assert.equal(s.aborted, 'AbortError', 'request.signal aborted');
      });

      it('a stream that fails mid-way resets the connection (no truncated body taken as complete)', async () => {
        const res = await fetch(`${base()}/fail`);
        assert.equal(res.status, 200);
        await assert.rejects(res.text());
        await new Promise((res) => setTimeout(res, 100));
        assert.ok(t.logs.some((l) => l.msg === 'response stream failed mid-way: connection reset' && l.fn === `s-${r.name}@1.0.0` && typeof l.requestId === 'string'));
      });

      it('a fetch() body passes through as a stream; a decoded gzip body goes out without content-encoding', async () => {
        const t0 = performance.now();
        const res = await fetch(`${base()}/proxy?path=/events`);
        const reader = res.body!.getReader();
        const first = await reader.read();
        const firstAt = performance.now() - t0;
        let text = new TextDecoder().decode(first.value);
        for (let c = await reader.read(); !c.done; c = await reader.read()) text += new TextDecoder().decode(c.value);
        assert.equal(text, 'data: up0\n\ndata: up1\n\ndata: up2\n\n');
        assert.ok(firstAt < 350, `the first upstream event came through before the upstream finished: ${firstAt.toFixed(0)} ms`);
        const gz = await fetch(`${base()}/proxy?path=/gzip`);
        assert.equal(gz.headers.get('content-encoding'), null);
        assert.equal(await gz.text(), 'hello, decoded world');
      });
    });
  }
});
