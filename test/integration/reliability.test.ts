// Issue 10 regressions: nothing a function or a client does can wedge the host.
// Modules that never load (start deadline), errors nothing handled (the instance keeps
// serving), route takeover on hot reload, client disconnects, response framing and the
// listener's limits. Each test failed on the code before the fix.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

/** Write `<dir>/<id>@1.0.0/` with a manifest (plus `extra` fields) and `index.js`: beside, then renamed in whole. */
async function writeFn(dir: string, id: string, source: string, extra: Record<string, unknown> = {}): Promise<void> {
  const tmp = path.join(dir, `.tmp-${id}`);
  await mkdir(tmp, { recursive: true });
  await writeFile(path.join(tmp, 'index.js'), source);
  await writeFile(path.join(tmp, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', ...extra }));
  await rename(tmp, path.join(dir, `${id}@1.0.0`));
}

const HELLO = 'export default { fetch: () => new Response("hello") };\n';
const NEVER = 'await new Promise(() => {});\nexport default { fetch: () => new Response("never") };\n';
const SPIN = 'for (;;) {}\nexport default { fetch: () => new Response("never") };\n';

/** Send raw bytes on a fresh connection; resolve with everything received until close (or `ms`). */
function raw(url: string, bytes: string | Buffer, ms = 5000, onData?: (text: string, sock: net.Socket) => void): Promise<{ text: string; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    let text = '';
    const sock = net.connect(Number(port), hostname, () => sock.write(bytes));
    const timer = setTimeout(() => { sock.destroy(); resolve({ text, closed: false }); }, ms);
    sock.on('data', (d) => { text += d.toString('latin1'); onData?.(text, sock); });
    sock.on('error', () => undefined);
    sock.on('close', () => { clearTimeout(timer); resolve({ text, closed: true }); });
  });
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) { if (await cond()) return; await sleep(25); }
  assert.fail(`not within ${ms} ms: ${what}`);
}

describe('a module that never finishes loading', () => {
  let dir: string;
  before(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-never-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('start-up with instances.min >= 1 opens the port within the start deadline; the function gets 500, the others serve', { timeout: 15_000 }, async () => {
    const d = path.join(dir, 'startup');
    await writeFn(d, 'hello', HELLO);
    await writeFn(d, 'never', NEVER, { instances: { min: 1, max: 1 } });
    await writeFn(d, 'spin', SPIN, { instances: { min: 1, max: 1 } });
    await writeFn(d, 'never-inline', NEVER, { runtime: 'inline' });
    const t0 = performance.now();
    // The deadline also covers booting a worker (through tsx in tests: slow on a loaded machine).
    const t = await startHost(d, { startTimeoutMs: 2000 });
    try {
      assert.ok(performance.now() - t0 < 8000, `listening after ${Math.round(performance.now() - t0)} ms`);
      assert.equal((await get(`${t.url}/rpc/hello`)).text, 'hello');
      for (const id of ['never', 'spin', 'never-inline']) {
        const r = await get(`${t.url}/rpc/${id}`);
        assert.equal(r.status, 500, `${id}: ${r.text}`);
        assert.equal(JSON.parse(r.text).code, 'FEZZ_ERR_INSTANCE_START_FAILED');
      }
      assert.ok(t.logs.some((l) => /did not finish loading within 2000 ms/.test(JSON.stringify(l))), 'the reason is logged');
    } finally { await t.close(); }
  });

  it('hot reload, /admin/reload and deploy answer within the deadline, and a function added after it is served', { timeout: 20_000 }, async () => {
    const d = path.join(dir, 'reload');
    await writeFn(d, 'hello', HELLO);
    const t = await startHost(d, { startTimeoutMs: 1500, watch: true });
    try {
      await writeFn(d, 'never', NEVER);
      await sleep(300); // the watcher's reload is now waiting on it
      await writeFn(d, 'fresh', 'export default { fetch: () => new Response("fresh") };\n');
      const t0 = performance.now();
      // Served once the reload waiting on `never` gave up (1.5 s) and the next one ran.
      await until(async () => (await get(`${t.url}/rpc/fresh`)).status === 200, 10_000, 'fresh is served');
      const auth = { authorization: `Bearer ${t.host.token}` };
      const r0 = performance.now();
      const reload = await fetch(`${t.host.adminUrl}/admin/reload`, { method: 'POST', headers: auth });
      assert.equal(reload.status, 200);
      const body = await reload.json() as { problems: Array<{ message: string }> };
      assert.ok(performance.now() - r0 < 5000, `reload answered after ${Math.round(performance.now() - r0)} ms`);
      assert.ok(body.problems.some((p) => /never@1\.0\.0.*did not finish loading/.test(p.message)), JSON.stringify(body.problems));
      const files = { 'fezz.json': Buffer.from(JSON.stringify({ id: 'never2', version: '1.0.0', entry: 'index.js' })).toString('base64'), 'index.js': Buffer.from(NEVER).toString('base64') };
      const dep = await fetch(`${t.host.adminUrl}/admin/deploy`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ files }) });
      assert.equal(dep.status, 422, await dep.text());
      assert.equal((await get(`${t.url}/rpc/hello`)).text, 'hello');
    } finally { await t.close(); }
  });

  it('shutdown ends within its grace while a reload waits on a module stuck loading', { timeout: 15_000 }, async () => {
    const d = path.join(dir, 'shutdown');
    await writeFn(d, 'hello', HELLO);
    const t = await startHost(d, { startTimeoutMs: 60_000 });
    await writeFn(d, 'spin', SPIN);
    void t.host.reload(); // waits on spin's start, which loops
    await sleep(400);
    const t0 = performance.now();
    await t.host.close(500);
    assert.ok(performance.now() - t0 < 2500, `close took ${Math.round(performance.now() - t0)} ms`);
  });
});

