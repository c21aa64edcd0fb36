// Streaming in the request-id ABI (docs/abi.md "Streamed bodies"): a real host with real
// plugins, no mocks. POST /admin/push-response-stream (a JSON prelude line, then the body as
// a chunked upload passed on to the client with backpressure) and GET /admin/get-request-body.
// Plugins: test/fixtures/plugins/stream-py@1.0.0 and stream-probe-py@1.0.0 (Python), and the
// SSE example examples/functions/sse-go@1.0.0 (Go; built by scripts/build-plugins.sh).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { EXAMPLES, FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The first stderr line of `fn` matching `re` (its match), once it is logged. */
function logLine(t: TestHost, fn: string, re: RegExp, ms = 10_000): Promise<RegExpExecArray> {
  return until(`${fn} to log ${re}`, () => {
    for (const l of t.logs) {
      if (l.fn !== fn || l.stream !== 'stderr') continue;
      const m = re.exec(l.msg);
      if (m !== null) return m;
    }
    return undefined;
  }, ms);
}

/** GET `url` with node:http; resolves with the response once its head is in. */
function open(url: string, method = 'GET'): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false }, (res) => resolve({ req, res }));
    req.on('error', reject);
    req.end();
  });
}

/** Read `res` to its end: the body, or the error that cut it (a reset connection). */
function drain(res: http.IncomingMessage): Promise<{ body: Buffer; error: Error | null }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (error: Error | null): void => {
      if (settled) return;
      settled = true;
      resolve({ body: Buffer.concat(chunks), error });
    };
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => done(null));
    res.on('error', (err) => done(err));
    res.on('aborted', () => done(new Error('aborted')));
    res.on('close', () => { if (!res.complete) done(new Error('closed before the end')); });
  });
}

