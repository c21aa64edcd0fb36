// The streaming ABI endpoints on a real AdminServer (src/admin/abi-routes.ts), with requests
// put in the PendingStore by hand, as a plugin runtime does: GET /admin/get-request-body for
// a streamed request body (the host side of WireRequest.bodyStream), and the edges of
// POST /admin/push-response-stream that a real plugin cannot easily reach (a deadline before
// the prelude, the consumer's backpressure, cancel).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { AdminServer } from '../../src/admin/admin-server.js';
import { abiRoutes } from '../../src/admin/abi-routes.js';
import { PendingStore } from '../../src/abi/pending-store.js';
import { fromStreamPrelude, toRequestInfo } from '../../src/abi/codec.js';
import type { BodyStream, WireRequest, WireResponse } from '../../src/wire/types.js';
import { FezzError } from '../../src/errors.js';

const TOKEN = 'test-token';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A request body produced on demand: `chunks` chunks of `size` bytes (byte i = i % 256), counting reads. */
class Producer implements BodyStream {
  reads = 0;
  sent = 0;
  cancelled: string | null = null;
  constructor(readonly chunks: number, readonly size = 64 * 1024, readonly failAt = -1) {}
  read(): Promise<Uint8Array | null> {
    this.reads++;
    if (this.cancelled !== null || this.reads > this.chunks) return Promise.resolve(null);
    if (this.reads === this.failAt) return Promise.reject(new Error('client sent too much'));
    const c = new Uint8Array(this.size);
    for (let i = 0; i < c.length; i++) c[i] = (this.sent + i) % 256;
    this.sent += c.length;
    return new Promise((r) => setImmediate(() => r(c)));
  }
  cancel(reason: string): void { this.cancelled ??= reason; }
}

