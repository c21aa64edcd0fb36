// Issue 14, item 3: WebSockets in functions. A real host, real functions (test/fixtures/
// websocket/echo.js in isolate, inline and, where bubblewrap runs, sandbox instances) and the
// `ws` client over real sockets: 10,000 messages each way through a client that floods while
// it does not read (the host pushes back instead of buffering: bounded host-side bytes, the
// client's own send buffer grows), closes from each side with their codes, instance death
// (1011), limits (maxWebSockets 503, idle 1001, message size 1009), hot reload (old sockets
// stay on the old version until the grace ends, then 1001) and shutdown (1001).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { FIXTURES, startHost, sleep, type TestHost } from '../helpers/host.js';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import type { WebSocketStats } from '../../src/websocket/book.js';
import { WEBSOCKET_WINDOW_BYTES } from '../../src/wire/websocket.js';
import { HostSocketEnd } from '../../src/websocket/host-end.js';
import { FromWorker, ToWorker } from '../../src/runtime/isolate/protocol.js';

const ECHO = path.join(FIXTURES, 'websocket', 'echo.js');
const sandboxOk = (await probeSandbox()).ok;

/** Write function `<id>@<version>` (the echo fixture, `TAG` = `tag`) into `dir`. */
async function writeFunction(dir: string, id: string, manifest: Record<string, unknown> = {}, version = '1.0.0', tag = id): Promise<void> {
  const d = path.join(dir, `${id}@${version}`);
  await mkdir(d, { recursive: true });
  await copyFile(ECHO, path.join(d, 'index.js'));
  await writeFile(path.join(d, 'fezz.json'), JSON.stringify({ id, version, entry: 'index.js', env: { TAG: tag }, instances: { max: 1 }, ...manifest }));
}

/** A client socket that keeps what it receives, in order. */
interface Client {
  ws: WebSocket;
  /** Text messages as strings, binary ones as Buffers. */
  got: Array<string | Buffer>;
  closed: Promise<{ code: number; reason: string }>;
  /** The 101's headers. */
  headers: Record<string, string | string[] | undefined>;
}

async function connect(url: string, protocols?: string[]): Promise<Client> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), protocols);
  const got: Array<string | Buffer> = [];
  let headers: Client['headers'] = {};
  ws.on('upgrade', (res) => { headers = res.headers; });
  ws.on('message', (data: Buffer, isBinary: boolean) => got.push(isBinary ? data : data.toString('utf8')));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`unexpected response ${res.statusCode}`), { statusCode: res.statusCode })));
  });
  return { ws, got, closed, get headers() { return headers; } };
}

/** The status, headers and body a refused upgrade gets. */
async function refused(url: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'));
  return new Promise((resolve, reject) => {
    ws.once('open', () => { ws.terminate(); reject(new Error('the upgrade was accepted')); });
    ws.once('error', () => undefined);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => { ws.terminate(); resolve({ status: res.statusCode!, headers: res.headers, body }); });
    });
  });
}

async function until<T>(what: string, probe: () => T | Promise<T>, ms = 5000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function wsStats(t: TestHost, key: string): WebSocketStats {
  const s = t.host.functions().find((f) => f.key === key)?.stats.webSockets;
  assert.ok(s, `${key} reports WebSocket stats`);
  return s;
}

async function lastClose(t: TestHost, id: string): Promise<{ code: number; reason: string; wasClean: boolean } | null> {
  const r = await fetch(`${t.url}/rpc/${id}/last-close`);
  return ((await r.json()) as { lastClose: { code: number; reason: string; wasClean: boolean } | null }).lastClose;
}

/** Send raw bytes on a new connection; the whole answer, once the host closes it (or after 3 s). */
function rawExchange(url: string, text: string, later?: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const c = net.connect(Number(u.port), u.hostname, () => {
      c.write(text);
      if (later !== undefined) setTimeout(() => { if (!c.destroyed) c.write(later); }, 100);
    });
    let out = '';
    c.setEncoding('latin1');
    c.on('data', (d: string) => { out += d; });
    const timer = setTimeout(() => { c.destroy(); resolve(out); }, 3000);
    c.on('close', () => { clearTimeout(timer); resolve(out); });
    c.on('error', reject);
  });
}