describe('streamed responses from process plugins (push-response-stream)', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'plugins')); });
  after(async () => { await t.close(); });

  it('each chunk reaches the client as the plugin writes it', async () => {
    const { res } = await open(`${t.url}/rpc/stream-py/ticks?n=10`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'text/plain');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.match(String(res.headers['x-request-id']), /^\d+$/);
    const arrivals: Array<{ at: number; line: string }> = [];
    let buf = '';
    res.setEncoding('utf8');
    for await (const chunk of res) {
      buf += chunk as string;
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        arrivals.push({ at: Date.now(), line: buf.slice(0, nl) });
        buf = buf.slice(nl + 1);
      }
    }
    assert.equal(arrivals.length, 10);
    const produced = arrivals.map((a) => Number(a.line.split(' ')[2]));
    // The first line was in the client's hands before the plugin produced the last one.
    assert.ok(arrivals[0]!.at < produced[9]!, `first arrived at ${arrivals[0]!.at}, last produced at ${produced[9]}`);
    assert.ok(arrivals[9]!.at - arrivals[0]!.at >= 450, 'lines arrived spaced out (900 ms of production), not all at once');
    await logLine(t, 'stream-py@1.0.0', /^stream-py: \/ticks \d+: ok$/);
  });

  it('a 200 MB streamed response arrives intact while the host\'s memory stays flat', async (ctx) => {
    // Warm up (the plugin process, buffers), then measure from there.
    const warm = await fetch(`${t.url}/rpc/stream-py/big?mb=4`);
    assert.equal((await warm.arrayBuffer()).byteLength, 4 * 1024 * 1024);
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 50);
    try {
      const total = 200 * 1024 * 1024;
      const res = await fetch(`${t.url}/rpc/stream-py/big?mb=200`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), null);
      let offset = 0;
      let bad = -1;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (bad === -1) {
          for (let i = 0; i < chunk.length; i++) {
            if (chunk[i] !== (offset + i) % 251) { bad = offset + i; break; }
          }
        }
        offset += chunk.length;
      }
      assert.equal(bad, -1, `byte ${bad} differs from the pattern`);
      assert.equal(offset, total);
    } finally {
      clearInterval(sampler);
    }
    const growthMb = (peak - base) / 1024 / 1024;
    ctx.diagnostic(`host RSS: ${(base / 1024 / 1024).toFixed(0)} MB before, peak +${growthMb.toFixed(1)} MB`);
    assert.ok(growthMb < 100, `host RSS grew by ${growthMb.toFixed(1)} MB while streaming 200 MB`);
    await logLine(t, 'stream-py@1.0.0', /^stream-py: \/big \d+: pushed 209715200 bytes$/);
  });

  it('a client that leaves mid-stream ends the plugin\'s push with 499 and frees the request', async () => {
    const { req, res } = await open(`${t.url}/rpc/stream-py/forever`);
    assert.equal(res.statusCode, 200);
    const id = String(res.headers['x-request-id']);
    await new Promise<void>((resolve) => res.once('data', () => resolve()));
    req.destroy();
    const m = await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /forever ${id}: push failed: (\\d+) (\\S+)$`));
    assert.equal(m[1], '499');
    assert.equal(m[2], 'FEZZ_ERR_ABI_STREAM_CANCELLED');
    assert.equal(t.host.pendingRequests, 0);
    assert.ok(t.logs.some((l) => l.requestId === id && l.msg.startsWith('streamed response cancelled by the host')));
  });

  it('a plugin that sends nothing for streamIdleMs gets 408 and the client a reset', async () => {
    const { res } = await open(`${t.url}/rpc/stream-py/silent`);
    assert.equal(res.statusCode, 200);
    const id = String(res.headers['x-request-id']);
    const start = Date.now();
    const { error } = await drain(res);
    assert.ok(error !== null, 'the client saw the body cut, not a complete one');
    assert.ok(Date.now() - start >= 1500, 'cut after streamIdleMs (2 s)');
    const m = await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /silent ${id}: push failed: (\\d+) (\\S+)$`));
    assert.deepEqual([m[1], m[2]], ['408', 'FEZZ_ERR_ABI_STREAM_TIMEOUT']);
  });

  it('a plugin whose connection breaks mid-way resets the client\'s connection', async () => {
    const { res } = await open(`${t.url}/rpc/stream-py/break`);
    assert.equal(res.statusCode, 200);
    const { body, error } = await drain(res);
    assert.equal(body.toString(), 'partial body\n');
    assert.ok(error !== null, 'the client did not take the cut body as complete');
    const id = String(res.headers['x-request-id']);
    await until('the host to log the broken stream', () => t.logs.find((l) => l.requestId === id && /broke mid-way/.test(l.msg)));
  });

  it('a Fezz-Stream-Error trailer resets the client\'s connection; the plugin\'s push is 200', async () => {
    const { res } = await open(`${t.url}/rpc/stream-py/abort`);
    const { body, error } = await drain(res);
    assert.equal(body.toString(), 'partial body\n');
    assert.ok(error !== null);
    const id = String(res.headers['x-request-id']);
    await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /abort ${id}: aborted: ok$`));
    const line = await until('the host to log the abort', () => t.logs.find((l) => l.requestId === id && /aborted its streamed response/.test(l.msg)));
    assert.equal(line.pluginError, 'disk on fire');
  });

  it('HEAD: the client gets the head only; the plugin\'s push still succeeds', async () => {
    const { res } = await open(`${t.url}/rpc/stream-py/ticks?n=3`, 'HEAD');
    assert.equal(res.statusCode, 200);
    const { body, error } = await drain(res);
    assert.equal(error, null);
    assert.equal(body.length, 0);
    await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /ticks ${String(res.headers['x-request-id'])}: ok$`));
  });

  it('a malformed prelude is 400 for the plugin and 502 for the client', async () => {
    const res = await get(`${t.url}/rpc/stream-py/badprelude`);
    assert.equal(res.status, 502);
    assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_PLUGIN_BAD_RESPONSE');
    await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /badprelude ${res.headers.get('x-request-id')}: status 400$`));
  });

  it('a prelude with no newline within 64 KiB is 413 for the plugin and 502 for the client', async () => {
    const res = await get(`${t.url}/rpc/stream-py/bigprelude`);
    assert.equal(res.status, 502);
    assert.match(JSON.parse(res.text).message, /FEZZ_ERR_ABI_PRELUDE_TOO_LARGE|prelude exceeds 65536 bytes/);
    await logLine(t, 'stream-py@1.0.0', new RegExp(`^stream-py: /bigprelude ${res.headers.get('x-request-id')}: status 413$`));
  });

  it('get-request-body answers the buffered body as raw bytes', async () => {
    const body = new Uint8Array(100_000).map((_, i) => (i * 7 + 3) % 256); // not UTF-8
    const res = await fetch(`${t.url}/rpc/stream-py/body`, { method: 'POST', body });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-body-same'), '1');
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
    const empty = await fetch(`${t.url}/rpc/stream-py/body`, { method: 'POST' });
    assert.equal(empty.status, 200);
    assert.equal((await empty.arrayBuffer()).byteLength, 0);
  });

  it('a plugin reads the request body with get-request-body while it streams its response (20 MB, chunked)', async (ctx) => {
    const size = 20 * 1024 * 1024;
    const piece = new Uint8Array(1024 * 1024).map((_, i) => (i * 13) % 256);
    const body = new ReadableStream<Uint8Array>({
      start(c) { for (let i = 0; i < size / piece.length; i++) c.enqueue(piece); c.close(); },
    });
    const res = await fetch(`${t.url}/rpc/stream-py/echo-stream`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 200);
    let offset = 0;
    let bad = -1;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      for (let i = 0; bad === -1 && i < chunk.length; i++) if (chunk[i] !== piece[(offset + i) % piece.length]) bad = offset + i;
      offset += chunk.length;
    }
    assert.equal(bad, -1);
    assert.equal(offset, size);
    // Streamed once the plugin runtimes stream request bodies (WireRequest.bodyStream); buffered before.
    ctx.diagnostic(`the host streamed the request body to the plugin: ${res.headers.get('x-body-streamed') === '1'}`);
  });

  it('a plugin token reaches only its own ids on both endpoints; admin routes stay 403', async () => {
    const held = get(`${t.url}/rpc/stream-py/hold`);
    const other = (await logLine(t, 'stream-py@1.0.0', /^holding (\d+)$/))[1]!;
    const res = await get(`${t.url}/rpc/stream-probe-py/probe?other=${other}`);
    assert.equal(res.status, 200, res.text);
    const p = JSON.parse(res.text) as Record<string, { status: number; body: { code: string; message: string } }>;
    const unknown = (id: string) => ({ error: 'Not Found', code: 'FEZZ_ERR_ABI_UNKNOWN_ID', message: `No pending request ${id} (unknown, answered or expired)`, statusCode: 404 });
    assert.deepEqual(p.otherBody, { status: 404, body: unknown(other) });
    assert.deepEqual(p.otherStream, { status: 404, body: unknown(other) });
    assert.deepEqual(p.unknownBody, { status: 404, body: unknown('1') });
    assert.deepEqual(p.unknownStream, { status: 404, body: unknown('1') });
    assert.equal(p.admin!.status, 403);
    assert.equal(p.admin!.body.code, 'FEZZ_ERR_ABI_FORBIDDEN');
    // The held request was untouched by the probe: its own plugin answers it.
    const h = await held;
    assert.deepEqual([h.status, h.text], [200, 'released']);
  });

  it('an unknown id is refused before the upload is read; an answered one is 409', async () => {
    const admin = t.host.adminUrl;
    // A 64 MiB upload to an unknown id: answered 404 at once, the upload cut soon after.
    const start = Date.now();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${admin}/admin/push-response-stream?request_id=12345`, { method: 'POST', headers: { authorization: `Bearer ${t.host.token}` }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', () => { /* the host closed the connection on the rest of the upload */ });
      const chunk = Buffer.alloc(1024 * 1024, 120);
      let n = 0;
      const write = (): void => { while (n < 64 && req.write(chunk)) n++; if (n < 64) req.once('drain', () => { n++; write(); }); else req.end(); };
      write();
      setTimeout(() => reject(new Error('no answer')), 5000).unref();
    });
    assert.equal(status, 404);
    assert.ok(Date.now() - start < 3000);
    // Answered by a push-response-info first: a stream push is then 409.
    const done = await get(`${t.url}/rpc/stream-py/body`, { method: 'POST', body: 'x' });
    const id = done.headers.get('x-request-id')!;
    const again = await get(`${admin}/admin/push-response-stream?request_id=${id}`, { method: 'POST', body: '{"status":200}\nlate', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(again.status, 409);
    assert.equal(JSON.parse(again.text).code, 'FEZZ_ERR_ABI_ALREADY_ANSWERED');
  });
});

