// /metrics counts what the test sent, and console.* lines inside a function carry the
// request id the client saw in x-request-id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

/** A minimal Prometheus text-format parser: `name{labels} value` -> samples. */
function parseProm(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  const out: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( \d+)?$/.exec(line);
    assert.ok(m, `valid exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[3] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? []) {
      const eq = pair.indexOf('=');
      labels[pair.slice(0, eq)] = JSON.parse(pair.slice(eq + 1));
    }
    out.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return out;
}

describe('metrics and logs', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'ops')); });
  after(async () => { await t.close(); });

  const admin = (p: string, token = t.host.token) => fetch(`${t.host.adminUrl}${p}`, { headers: { authorization: `Bearer ${token}` } });

  it('/metrics needs the token and counts requests by function and status', async () => {
    assert.equal((await admin('/metrics', 'nope-nope-nope-nope')).status, 401);
    for (let i = 0; i < 7; i++) assert.equal((await get(`${t.url}/rpc/chatty/x`)).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await get(`${t.url}/rpc/chatty/x?status=418`)).status, 418);
    const res = await admin('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const samples = parseProm(await res.text());
    const value = (name: string, labels: Record<string, string>) =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    assert.equal(value('fezz_requests_total', { fn: 'chatty@1.0.0', status: '200' }), 7);
    assert.equal(value('fezz_requests_total', { fn: 'chatty@1.0.0', status: '418' }), 3);
    assert.equal(value('fezz_request_duration_seconds_count', { fn: 'chatty@1.0.0' }), 10);
    assert.equal(value('fezz_request_duration_seconds_bucket', { fn: 'chatty@1.0.0', le: '+Inf' }), 10);
    assert.equal(value('fezz_cold_starts_total', { fn: 'chatty@1.0.0' }), 1);
    assert.equal(value('fezz_instances', { fn: 'slow@1.0.0' }), 1, 'instances.min is live');
    assert.equal(value('fezz_queue_depth', { fn: 'chatty@1.0.0' }), 0);
    assert.ok((value('process_resident_memory_bytes', {}) ?? 0) > 0, 'process metrics');
    assert.ok((value('nodejs_heap_size_used_bytes', {}) ?? 0) > 0, 'heap metrics');
    assert.ok(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds'), 'event-loop lag');
    // Left out on purpose: its per-GC observer made the host's RSS climb under load (process-metrics.ts).
    assert.ok(!samples.some((s) => s.name.startsWith('nodejs_gc_duration_seconds')), 'no GC histogram');
  });

  it('the admin API lists functions with state and stats', async () => {
    const body = await (await admin('/admin/functions')).json() as { functions: Array<{ key: string; state: string; stats: { requests: number; p99Ms: number } }> };
    const chatty = body.functions.find((f) => f.key === 'chatty@1.0.0')!;
    assert.equal(chatty.state, 'warm');
    assert.ok(chatty.stats.requests >= 10);
    assert.ok(chatty.stats.p99Ms > 0);
    const stats = await (await admin('/admin/stats')).json() as { functions: Record<string, { requests: number }> };
    assert.ok(stats.functions['chatty@1.0.0']!.requests >= 10);
  });

  it('console.* lines in a function carry the function and the request id of x-request-id', async () => {
    const res = await get(`${t.url}/rpc/chatty/tagged`);
    const id = res.headers.get('x-request-id');
    assert.ok(id);
    const deadline = Date.now() + 2000;
    const lines = () => t.logs.filter((l) => l.stream === 'console' && String(l.msg).includes('/tagged'));
    while (lines().length < 2 && Date.now() < deadline) await sleep(20);
    const found = lines();
    assert.equal(found.length, 2, JSON.stringify(found));
    for (const l of found) {
      assert.equal(l.requestId, id);
      assert.equal(l.fn, 'chatty@1.0.0');
    }
    assert.deepEqual(found.map((l) => l.level), [30, 40], 'console.log is info, console.warn is warn');
  });

  it('GET /admin/logs returns a function\'s recent lines as NDJSON', async () => {
    const res = await admin('/admin/logs?fn=chatty&since=5');
    assert.equal(res.status, 200);
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length > 0 && lines.length <= 5);
    assert.ok(lines.every((l) => l.fn === 'chatty@1.0.0'));
  });
});