describe('streaming ABI endpoints (AdminServer + PendingStore)', () => {
  let admin: AdminServer;
  let store: PendingStore;
  let url: string;
  const logs: Array<Record<string, unknown>> = [];
  let seq = 100;

  before(async () => {
    const sink = new Writable({ write(c: Buffer, _e, cb) { for (const l of c.toString().split('\n')) if (l) logs.push(JSON.parse(l)); cb(); } });
    const logger = pino({ level: 'debug' }, sink);
    store = new PendingStore();
    admin = new AdminServer({ host: '127.0.0.1', port: 0, token: TOKEN, logger, maxBodyBytes: 1024 * 1024 });
    admin.add(abiRoutes(store, logger));
    url = await admin.listen();
  });
  after(async () => { await admin.close(); store.close(); });

  /** A pending request; resolves with what it is answered. */
  const pending = (wire: Partial<WireRequest> = {}, timeoutMs = 5000): { id: string; done: Promise<WireResponse> } => {
    const id = String(++seq);
    const done = store.add(id, 'fn@1', { method: 'POST', url: 'http://h/up', headers: [], body: null, ...wire }, timeoutMs,
      () => ({ status: 504, headers: [], body: 'expired' }));
    return { id, done };
  };
  const call = (path: string, init: RequestInit = {}) =>
    fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string> | undefined) } });

  it('get-request-info: a streamed body is empty with bodyStreamed; a buffered one is as before', async () => {
    const streamed = pending({ bodyStream: new Producer(1) });
    const info = await (await call(`/admin/get-request-info?request_id=${streamed.id}`)).json() as Record<string, unknown>;
    assert.equal(info.body, '');
    assert.equal(info.bodyStreamed, true);
    const buffered = pending({ body: Buffer.from('abc') });
    const info2 = await (await call(`/admin/get-request-info?request_id=${buffered.id}`)).json() as Record<string, unknown>;
    assert.equal(info2.body, 'abc');
    assert.equal('bodyStreamed' in info2, false);
    assert.deepEqual(toRequestInfo({ method: 'GET', url: 'http://h/', headers: [], body: null, bodyStream: new Producer(0) }, 1).bodyStreamed, true);
  });

  it('get-request-body streams the body as it is produced, once; a second read is 409', async () => {
    const body = new Producer(40); // 2.5 MiB
    const { id } = pending({ bodyStream: body });
    const res = await call(`/admin/get-request-body?request_id=${id}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    const bytes = new Uint8Array(await res.arrayBuffer());
    assert.equal(bytes.length, 40 * 64 * 1024);
    assert.ok(bytes.every((b, i) => b === i % 256));
    const again = await call(`/admin/get-request-body?request_id=${id}`);
    assert.equal(again.status, 409);
    const err = await again.json() as { code: string; message: string };
    assert.equal(err.code, 'FEZZ_ERR_ABI_BODY_CONSUMED');
    assert.match(err.message, /cannot be replayed/);
  });

  it('get-request-body reads no faster than the plugin takes (backpressure); a plugin that leaves cancels it', async () => {
    const body = new Producer(100_000); // 6.4 GB if nobody stopped it
    const { id } = pending({ bodyStream: body });
    const res = await new Promise<http.IncomingMessage>((resolve) => {
      http.get(`${url}/admin/get-request-body?request_id=${id}`, { headers: { authorization: `Bearer ${TOKEN}` }, agent: false }, resolve);
    });
    res.pause(); // the plugin does not read
    await sleep(500);
    const stalledAt = body.reads;
    await sleep(300);
    assert.equal(body.reads, stalledAt, 'no reads while the plugin reads nothing');
    assert.ok(stalledAt * 64 * 1024 < 64 * 1024 * 1024, `read ${stalledAt} chunks ahead of the plugin`);
    let got = 0;
    res.on('data', (c: Buffer) => { got += c.length; });
    res.resume();
    await sleep(200);
    assert.ok(body.reads > stalledAt, 'reading resumed with the plugin');
    res.destroy();
    await sleep(100);
    assert.equal(body.cancelled, 'plugin left');
    assert.ok(got > 0);
  });

  it('get-request-body: a body that fails mid-way cuts the plugin\'s answer (no clean end)', async () => {
    const { id } = pending({ bodyStream: new Producer(10, 1024, 3) });
    const res = await call(`/admin/get-request-body?request_id=${id}`);
    assert.equal(res.status, 200);
    await assert.rejects(res.arrayBuffer());
  });

  it('get-request-body of a buffered body, and of another function\'s id with a plugin token', async () => {
    const { id } = pending({ body: new Uint8Array([0, 255, 1]) });
    const res = await call(`/admin/get-request-body?request_id=${id}`);
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array([0, 255, 1]));
    const other = admin.pluginTokens.issue('other@1');
    const denied = await fetch(`${url}/admin/get-request-body?request_id=${id}`, { headers: { authorization: `Bearer ${other}` } });
    assert.equal(denied.status, 404);
    const mine = admin.pluginTokens.issue('fn@1');
    const ok = await fetch(`${url}/admin/get-request-body?request_id=${id}`, { headers: { authorization: `Bearer ${mine}` } });
    assert.equal(ok.status, 200);
  });

  /** Open a push-response-stream upload; `answer` resolves with the host's answer. */
  function upload(id: string): { req: http.ClientRequest; answer: Promise<{ status: number; body: string }> } {
    let req!: http.ClientRequest;
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req = http.request(`${url}/admin/push-response-stream?request_id=${id}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { body += c; });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
    });
    return { req, answer };
  }

  it('push-response-stream: the client\'s reads pace the plugin\'s upload; end -> 200 {"ok":true}', async () => {
    const { id, done } = pending();
    const { req, answer } = upload(id);
    req.write('{"status":201,"headers":{"x-a":["1","2"]}}\nfirst');
    const res = await done;
    assert.equal(res.status, 201);
    assert.deepEqual(res.headers, ['x-a', '1', 'x-a', '2']);
    assert.equal(res.body, null);
    const stream = res.stream!;
    assert.equal(Buffer.from((await stream.read())!).toString(), 'first');
    // Nobody reads: the plugin's writes back up (its socket buffers fill), the host holds little.
    const chunk = Buffer.alloc(256 * 1024, 97);
    let written = 0;
    for (;;) {
      const more = req.write(chunk);
      written += chunk.length; // queued either way
      if (!more) break;
      if (written > 512 * 1024 * 1024) assert.fail('the upload never backed up');
    }
    let read = 0;
    for (;;) {
      const c = await stream.read();
      read += c!.length;
      if (read >= written) break;
    }
    req.end('!');
    for (;;) { const c = await stream.read(); if (c === null) break; read += c.length; }
    assert.equal(read, written + 1);
    assert.deepEqual(await answer, { status: 200, body: '{"ok":true}' });
    assert.equal(store.get(id), undefined);
  });

  it('push-response-stream: cancel answers the plugin at once (499) while its upload goes on', async () => {
    const { id, done } = pending();
    const { req, answer } = upload(id);
    req.write('{"status":200,"headers":{}}\n');
    const res = await done;
    const pump = setInterval(() => { if (!req.destroyed) req.write('more data\n'); }, 10);
    try {
      await sleep(50);
      res.stream!.cancel('client');
      const a = await answer;
      assert.equal(a.status, 499);
      assert.equal(JSON.parse(a.body).code, 'FEZZ_ERR_ABI_STREAM_CANCELLED');
      assert.match(JSON.parse(a.body).message, /the client closed its connection/);
    } finally {
      clearInterval(pump);
      req.destroy();
    }
  });

  it('push-response-stream: a prelude that does not come before the deadline -> client 504, plugin 404', async () => {
    const { id, done } = pending({}, 300);
    const { req, answer } = upload(id);
    req.write('{"status":200,'); // and nothing more
    const res = await done;
    assert.equal(res.status, 504);
    const a = await answer;
    assert.equal(a.status, 404);
    req.destroy();
    assert.ok(logs.some((l) => l.requestId === id && /expired before the prelude came/.test(String(l.msg))));
  });

  it('push-response-stream: a read that rejects when the plugin\'s connection breaks', async () => {
    const { id, done } = pending();
    const { req, answer } = upload(id);
    answer.catch(() => { /* the connection is gone */ });
    req.write('{"status":200,"headers":{}}\nabc');
    const res = await done;
    assert.equal(Buffer.from((await res.stream!.read())!).toString(), 'abc');
    req.destroy();
    await assert.rejects(res.stream!.read(), /push-response-stream upload failed/);
  });

  it('the prelude codec: defaults, header arrays, errors name the field', () => {
    assert.deepEqual(fromStreamPrelude('{}'), { status: 200, headers: [] });
    assert.deepEqual(fromStreamPrelude('{"status":206,"headers":{"set-cookie":["a=1","b=2"]}}'), { status: 206, headers: ['set-cookie', 'a=1', 'set-cookie', 'b=2'] });
    for (const [bad, why] of [
      ['{not json', /not valid JSON/],
      ['{"status":99}', /field "status"/],
      ['{"body":"x"}', /Unrecognized key: "body"/],
      ['{"headers":{"bad name":"x"}}', /Invalid key/],
    ] as const) {
      assert.throws(() => fromStreamPrelude(bad), (e: FezzError) => e.code === 'FEZZ_ERR_ABI_BAD_BODY' && why.test(e.message), bad);
    }
  });
});
