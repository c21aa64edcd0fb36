// The streamed-response writer (src/host/write-stream.ts) on a real node:http server: chunks
// reach the client as they are produced, a slow client holds the producer back, a producer
// error resets the connection, a client that leaves cancels the stream, and the idle and max
// limits cut it.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { pipeBodyStream, type StreamEnd } from '../../src/host/write-stream.js';
import type { BodyStream } from '../../src/wire/stream-channel.js';

/** A BodyStream from an async generator, recording cancels and how far it was read. */
function fromGenerator(gen: () => AsyncGenerator<Uint8Array>): BodyStream & { cancelled: string | null; reads: number } {
  const it = gen();
  const s = {
    cancelled: null as string | null,
    reads: 0,
    async read(): Promise<Uint8Array | null> {
      s.reads++;
      const r = await it.next();
      return r.done === true ? null : r.value;
    },
    cancel(reason: string): void { s.cancelled = reason; void it.return(undefined); },
  };
  return s;
}

/** Every server a test started: closed after the suite even when an assertion failed first. */
const open = new Set<http.Server>();

async function serve(stream: BodyStream, limits = { idleMs: 5000, maxMs: 20_000 }): Promise<{ url: string; ended: Promise<{ end: StreamEnd; err?: unknown }>; close(): void }> {
  let resolveEnd!: (v: { end: StreamEnd; err?: unknown }) => void;
  const ended = new Promise<{ end: StreamEnd; err?: unknown }>((r) => { resolveEnd = r; });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    pipeBodyStream(res, stream, limits, (end, err) => resolveEnd({ end, err }));
  });
  open.add(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, ended, close: () => { server.closeAllConnections(); server.close(); } };
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('streamed response writer', () => {
  after(() => { for (const s of open) { s.closeAllConnections(); s.close(); } });
  it('each chunk reaches the client when it is produced (server-sent events)', async () => {
    const stream = fromGenerator(async function* () {
      for (let i = 0; i < 5; i++) { yield text(`data: ${i}\n\n`); await sleep(150); }
    });
    const s = await serve(stream);
    const t0 = performance.now();
    const res = await fetch(s.url);
    assert.equal(res.headers.get('transfer-encoding'), 'chunked');
    const reader = res.body!.getReader();
    const arrivals: number[] = [];
    let all = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arrivals.push(performance.now() - t0);
      all += new TextDecoder().decode(value);
    }
    assert.equal(all, [0, 1, 2, 3, 4].map((i) => `data: ${i}\n\n`).join(''));
    assert.ok(arrivals.length >= 4, `arrived in pieces: ${arrivals.map((a) => a.toFixed(0)).join(', ')} ms`);
    // The five events take 600 ms to produce: the first must not wait for the last.
    assert.ok(arrivals[0]! < 450, `the first event came before the stream ended: ${arrivals[0]!.toFixed(0)} ms`);
    assert.equal((await s.ended).end, 'complete');
    s.close();
  });

  it('a client that does not read holds the producer back (backpressure)', async () => {
    let produced = 0;
    const stream = fromGenerator(async function* () {
      for (;;) { produced += 65536; yield new Uint8Array(65536); if (produced > 512 * 1024 * 1024) return; }
    });
    const s = await serve(stream);
    const { port } = new URL(s.url);
    const sock = net.connect(Number(port), '127.0.0.1');
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    sock.pause(); // read nothing
    await sleep(500);
    const at = produced;
    await sleep(300);
    assert.ok(produced - at <= 256 * 1024, `the producer stopped: ${at} then ${produced}`);
    assert.ok(produced < 64 * 1024 * 1024, `bounded by socket buffers, not by the body: ${produced} bytes`);
    sock.destroy();
    assert.equal((await s.ended).end, 'client');
    assert.equal(stream.cancelled, 'client');
    s.close();
  });

  it('a producer error mid-way resets the connection: the client sees an error, not a short body', async () => {
    const stream = fromGenerator(async function* () {
      yield text('part one, ');
      await sleep(50);
      throw new Error('the function failed');
    });
    const s = await serve(stream);
    const res = await fetch(s.url);
    await assert.rejects(res.text());
    const e = await s.ended;
    assert.equal(e.end, 'error');
    assert.match(String(e.err), /the function failed/);
    s.close();
  });

  it('a client that leaves cancels the stream', async () => {
    const stream = fromGenerator(async function* () { for (;;) { yield text('tick\n'); await sleep(20); } });
    const s = await serve(stream);
    const ac = new AbortController();
    const res = await fetch(s.url, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    assert.equal((await s.ended).end, 'client');
    assert.equal(stream.cancelled, 'client');
    s.close();
  });

  it('idle and max limits cut the stream', async () => {
    const quiet = fromGenerator(async function* () { yield text('one'); await sleep(10_000); yield text('never'); });
    let s = await serve(quiet, { idleMs: 200, maxMs: 10_000 });
    let res = await fetch(s.url);
    await assert.rejects(res.text());
    assert.equal((await s.ended).end, 'idle');
    assert.equal(quiet.cancelled, 'idle');
    s.close();
    const endless = fromGenerator(async function* () { for (;;) { yield text('x'); await sleep(20); } });
    s = await serve(endless, { idleMs: 5000, maxMs: 300 });
    res = await fetch(s.url);
    await assert.rejects(res.text());
    assert.equal((await s.ended).end, 'max');
    s.close();
  });
});
