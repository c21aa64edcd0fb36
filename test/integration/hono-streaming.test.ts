// Issue 12: unmodified Hono streaming helpers (`streamSSE`, `streamText` from hono/streaming)
// work in fezz: events arrive one by one as the app writes them, in the thread runtime (the
// fixture is test/fixtures/streaming/hono-sse@1.0.0, bundled from Hono's own package).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, startHost, type TestHost } from '../helpers/host.js';

describe('Hono streamSSE and streamText in fezz', () => {
  let t: TestHost;
  before(async () => {
    t = await startHost(path.join(FIXTURES, 'streaming'));
    assert.deepEqual(t.host.problems, []);
  });
  after(async () => { await t.close(); });

  it('streamSSE: five events, each delivered when written', async () => {
    const res = await fetch(`${t.url}/hono/sse`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const delays: number[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      const now = Date.now();
      for (const m of decoder.decode(value).matchAll(/"at":(\d+)/g)) delays.push(now - Number(m[1]));
    }
    const events = text.trim().split('\n\n');
    assert.equal(events.length, 5);
    assert.match(events[0]!, /^event: tick\ndata: \{"id":0,"at":\d+\}\nid: 0$/);
    // Event 0 is written as the stream starts, so its delay also holds the response's start
    // (the head reaching the host, headers out, the client's fetch resolving): up to 57 ms was
    // seen on a loaded 2-core CI machine. The later ones measure the stream alone.
    assert.equal(delays.length, 5);
    assert.ok(delays[0]! <= 250, `the first event within 250 ms of being written (with the response's start): ${delays.join(', ')}`);
    assert.ok(Math.max(...delays.slice(1)) <= 50, `each later event within 50 ms of being written: ${delays.join(', ')}`);
  });

  it('streamText: lines as they are written', async () => {
    const res = await fetch(`${t.url}/hono/text`);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=UTF-8');
    assert.equal(await res.text(), 'one\ntwo\nthree\n');
  });

  it('a client that leaves reaches the app\'s onAbort', async () => {
    const ac = new AbortController();
    const res = await fetch(`${t.url}/hono/sse`, { signal: ac.signal });
    await res.body!.getReader().read();
    ac.abort();
    let aborted = 0;
    for (let i = 0; i < 40 && aborted === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      aborted = ((await (await fetch(`${t.url}/hono/aborted`)).json()) as { aborted: number }).aborted;
    }
    assert.equal(aborted, 1);
  });
});
