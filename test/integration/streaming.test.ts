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
import { ServeProcess } from '../helpers/chaos-host.js';

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
    if (p === '/upload') {
      const reader = request.body.getReader();
      let n = 0, chunks = 0, max = 0;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          n += value.byteLength; chunks++; max = Math.max(max, value.byteLength);
        }
      } catch (err) {
        return Response.json({ failed: String(err && err.message), n }, { status: 500 });
      }
      return Response.json({ n, chunks, max });
    }
    if (p === '/upload-text') return Response.json({ length: (await request.text()).length });
    if (p === '/form') {
      const form = await request.formData();
      const file = form.get('file');
      return Response.json({ name: form.get('name'), size: file.size });
    }
    return new Response('not found', { status: 404 });
  },
};
`;

const RUNTIMES = [
  // The proxy routes fetch() an upstream: on Node >= 25 a thread gets the network only when granted.
  { name: 'thread', manifest: { permissions: { outbound: ['127.0.0.1:*'] } } },
  { name: 'sandbox', manifest: { isolation: 'sandbox', permissions: { outbound: ['127.0.0.1:*'] } } },
  { name: 'inline', manifest: { runtime: 'inline' } },
] as const;

/** Resident memory of process `pid`, in bytes (the host runs in its own process: the client's buffers are not counted). */
async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
}

describe('streamed responses (issue 12)', () => {
  let dir: string;
  let t: { url: string; pid: number; logs: Array<Record<string, unknown>> };
  let host: ServeProcess;
  let upstream: http.Server;

  before(async () => {
    upstream = http.createServer((req, res) => {
      if (req.url === '/events') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let i = 0;
        const timer = setInterval(() => { res.write(`data: up${i}\n\n`); if (++i === 3) { clearInterval(timer); res.end(); } }, 400);
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
        routes: [{ method: 'GET', path: `/s-${r.name}/*` }, { method: 'POST', path: `/s-${r.name}/*` }], instances: { max: 1 },
        limits: { streamIdleMs: 2000, maxBodyBytes: 300 * 1024 * 1024 }, ...r.manifest,
      }));
    }
    host = new ServeProcess({ dir, cacheDir: path.join(dir, '.cache'), token: 'streaming-test-token-0123456789abcdef', graceMs: 2000, startTimeoutMs: 10_000, logFile: path.join(dir, 'host.log'), listenTimeoutMs: 30_000 }, true);
    await host.listening(30_000);
    t = { url: host.url, pid: host.child.pid!, get logs() { return host.logs.map((l) => l.line as Record<string, unknown>); } };
  });

  after(async () => {
    if (host !== undefined && host.exit === null) {
      host.child.kill('SIGTERM');
      await Promise.race([host.exited, new Promise((r) => setTimeout(r, 5000))]);
      if (host.exit === null) host.child.kill('SIGKILL');
    }
    await host?.closeLog();
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
        const before = await rssOf(t.pid);
        const res = await fetch(`${base()}/big?mb=200`);
        let n = 0;
        let peak = before;
        let sampled = 0;
        for await (const chunk of res.body!) {
          n += (chunk as Uint8Array).byteLength;
          if (n - sampled > 16 * 1024 * 1024) { sampled = n; peak = Math.max(peak, await rssOf(t.pid)); }
        }
        assert.equal(n, 200 * 1024 * 1024);
        const growth = peak - before;
        console.log(`  ${r.name}: 200 MB streamed, host RSS growth ${(growth / 1048576).toFixed(1)} MB`);
        // Buffered, the body alone would be 200 MB; streamed, the host holds windows and garbage.
        assert.ok(growth < 150 * 1024 * 1024, `host RSS grew by ${(growth / 1048576).toFixed(1)} MB`);
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

      it('an upload streams to the function as it arrives: 200 MB chunked in flat host memory', async () => {
        const before = await rssOf(t.pid);
        const total = 200 * 1024 * 1024;
        let sent = 0;
        let peak = before;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (sent >= total) { c.close(); return; }
            c.enqueue(new Uint8Array(256 * 1024).fill(7));
            sent += 256 * 1024;
            if (sent % (32 * 1024 * 1024) === 0) peak = Math.max(peak, await rssOf(t.pid));
          },
        });
        const res = await fetch(`${base()}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
        const j = await res.json() as { n: number; chunks: number; max: number };
        assert.equal(res.status, 200, JSON.stringify(j));
        assert.equal(j.n, total);
        assert.ok(j.chunks > 100, `it came in pieces: ${j.chunks}, the largest ${j.max} bytes`);
        const growth = peak - before;
        console.log(`  ${r.name}: 200 MB uploaded in ${j.chunks} chunks (largest ${j.max} B), host RSS growth ${(growth / 1048576).toFixed(1)} MB`);
        assert.ok(growth < 150 * 1024 * 1024, `host RSS grew by ${(growth / 1048576).toFixed(1)} MB`);
      });

      it('text() and formData() of a large body still work', async () => {
        const big = 'x'.repeat(3 * 1024 * 1024);
        let res = await fetch(`${base()}/upload-text`, { method: 'POST', body: big });
        assert.deepEqual(await res.json(), { length: big.length });
        const form = new FormData();
        form.set('name', 'report');
        form.set('file', new Blob([new Uint8Array(2 * 1024 * 1024)]), 'r.bin');
        res = await fetch(`${base()}/form`, { method: 'POST', body: form });
        assert.deepEqual(await res.json(), { name: 'report', size: 2 * 1024 * 1024 });
      });

      it('a streamed upload over maxBodyBytes gets 413 the moment it crosses the limit', async () => {
        // 300 MB is the limit here: send more, slowly enough that the upload is far from done.
        let sent = 0;
        const t0 = performance.now();
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (sent > 400 * 1024 * 1024) { c.close(); return; }
            c.enqueue(new Uint8Array(1024 * 1024));
            sent += 1024 * 1024;
          },
        });
        const res = await fetch(`${base()}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit).catch((err: Error) => err);
        if (res instanceof Error) {
          // The host may close the connection while the client is still sending: then the
          // client sees a reset instead of reading the 413. Either way the body was cut.
          assert.ok(sent < 400 * 1024 * 1024, `the upload was cut: ${sent}`);
        } else {
          assert.equal(res.status, 413, await res.clone().text());
          assert.match(await res.text(), /FEZZ_ERR_BODY_TOO_LARGE/);
          assert.equal(res.headers.get('connection'), 'close');
        }
        console.log(`  ${r.name}: over the limit after ${(sent / 1048576).toFixed(0)} MB sent, ${(performance.now() - t0).toFixed(0)} ms`);
        assert.ok(sent < 380 * 1024 * 1024, `answered before the client sent everything: ${sent}`);
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
        assert.ok(firstAt < 1000, `the first upstream event (at 400 ms) came through before the upstream finished (1200 ms): ${firstAt.toFixed(0)} ms`);
        const gz = await fetch(`${base()}/proxy?path=/gzip`);
        assert.equal(gz.headers.get('content-encoding'), null);
        assert.equal(await gz.text(), 'hello, decoded world');
      });
    });
  }
});