describe('errors nothing handled', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'reliability')); });
  after(async () => { await t.close(); });

  it('a throw in a timer and an unhandled rejection fail only their request; the instance keeps serving', async () => {
    const first = JSON.parse((await get(`${t.url}/rpc/uncaught/ok`)).text);
    const slow = get(`${t.url}/rpc/uncaught/slow-ok`);
    const thrown = await get(`${t.url}/rpc/uncaught/timer-throw`);
    const rejected = await get(`${t.url}/rpc/uncaught/unhandled`);
    assert.equal(thrown.status, 500, thrown.text);
    assert.equal(rejected.status, 500, rejected.text);
    const s = await slow;
    assert.equal(s.status, 200, 'the request running beside them is unharmed');
    const again = JSON.parse((await get(`${t.url}/rpc/uncaught/ok`)).text);
    assert.equal(again.threadId, first.threadId, 'same instance');
    assert.ok(again.served > first.served, 'module state kept');
    const line = t.logs.find((l) => /uncaught error in the function/.test(l.msg) && l.requestId === thrown.headers.get('x-request-id'));
    assert.ok(line, 'logged with the request id it came from');
    assert.match(JSON.stringify(line), /thrown in a timer on purpose/);
  });

  it('one after the response is logged and counted in /metrics', async () => {
    const r = await get(`${t.url}/rpc/uncaught/late-timer`);
    assert.equal(r.status, 200);
    await until(() => (t.host.functions().find((f) => f.key === 'uncaught@1.0.0')!.stats.uncaughtErrors ?? 0) >= 3, 3000, 'three counted');
    const metrics = await (await fetch(`${t.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t.host.token}` } })).text();
    const m = /fezz_uncaught_errors_total\{fn="uncaught@1.0.0"\} (\d+)/.exec(metrics);
    assert.ok(m !== null && Number(m[1]) >= 3, metrics.split('\n').filter((l) => l.includes('uncaught')).join('\n'));
  });

  it('a client that goes away aborts request.signal in the function', async () => {
    const ac = new AbortController();
    const p = fetch(`${t.url}/rpc/uncaught/signal`, { signal: ac.signal }).catch(() => null);
    await sleep(200);
    ac.abort();
    await p;
    await until(async () => (await get(`${t.url}/rpc/uncaught/last-abort`)).text === 'AbortError', 3000, 'the function saw the abort');
    assert.ok(t.host.functions().find((f) => f.key === 'uncaught@1.0.0')!.stats.clientAborts >= 1);
  });
});

describe('hot reload and routes', () => {
  it('a newcomer claiming a running function\'s route is the one not served', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-takeover-'));
    await cp(path.join(FIXTURES, 'reliability', 'payments@1.0.0'), path.join(dir, 'payments@1.0.0'), { recursive: true });
    const t = await startHost(dir);
    try {
      assert.equal((await get(`${t.url}/pay`)).text, 'payments');
      await writeFn(dir, 'aaa-typo', 'export default { fetch: () => new Response("typo") };\n', { routes: [{ method: 'GET', path: '/pay' }] });
      const problems = await t.host.reload();
      assert.equal((await get(`${t.url}/pay`)).text, 'payments', 'the route stays with payments');
      assert.equal((await get(`${t.url}/rpc/payments`)).status, 200);
      assert.equal((await get(`${t.url}/rpc/aaa-typo`)).status, 404, 'the newcomer is not served');
      assert.ok(problems.some((p) => p.code === 'FEZZ_ERR_ROUTE_CONFLICT' && p.message.includes('aaa-typo@1.0.0') && p.message.includes('payments@1.0.0')), JSON.stringify(problems));
    } finally { await t.close(); await rm(dir, { recursive: true, force: true }); }
  });
});