const RUNTIMES = [
  { id: 'ws-iso', manifest: { limits: { memoryMb: 32 } }, instanceDeath: true },
  { id: 'ws-inl', manifest: { runtime: 'inline' }, instanceDeath: false },
  { id: 'ws-sbx', manifest: { isolation: 'sandbox', limits: { memoryMb: 64 } }, instanceDeath: true, sandbox: true },
] as const;

describe('WebSockets in functions (issue 14)', () => {
  let dir: string;
  let t: TestHost;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-ws-'));
    for (const r of RUNTIMES) if (!('sandbox' in r) || sandboxOk) await writeFunction(dir, r.id, r.manifest);
    await writeFunction(dir, 'ws-cap', { limits: { maxWebSockets: 2 } });
    await writeFunction(dir, 'ws-idle', { runtime: 'inline', limits: { webSocketIdleMs: 400 } });
    const plugin = path.join(dir, 'ws-plugin@1.0.0');
    await mkdir(plugin);
    await writeFile(path.join(plugin, 'main.py'), '#!/usr/bin/env python3\nraise SystemExit(0)\n', { mode: 0o755 });
    await writeFile(path.join(plugin, 'fezz.json'), JSON.stringify({ id: 'ws-plugin', version: '1.0.0', entry: 'main.py', runtime: 'process' }));
    t = await startHost(dir, { logLevel: 'info' });
    assert.deepEqual(t.host.problems, []);
  });

  after(async () => {
    await t?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  for (const r of RUNTIMES) {
    const skip = 'sandbox' in r && !sandboxOk ? 'bubblewrap cannot run here' : false;
    describe(`runtime ${r.id}`, { skip }, () => {
      const key = `${r.id}@1.0.0`;

      it('echoes 10,000 messages each way while the client floods without reading: the host pushes back, its buffers stay within the window', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/echo`);
        await until('the greeting', () => c.got.length === 1);
        assert.equal(c.got[0], `hello from ${r.id}`, 'what the function sent before its 101 came first');
        // Stop reading, then send 10,000 x 4 KiB (40 MiB) at once: far more than any buffer between.
        c.ws.pause();
        const N = 10_000;
        const SIZE = 4096;
        for (let i = 0; i < N; i++) {
          const b = Buffer.alloc(SIZE, i & 0xff);
          b.writeUInt32BE(i, 0);
          c.ws.send(b);
        }
        // The pipeline fills up (kernel buffers, one window each way) and then stalls: the host
        // stopped reading the client, so what the client could not send stays in its own buffer.
        await until('the host to push back', () => wsStats(t, key).pauses >= 1, 10_000);
        let last = -1;
        await until('the pipeline to stall', async () => {
          const now = c.ws.bufferedAmount;
          const stalled = now === last;
          last = now;
          await sleep(100);
          return stalled;
        }, 10_000);
        // (Kernel buffers take a few MiB at most: a socket's receive buffer grows only while it is read.)
        const stuck = c.ws.bufferedAmount;
        assert.ok(stuck > 8 * 1024 * 1024, `the client still holds ${stuck} bytes it could not send: the host did not read them`);
        const held = wsStats(t, key);
        const bound = 2 * WEBSOCKET_WINDOW_BYTES + 2 * 64 * 1024 + 2 * SIZE;
        assert.ok(held.bufferedBytes <= bound, `host holds ${held.bufferedBytes} bytes for the socket (bound ${bound})`);
        // Read again: every echo arrives, in order, intact.
        c.ws.resume();
        await until('10,000 echoes', () => c.got.length === N + 1, 30_000);
        for (let i = 0; i < N; i++) {
          const m = c.got[i + 1] as Buffer;
          assert.ok(Buffer.isBuffer(m) && m.length === SIZE && m.readUInt32BE(0) === i && m[SIZE - 1] === (i & 0xff), `echo ${i} intact and in order`);
        }
        const after = wsStats(t, key);
        assert.ok(after.peakSocketBufferedBytes <= bound, `peak host-side bytes for one socket ${after.peakSocketBufferedBytes} <= ${bound}`);
        assert.equal(c.ws.bufferedAmount, 0);
        // Idle again: every byte is accounted for (the credit owed is granted once the traffic stops).
        await until('host-side bytes back to 0', () => wsStats(t, key).bufferedBytes === 0);
        c.ws.close(1000, 'done');
        await c.closed;
      });

      it('a function that sends faster than the client reads keeps the excess on its side (bufferedAmount), not in the host', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/flood`);
        await until('the greeting', () => c.got.length === 1);
        c.ws.pause();
        const N = 2000;
        c.ws.send(`cmd:flood:${N}:4096`);
        await sleep(500);
        const held = wsStats(t, key);
        assert.ok(held.bufferedBytes <= WEBSOCKET_WINDOW_BYTES + 64 * 1024, `host holds ${held.bufferedBytes} bytes of the function's messages`);
        c.ws.resume();
        await until('the flood', () => c.got.length === N + 2, 20_000);
        for (let i = 0; i < N; i++) assert.equal((c.got[i + 1] as Buffer).readUInt32BE(0), i);
        const report = String(c.got[N + 1]);
        const buffered = Number(/^flood:sent:(\d+)$/.exec(report)?.[1]);
        assert.ok(buffered > N * 4096 - 2 * WEBSOCKET_WINDOW_BYTES, `the function saw ${buffered} bytes waiting on its side right after sending (${report})`);
        c.ws.send('cmd:buffered');
        await until('bufferedAmount drained', () => c.got.at(-1) === 'buffered:0', 5000);
        c.ws.close();
        await c.closed;
      });

      it('the client closes with a code: the function gets a close event with that code and reason', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/x`);
        c.ws.close(4001, 'client says bye');
        assert.deepEqual(await c.closed, { code: 4001, reason: 'client says bye' });
        const lc = await until('the function\'s close event', async () => { const l = await lastClose(t, r.id); return l?.code === 4001 ? l : null; });
        assert.deepEqual(lc, { code: 4001, reason: 'client says bye', wasClean: true });
      });

      it('the function closes with a code: the client gets it, and the function its close event', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/x`);
        c.ws.send('cmd:close:4002:function done');
        assert.deepEqual(await c.closed, { code: 4002, reason: 'function done' });
        const lc = await until('the function\'s close event', async () => { const l = await lastClose(t, r.id); return l?.code === 4002 ? l : null; });
        assert.equal(lc.reason, 'function done');
        assert.ok((wsStats(t, key).closes.function ?? 0) >= 1);
      });

      it('a listener that throws is logged; the socket goes on; a send over the size limit throws in the function', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/x`);
        c.ws.send('cmd:throw');
        c.ws.send('still here');
        await until('the echo after the throw', () => c.got.includes('still here'));
        await until('the log line', () => t.logs.some((l) => JSON.stringify(l).includes('a WebSocket listener threw on purpose')));
        c.ws.send(`cmd:big:${1024 * 1024 + 1}`);
        await until('the size check', () => c.got.includes('big:RangeError'));
        c.ws.close();
        await c.closed;
      });

      it('a client message over limits.webSocketMaxMessageBytes closes the socket with 1009', async () => {
        const c = await connect(`${t.url}/rpc/${r.id}/x`);
        c.ws.send(Buffer.alloc(1024 * 1024 + 1));
        assert.equal((await c.closed).code, 1009);
        await until('counted', () => (wsStats(t, key).closes['message-too-big'] ?? 0) >= 1);
        const lc = await until('the function\'s close event', async () => { const l = await lastClose(t, r.id); return l?.code === 1009 ? l : null; });
        assert.equal(lc.reason, 'message too big');
      });

      if (r.instanceDeath) {
        it('the instance dies (out of memory, exit): the client gets 1011, and a new socket is served by a new instance', async () => {
          for (const cmd of ['cmd:oom', 'cmd:exit']) {
            const c = await connect(`${t.url}/rpc/${r.id}/x`);
            const other = await connect(`${t.url}/rpc/${r.id}/y`);
            c.ws.send(cmd);
            assert.equal((await c.closed).code, 1011, `${cmd}: 1011`);
            assert.equal((await other.closed).code, 1011, `${cmd}: every socket of the instance gets 1011`);
            const again = await connect(`${t.url}/rpc/${r.id}/z`);
            again.ws.send('alive?');
            await until('an echo from the new instance', () => again.got.includes('alive?'), 10_000);
            again.ws.close();
            await again.closed;
          }
          assert.ok((wsStats(t, key).closes.instance ?? 0) >= 4);
        });
      }
    });
  }

  it('the function chooses the subprotocol and adds headers to the 101; x-request-id is there', async () => {
    const c = await connect(`${t.url}/rpc/ws-iso/x`, ['first', 'second']);
    assert.equal(c.ws.protocol, 'second');
    assert.equal(c.headers['x-fn-tag'], 'ws-iso');
    assert.match(String(c.headers['x-request-id']), /^\d+$/);
    c.ws.close();
    await c.closed;
  });

  it('an upgrade the function answers otherwise gets that answer; a 101 to a plain request is a bad response', async () => {
    const no = await refused(`${t.url}/rpc/ws-iso/refuse`);
    assert.equal(no.status, 403);
    assert.equal(no.body, 'no WebSocket here');
    assert.equal(no.headers['x-fn-tag'], 'ws-iso');
    for (const id of ['ws-iso', 'ws-inl']) {
      const res = await fetch(`${t.url}/rpc/${id}/wrong-101`);
      assert.equal(res.status, 500);
      assert.equal(((await res.json()) as { code: string }).code, 'FEZZ_ERR_HANDLER_BAD_RESPONSE');
    }
    const missing = await refused(`${t.url}/rpc/nope/x`);
    assert.equal(missing.status, 404);
  });

  it('limits.maxWebSockets: the next upgrade gets 503 FEZZ_ERR_WEBSOCKET_LIMIT until one closes', async () => {
    const a = await connect(`${t.url}/rpc/ws-cap/a`);
    const b = await connect(`${t.url}/rpc/ws-cap/b`);
    const no = await refused(`${t.url}/rpc/ws-cap/c`);
    assert.equal(no.status, 503);
    assert.equal(no.headers['retry-after'], '1');
    assert.equal((JSON.parse(no.body) as { code: string }).code, 'FEZZ_ERR_WEBSOCKET_LIMIT');
    assert.equal(wsStats(t, 'ws-cap@1.0.0').closes['refused-cap'], 1);
    a.ws.close();
    await a.closed;
    const c = await until('a free place', async () => connect(`${t.url}/rpc/ws-cap/c`).catch(() => null));
    assert.equal(wsStats(t, 'ws-cap@1.0.0').open, 2);
    b.ws.close();
    c.ws.close();
    await Promise.all([b.closed, c.closed]);
  });

  it('limits.webSocketIdleMs: pings keep a socket open; silence closes it with 1001', async () => {
    const c = await connect(`${t.url}/rpc/ws-idle/x`);
    for (let i = 0; i < 8; i++) { c.ws.ping(); await sleep(150); }
    assert.equal(c.ws.readyState, WebSocket.OPEN, 'pinged for 1.2 s past a 400 ms idle limit: still open');
    const t0 = Date.now();
    const closed = await c.closed;
    assert.deepEqual(closed, { code: 1001, reason: 'idle timeout' });
    assert.ok(Date.now() - t0 < 2000);
    const lc = await until('the function\'s close event', async () => { const l = await lastClose(t, 'ws-idle'); return l?.code === 1001 ? l : null; });
    assert.equal(lc.reason, 'idle timeout');
    assert.equal(wsStats(t, 'ws-idle@1.0.0').closes.idle, 1);
  });

  it('a plugin function refuses upgrades with 501 FEZZ_ERR_WEBSOCKET_UNSUPPORTED; a bad handshake gets 400', async () => {
    const no = await refused(`${t.url}/rpc/ws-plugin/x`);
    assert.equal(no.status, 501);
    assert.equal((JSON.parse(no.body) as { code: string }).code, 'FEZZ_ERR_WEBSOCKET_UNSUPPORTED');
    const u = new URL(t.url);
    const bad = await rawExchange(t.url, `GET /rpc/ws-iso/x HTTP/1.1\r\nhost: ${u.host}\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\r\n`);
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.match(bad, /FEZZ_ERR_WEBSOCKET_HANDSHAKE/);
  });

  it('another Upgrade (h2c) is served as an ordinary request, body and all', async () => {
    const u = new URL(t.url);
    const out = await rawExchange(t.url, `POST /rpc/ws-iso/plain HTTP/1.1\r\nhost: ${u.host}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\ncontent-length: 5\r\n\r\nhello` +
      `GET /rpc/ws-iso/plain HTTP/1.1\r\nhost: ${u.host}\r\nconnection: close\r\n\r\n`);
    const answers = out.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 2, out);
    for (const a of answers) {
      assert.match(a, /^HTTP\/1\.1 200 /);
      assert.match(a, /plain ws-iso$/);
    }
  });

  it('another Upgrade whose body stops arriving gets 408 after bodyTimeoutMs, as any request would', async () => {
    const h = await startHost(dir, { logLevel: 'info', bodyTimeoutMs: 500 });
    try {
      const u = new URL(h.url);
      const t0 = performance.now();
      const out = await rawExchange(h.url, `POST /rpc/ws-iso/plain HTTP/1.1\r\nhost: ${u.host}\r\nconnection: Upgrade\r\nupgrade: h2c\r\ncontent-length: 100\r\n\r\nhello`);
      const ms = performance.now() - t0;
      assert.match(out, /^HTTP\/1\.1 408 /, out);
      assert.match(out, /FEZZ_ERR_BODY_STALLED/);
      assert.ok(ms < 2500, `answered after ${ms.toFixed(0)} ms`);
    } finally { await h.close(); }
  });

  it('another Upgrade whose body is still arriving is served once the body is in', async () => {
    // Node >= 26 hands such a body to the request, not to the upgrade's head: read, then served.
    const u = new URL(t.url);
    const out = await rawExchange(t.url, `POST /rpc/ws-iso/plain HTTP/1.1\r\nhost: ${u.host}\r\nconnection: Upgrade\r\nupgrade: h2c\r\ncontent-length: 11\r\n\r\nhello`, ' world');
    assert.match(out, /^HTTP\/1\.1 200 /, out);
    assert.match(out, /plain ws-iso$/);
  });

  it('/metrics reports open sockets and closes by reason', async () => {
    const text = await t.host.metrics.metrics();
    assert.match(text, /fezz_websockets_open\{fn="ws-iso@1\.0\.0"\} 0/);
    assert.match(text, /fezz_websocket_closes_total\{fn="ws-iso@1\.0\.0",reason="client"\} \d+/);
    assert.match(text, /fezz_websocket_closes_total\{fn="ws-cap@1\.0\.0",reason="refused-cap"\} 1/);
    assert.match(text, /fezz_websocket_backpressure_total\{fn="ws-iso@1\.0\.0"\} [1-9]/);
  });
});

describe('the host checks what an instance sends about a socket (a sandbox is untrusted)', () => {
  /** A HostSocketEnd (the class the pool uses for both tiers) joined to a recording sink. */
  function end(): { e: HostSocketEnd; posted: unknown[][]; closes: Array<[number | null, string, string]>; violations: string[]; messages: unknown[] } {
    const posted: unknown[][] = [];
    const closes: Array<[number | null, string, string]> = [];
    const violations: string[] = [];
    const messages: unknown[] = [];
    const e = new HostSocketEnd({ id: 7, maxMessageBytes: 1024, post: (m) => posted.push(m), onDone: () => undefined, onViolation: (_e, what) => violations.push(what) });
    e.attach({ message: (d) => messages.push(d), close: (code, reason, why) => closes.push([code, reason, why]), resume: () => undefined });
    return { e, posted, closes, violations, messages };
  }
  const cases: Array<[string, unknown[][]]> = [
    ['a message that is neither text nor bytes', [[FromWorker.WsMessage, 7, { not: 'data' }]]],
    ['a message over the size limit', [[FromWorker.WsMessage, 7, new Uint8Array(1025)]]],
    ['more than a window unacknowledged', Array.from({ length: 300 }, () => [FromWorker.WsMessage, 7, new Uint8Array(1024)])],
    ['a close code no frame may carry', [[FromWorker.WsClose, 7, 1006, '']]],
    ['a close reason over 123 bytes', [[FromWorker.WsClose, 7, 1000, 'x'.repeat(124)]]],
    ['a negative credit', [[FromWorker.WsCredit, 7, -5]]],
  ];
  for (const [what, msgs] of cases) {
    it(`${what}: the socket closes with 1011 on both sides, counted as a violation`, () => {
      const x = end();
      for (const m of msgs) x.e.fromFunction(m);
      assert.equal(x.violations.length, 1, what);
      assert.deepEqual(x.closes, [[1011, 'internal error', 'violation']]);
      assert.deepEqual(x.posted.at(-1), [ToWorker.WsClose, 7, 1011, 'internal error'], 'the function side is told too');
    });
  }
  it('well-formed traffic passes: messages, a close with a code, credit', () => {
    const x = end();
    x.e.fromFunction([FromWorker.WsMessage, 7, 'hi']);
    x.e.fromFunction([FromWorker.WsMessage, 7, new Uint8Array(1024)]);
    x.e.fromFunction([FromWorker.WsClose, 7, 4000, 'done']);
    assert.equal(x.violations.length, 0);
    assert.equal(x.messages.length, 2);
    assert.deepEqual(x.closes, [[4000, 'done', 'function']]);
  });
});

describe('WebSockets with an unmodified Hono app', () => {
  it('Hono\'s upgradeWebSocket (hono/cloudflare-workers) echoes and sees the client\'s close', async () => {
    const t = await startHost(path.join(FIXTURES, 'websocket', 'hono'));
    try {
      const c = await connect(`${t.url}/hono/ws`);
      c.ws.send('hi');
      await until('the echo', () => c.got.includes('hono echo: hi'));
      c.ws.close(4100, 'bye hono');
      await c.closed;
      const closes = await until('the close in Hono', async () => {
        const list = await (await fetch(`${t.url}/hono/closes`)).json() as Array<{ code: number; reason: string }>;
        return list.length > 0 ? list : null;
      });
      assert.deepEqual(closes, [{ code: 4100, reason: 'bye hono' }]);
    } finally {
      await t.close();
    }
  });
});

describe('WebSockets across a hot reload and a shutdown', () => {
  it('open sockets stay on the old version until the grace ends (then 1001); new ones reach the new version; shutdown closes with 1001', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-ws-reload-'));
    const t = await startHost(dir, { shutdownGraceMs: 1500 });
    try {
      await writeFunction(dir, 'rl-iso', {}, '1.0.0', 'old');
      await writeFunction(dir, 'rl-inl', { runtime: 'inline' }, '1.0.0', 'old');
      await t.host.reload();
      const old = await Promise.all(['rl-iso', 'rl-inl'].map((id) => connect(`${t.url}/rpc/${id}/x`)));
      // A new version of the same key (its TAG changes): the old runtime is retired.
      await writeFunction(dir, 'rl-iso', {}, '1.0.0', 'new');
      await writeFunction(dir, 'rl-inl', { runtime: 'inline' }, '1.0.0', 'new');
      const reloadedAt = Date.now();
      await t.host.reload();
      const fresh = await Promise.all(['rl-iso', 'rl-inl'].map((id) => connect(`${t.url}/rpc/${id}/x`)));
      for (const c of [...old, ...fresh]) c.ws.send('cmd:tag');
      for (const c of old) await until('the old version answers', () => c.got.includes('tag:old'));
      for (const c of fresh) await until('the new version answers', () => c.got.includes('tag:new'));
      for (const c of old) {
        const closed = await c.closed;
        assert.deepEqual(closed, { code: 1001, reason: 'function version retired' });
      }
      const waited = Date.now() - reloadedAt;
      assert.ok(waited >= 1200 && waited < 5000, `old sockets closed ${waited} ms after the reload (grace 1500 ms)`);
      const shutdown = t.close();
      for (const c of fresh) assert.deepEqual(await c.closed, { code: 1001, reason: 'host shutting down' });
      await shutdown;
    } finally {
      await t.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