describe('the SSE example in Go (sse-go)', () => {
  let t: TestHost;
  before(async () => { t = await startHost(EXAMPLES); });
  after(async () => { await t.close(); });

  it('events arrive as they are produced, 200 ms apart, as text/event-stream', async () => {
    const start = Date.now();
    const res = await fetch(`${t.url}/sse/go`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const events: Array<{ at: number; data: { n: number; at: number } }> = [];
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) !== -1) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data !== undefined) events.push({ at: Date.now(), data: JSON.parse(data.slice(6)) as { n: number; at: number } });
      }
    }
    assert.deepEqual(events.map((e) => e.data.n), [1, 2, 3, 4, 5]);
    // The first event reached the client before the plugin produced the last one.
    assert.ok(events[0]!.at < events[4]!.data.at, `first arrived at ${events[0]!.at - start} ms, last produced at ${events[4]!.data.at - start} ms`);
    // Spread over the ~800 ms the plugin took, not all at once (slack for a loaded machine).
    const spread = events[4]!.at - events[0]!.at;
    assert.ok(spread >= 400, `the 5 events arrived within ${spread} ms: not spaced out`);
    const produced = events.map((e) => e.data.at);
    assert.ok(produced[4]! - produced[0]! >= 750, 'the plugin produced one event every 200 ms');
    // Issue 12: each event within 50 ms of the plugin writing it (same machine clock).
    const delays = events.map((e) => e.at - e.data.at);
    console.log(`  sse-go delivery delays: ${delays.join(', ')} ms`);
    assert.ok(Math.max(...delays) <= 50, `each event within 50 ms of being written: ${delays.join(', ')}`);
  });

  it('an EventSource that leaves stops the Go handler: its Write fails with 499', async () => {
    const { req, res } = await open(`${t.url}/sse/go?count=100`);
    assert.equal(res.statusCode, 200);
    const id = String(res.headers['x-request-id']);
    await new Promise<void>((resolve) => res.once('data', () => resolve()));
    req.destroy();
    // fezz.Main logs the handler's error: the host's answer to its push.
    const m = await logLine(t, 'sse-go@1.0.0', new RegExp(`^fezz: request ${id}: .*push-response-stream returned (\\d+) ([A-Z_]+)`));
    assert.deepEqual([m[1], m[2]], ['499', 'FEZZ_ERR_ABI_STREAM_CANCELLED']);
  });

  it('Last-Event-ID resumes after the given event', async () => {
    const res = await get(`${t.url}/sse/go?count=3`, { headers: { 'last-event-id': '1' } });
    assert.deepEqual([...res.text.matchAll(/^id: (\d+)$/gm)].map((m) => m[1]), ['2', '3']);
  });
});