describe('client disconnects', () => {
  it('queued requests whose client left never run, and do not hold the live ones up', { timeout: 20_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-gone-'));
    await writeFn(dir, 'busy', 'let runs = 0;\nexport default { async fetch(req) {\n  if (new URL(req.url).pathname === "/runs") return new Response(String(runs));\n  runs++; await new Promise((r) => setTimeout(r, 250)); return new Response("done");\n} };\n',
      { limits: { concurrency: 1, timeoutMs: 30_000 }, instances: { min: 1, max: 1 } });
    const t = await startHost(dir);
    try {
      await get(`${t.url}/rpc/busy/runs`);
      const live = get(`${t.url}/rpc/busy/work`);
      const gone = Array.from({ length: 20 }, async () => {
        const ac = new AbortController();
        const p = fetch(`${t.url}/rpc/busy/work`, { signal: ac.signal }).catch(() => null);
        await sleep(50);
        ac.abort();
        return p;
      });
      await Promise.all(gone);
      const t0 = performance.now();
      const last = await get(`${t.url}/rpc/busy/work`);
      assert.equal(last.status, 200);
      assert.ok(performance.now() - t0 < 2000, `the last live request waited ${Math.round(performance.now() - t0)} ms`);
      assert.equal((await live).status, 200);
      assert.equal((await get(`${t.url}/rpc/busy/runs`)).text, '2', 'only the two live requests ran');
      const stats = t.host.functions().find((f) => f.key === 'busy@1.0.0')!.stats;
      assert.equal(stats.clientAborts, 20);
      const metrics = await (await fetch(`${t.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t.host.token}` } })).text();
      assert.match(metrics, /fezz_client_aborts_total\{fn="busy@1.0.0"\} 20/);
    } finally { await t.close(); await rm(dir, { recursive: true, force: true }); }
  });
});

