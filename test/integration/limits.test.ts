// Routing answers (404, 405), admission limits (413, 503 + Retry-After), spreading over
// instances, warm state, idle eviction and the inline runtime, over real HTTP and workers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

describe('routing and limits', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'limits')); });
  after(async () => { await t.close(); });

  it('404 for an unknown path and for an unknown function, with x-request-id', async () => {
    const a = await get(`${t.url}/no/such/route`);
    assert.equal(a.status, 404);
    assert.equal(JSON.parse(a.text).code, 'FEZZ_ERR_ROUTE_NOT_FOUND');
    assert.match(a.headers.get('x-request-id') ?? '', /^\d+$/);
    const b = await get(`${t.url}/rpc/nobody/x`);
    assert.equal(b.status, 404);
    assert.equal(JSON.parse(b.text).code, 'FEZZ_ERR_FUNCTION_NOT_FOUND');
    const c = await get(`${t.url}/rpc/small@9.9.9/x`);
    assert.equal(c.status, 404, 'an unknown version is an unknown function');
  });

  it('405 with Allow for a known path and a wrong method', async () => {
    const res = await get(`${t.url}/small/echo`);
    assert.equal(res.status, 405);
    assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_METHOD_NOT_ALLOWED');
    assert.equal(res.headers.get('allow'), 'POST');
    const del = await get(`${t.url}/small/items/3`, { method: 'PUT' });
    assert.equal(del.status, 405);
    assert.equal(del.headers.get('allow'), 'DELETE');
  });

  it('a named handler gets :params in ctx.params', async () => {
    const res = await get(`${t.url}/small/items/a%20b`, { method: 'DELETE' });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { removed: 'a b' });
  });

  it('a body within maxBodyBytes round-trips byte for byte; one over it gets 413', async () => {
    const bytes = new Uint8Array(1024).map((_, i) => (i * 7) % 256);
    const ok = await fetch(`${t.url}/small/echo`, { method: 'POST', body: bytes, headers: { 'content-type': 'application/x-test' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), 'application/x-test');
    assert.deepEqual(new Uint8Array(await ok.arrayBuffer()), bytes);
    const big = await get(`${t.url}/small/echo`, { method: 'POST', body: new Uint8Array(1025) });
    assert.equal(big.status, 413);
    assert.equal(JSON.parse(big.text).code, 'FEZZ_ERR_BODY_TOO_LARGE');
  });

  it('arrayBuffer() in an isolate is exactly the body, read once, and the handler may write to it', async () => {
    const bytes = new Uint8Array(1000).map((_, i) => (i * 13) % 251);
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${t.url}/small/reverse`, { method: 'POST', body: bytes });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-byte-length'), '1000');
      assert.equal(res.headers.get('x-second-read'), 'TypeError');
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes.slice().reverse());
    }
  });

  it('413 also for a chunked body that grows past the limit', async () => {
    const stream = new ReadableStream({
      start(c) { for (let i = 0; i < 4; i++) c.enqueue(new Uint8Array(512)); c.close(); },
    });
    const res = await get(`${t.url}/small/echo`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 413);
  });

  it('503 + Retry-After once concurrency and the queue are full; the queued one still completes', async () => {
    // concurrency 1, maxQueue 1, max 1 instance: one runs, one waits, the third is refused.
    await get(`${t.url}/rpc/small/warm`);
    const first = get(`${t.url}/small/slow`);
    await sleep(50);
    const second = get(`${t.url}/small/slow`);
    await sleep(50);
    const third = await get(`${t.url}/small/slow`);
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('retry-after'), '1');
    assert.equal(JSON.parse(third.text).code, 'FEZZ_ERR_QUEUE_FULL');
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    assert.equal((await get(`${t.url}/small/slow`)).status, 200, 'accepts again once drained');
  });

  it('concurrent requests are spread over instances, up to instances.max', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => get(`${t.url}/rpc/spread/slow`)));
    const threads = new Set(results.map((r) => JSON.parse(r.text).threadId));
    assert.equal(threads.size, 2, `expected 2 instances, saw ${[...threads].join(',')}`);
    const stats = t.host.functions().find((f) => f.key === 'spread@1.0.0')!.stats;
    assert.equal(stats.instances, 2);
    assert.equal(stats.coldStarts, 2);
  });

  it('warm state persists between requests in one instance; ctx.requestId is the x-request-id', async () => {
    const a = await get(`${t.url}/rpc/idle/`);
    const b = await get(`${t.url}/rpc/idle/`);
    const ja = JSON.parse(a.text);
    const jb = JSON.parse(b.text);
    assert.equal(jb.threadId, ja.threadId);
    assert.equal(jb.count, ja.count + 1);
    const s = await get(`${t.url}/rpc/spread/`);
    assert.equal(JSON.parse(s.text).requestId, s.headers.get('x-request-id'));
  });

  it('an idle instance is evicted after idleTtlSeconds and the next request cold-starts', async () => {
    const first = JSON.parse((await get(`${t.url}/rpc/idle/`)).text);
    const fn = () => t.host.functions().find((f) => f.key === 'idle@1.0.0')!.stats;
    const deadline = Date.now() + 5000;
    while (fn().instances > 0 && Date.now() < deadline) await sleep(50);
    assert.equal(fn().instances, 0, 'evicted');
    assert.ok(fn().evictions >= 1);
    const next = JSON.parse((await get(`${t.url}/rpc/idle/`)).text);
    assert.notEqual(next.threadId, first.threadId, 'a new instance');
    assert.equal(next.count, 1, 'warm state was lost with the evicted instance');
  });

  it('the inline runtime runs on the host thread with the same contract', async () => {
    const a = await get(`${t.url}/inline/ann`);
    assert.equal(a.status, 200);
    assert.match(a.text, /^hi ann \d+ main=true$/);
    const b = await get(`${t.url}/rpc/inline-hello/x`);
    assert.deepEqual(JSON.parse(b.text), { main: true, path: '/x' });
    const thrown = await get(`${t.url}/rpc/inline-hello/throw`);
    assert.equal(thrown.status, 500);
    assert.equal(JSON.parse(thrown.text).code, 'FEZZ_ERR_HANDLER_THREW');
    const slow = await get(`${t.url}/rpc/inline-hello/slow`);
    assert.equal(slow.status, 504);
    assert.equal((await get(`${t.url}/inline/bob`)).status, 200);
  });

  it('HEAD on a GET route answers with headers and no body', async () => {
    const res = await fetch(`${t.url}/small/slow`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String('slow done'.length));
    assert.equal(await res.text(), '');
  });

  it('/healthz answers 200', async () => {
    const res = await get(`${t.url}/healthz`);
    assert.equal(res.status, 200);
  });
});