describe('response framing and the listener\'s limits', () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-framing-'));
    await writeFn(dir, 'framing', [
      'export default { async fetch(req) {',
      '  const p = new URL(req.url).pathname;',
      '  if (p === "/bad-header") return new Response("x", { headers: { "x-bad": "a\\u0001b" } });',
      '  if (p === "/204") return new Response(null, { status: 204, headers: { "content-length": "5" } });',
      '  if (p === "/304") return new Response(null, { status: 304 });',
      '  if (p === "/slow") { await new Promise((r) => setTimeout(r, 300)); return new Response("slow"); }',
      '  if (p === "/big") return new Response(new Uint8Array(24 * 1024 * 1024));',
      '  if (p === "/echo") return new Response(await req.text());',
      '  return new Response("ok");',
      '} };',
    ].join('\n'), { limits: { maxBodyBytes: 1000, memoryMb: 256 } });
    t = await startHost(dir, { bodyTimeoutMs: 400, sendTimeoutMs: 500 });
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  it('headers Node refuses give "500 Internal Server Error", not "500 OK"', async () => {
    const r = await raw(t.url, 'GET /rpc/framing/bad-header HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 500 Internal Server Error\r\n/);
    assert.match(r.text, /FEZZ_ERR_HANDLER_BAD_RESPONSE/);
  });

  it('204 and 304 carry no content-length and no body', async () => {
    for (const status of [204, 304]) {
      const r = await raw(t.url, `GET /rpc/framing/${status} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
      assert.match(r.text, new RegExp(`^HTTP/1\\.1 ${status} `));
      assert.doesNotMatch(r.text, /content-length/i, r.text);
      assert.ok(r.text.endsWith('\r\n\r\n'), 'nothing after the head');
    }
  });

  it('a body on a 204 (a middleware or plugin answer) is dropped', async () => {
    const d2 = await mkdtemp(path.join(os.tmpdir(), 'fezz-204-'));
    const t2 = await startHost(d2, { middleware: [(c) => { c.response = { status: 204, headers: [], body: 'should not be sent' }; }] });
    try {
      const r = await raw(t2.url, 'GET /anything HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      assert.match(r.text, /^HTTP\/1\.1 204 /);
      assert.doesNotMatch(r.text, /should not be sent|content-length/i);
    } finally { await t2.close(); await rm(d2, { recursive: true, force: true }); }
  });

  it('duplicate Host headers get 400', async () => {
    const r = await raw(t.url, 'GET /rpc/framing/ok HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 400 /);
    assert.ok(r.closed);
  });

  it('Expect: 100-continue over the limit gets 413 without 100; within it, 100 then 200', async () => {
    const big = await raw(t.url, 'POST /rpc/framing/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n', 3000);
    assert.match(big.text, /^HTTP\/1\.1 413 /, big.text);
    assert.doesNotMatch(big.text, /100 Continue/);
    let sent = false;
    const small = await raw(t.url, 'POST /rpc/framing/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n', 3000, (text, sock) => {
      if (!sent && text.includes('100 Continue')) { sent = true; sock.write('hello'); }
    });
    assert.match(small.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    assert.ok(small.text.endsWith('hello'));
  });

  it('a stalled upload gets 408 and the connection closes after bodyTimeoutMs', async () => {
    const t0 = performance.now();
    const r = await raw(t.url, 'POST /rpc/framing/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nab', 4000);
    assert.match(r.text, /^HTTP\/1\.1 408 /, r.text);
    assert.ok(r.closed && performance.now() - t0 < 3000);
  });

  it('a client that stops reading a large response is cut off after sendTimeoutMs', { timeout: 15_000 }, async () => {
    const { port } = new URL(t.url);
    // Read the first bytes, stop reading for 2 s (the send timeout is 0.5 s), then read on:
    // the connection must end well short of the 24 MiB body.
    const got = await new Promise<{ bytes: number; closed: boolean }>((resolve) => {
      let bytes = 0;
      const sock = net.connect(Number(port), '127.0.0.1', () => {
        sock.write('GET /rpc/framing/big HTTP/1.1\r\nhost: x\r\n\r\n');
        sock.once('data', () => { sock.pause(); setTimeout(() => sock.resume(), 2000); });
      });
      sock.on('data', (d: Buffer) => { bytes += d.length; });
      sock.on('error', () => undefined);
      sock.on('close', () => resolve({ bytes, closed: true }));
      setTimeout(() => { sock.destroy(); resolve({ bytes, closed: false }); }, 10_000);
    });
    assert.ok(got.closed, 'the host closed the connection');
    assert.ok(got.bytes < 24 * 1024 * 1024, `received ${got.bytes} bytes`);
    const metrics = await (await fetch(`${t.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t.host.token}` } })).text();
    assert.match(metrics, /fezz_client_errors_total\{reason="send-timeout"\} 1/);
  });

  it('a malformed request behind one in flight is answered after it, then the connection closes', async () => {
    const r = await raw(t.url, 'GET /rpc/framing/slow HTTP/1.1\r\nhost: x\r\n\r\nBROKEN\r\n\r\n', 4000);
    const first = r.text.indexOf('HTTP/1.1 200 OK');
    const second = r.text.indexOf('HTTP/1.1 400 Bad Request');
    assert.ok(first === 0 && second > first, r.text);
    assert.ok(r.text.slice(first, second).endsWith('slow'), 'the first response is whole');
    assert.ok(r.closed);
  });

  it('past maxConnections the oldest idle connection makes room: /healthz still answers', async () => {
    const d3 = await mkdtemp(path.join(os.tmpdir(), 'fezz-cap-'));
    const t3 = await startHost(d3, { maxConnections: 10 });
    const { port } = new URL(t3.url);
    const idle: net.Socket[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        const s = net.connect(Number(port), '127.0.0.1');
        s.on('error', () => undefined);
        idle.push(s);
        await new Promise((r) => s.once('connect', r));
      }
      await sleep(100);
      assert.ok(idle.filter((s) => !s.destroyed && !s.closed).length <= 11);
      const h = await raw(t3.url, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 3000);
      assert.match(h.text, /^HTTP\/1\.1 200 /);
      const metrics = await (await fetch(`${t3.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t3.host.token}` } })).text();
      const m = /fezz_connections_dropped_total (\d+)/.exec(metrics);
      assert.ok(m !== null && Number(m[1]) >= 20, m?.[0]);
    } finally {
      for (const s of idle) s.destroy();
      await t3.close();
      await rm(d3, { recursive: true, force: true });
    }
  });
});
