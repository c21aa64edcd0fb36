// Plugins in C, Go, Rust and Python through the process and native runtimes, speaking the
// request-id ABI to a real host. Needs the plugins built: `npm test` runs
// scripts/build-plugins.sh first (pretest).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { EXAMPLES, FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

const PLUGINS: Array<[id: string, lang: string, runtime: string]> = [
  ['echo-c', 'c', 'native'],
  ['echo-go', 'go', 'process'],
  ['echo-go-native', 'go', 'native'],
  ['echo-rust', 'rust', 'native'],
  ['echo-python', 'python', 'process'],
];

describe('example plugins', () => {
  let t: TestHost;
  before(async () => { t = await startHost(EXAMPLES); });
  after(async () => { await t.close(); });

  it('every example plugin is loaded with its runtime', () => {
    for (const [id, , runtime] of PLUGINS) {
      const f = t.host.functions().find((x) => x.id === id);
      assert.ok(f, `${id} is served (problems: ${JSON.stringify(t.host.problems)})`);
      assert.equal(f.runtime, runtime);
    }
  });

  for (const [id, lang, runtime] of PLUGINS) {
    it(`${id} (${runtime}): method, path, query, headers and a binary body round-trip`, async () => {
      const body = new Uint8Array(4096).map((_, i) => (i * 31 + 7) % 256); // not valid UTF-8
      const res = await fetch(`${t.url}/rpc/${id}/some/path?x=1&y=%20z`, {
        method: 'PUT', body, headers: { 'content-type': 'application/x-bin', 'x-fezz-test': 'hello there' },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-echo-method'), 'PUT');
      assert.equal(res.headers.get('x-echo-path'), '/some/path');
      assert.equal(res.headers.get('x-echo-query'), 'x=1&y=%20z');
      assert.equal(res.headers.get('x-echo-test'), 'hello there');
      assert.equal(res.headers.get('content-type'), 'application/x-bin');
      assert.match(res.headers.get('x-request-id') ?? '', /^\d+$/);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
    });

    it(`${id} (${runtime}): a 3 MiB body, streamed to the plugin (get-request-body), round-trips`, async () => {
      const body = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 13) % 251);
      const res = await fetch(`${t.url}/rpc/${id}/big`, { method: 'POST', body });
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(body)), 'the body came back intact');
    });

    it(`${id} (${runtime}): the JSON API`, async () => {
      const res = await get(`${t.url}/rpc/${id}/json`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.deepEqual(JSON.parse(res.text), { lang, message: `hello from ${lang}`, path: '/json', method: 'GET' });
    });

    it(`${id} (${runtime}): 50 concurrent requests each get their own answer`, async () => {
      const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const res = await fetch(`${t.url}/rpc/${id}/n/${i}?i=${i}`, { method: 'POST', body: `body-${i}`, headers: { 'x-fezz-test': `t${i}` } });
        return { i, status: res.status, path: res.headers.get('x-echo-path'), test: res.headers.get('x-echo-test'), text: await res.text() };
      }));
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.equal(r.path, `/n/${r.i}`);
        assert.equal(r.test, `t${r.i}`);
        assert.equal(r.text, `body-${r.i}`);
      }
    });
  }

  for (const id of ['echo-c', 'echo-go']) {
    it(`after 10,000 requests through ${id} the pending map is empty`, async () => {
      let next = 0;
      let failures = 0;
      const workers = Array.from({ length: 32 }, async () => {
        while (next < 10_000) {
          const i = next++;
          const res = await fetch(`${t.url}/rpc/${id}/soak`, { method: 'POST', body: String(i) });
          if (res.status !== 200 || (await res.text()) !== String(i)) failures++;
        }
      });
      await Promise.all(workers);
      assert.equal(failures, 0);
      assert.equal(t.host.pendingRequests, 0);
    });
  }
});

describe('misbehaving plugins', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'plugins')); });
  after(async () => { await t.close(); });

  const cases: Array<[fn: string, fault: string, status: number, code: string]> = [
    ['misbehave-c', '/segfault', 502, 'FEZZ_ERR_PLUGIN_DOWN'],
    ['misbehave-c', '/exit', 502, 'FEZZ_ERR_PLUGIN_DOWN'],
    ['misbehave-c', '/hang', 504, 'FEZZ_ERR_HANDLER_TIMEOUT'],
    ['misbehave-c', '/error', 500, 'FEZZ_ERR_PLUGIN_ERROR'],
    ['misbehave-c', '/fail', 500, 'FEZZ_ERR_PLUGIN_ERROR'],
    ['misbehave-c', '/badjson', 502, 'FEZZ_ERR_PLUGIN_BAD_RESPONSE'],
    ['misbehave-py', '/segfault', 502, 'FEZZ_ERR_PLUGIN_DOWN'],
    ['misbehave-py', '/exit', 502, 'FEZZ_ERR_PLUGIN_DOWN'],
    ['misbehave-py', '/hang', 504, 'FEZZ_ERR_HANDLER_TIMEOUT'],
    ['misbehave-py', '/error', 500, 'FEZZ_ERR_PLUGIN_ERROR'],
    ['misbehave-py', '/badjson', 502, 'FEZZ_ERR_PLUGIN_BAD_RESPONSE'],
  ];
  for (const [fn, fault, status, code] of cases) {
    it(`${fn} ${fault} -> ${status} ${code}, and the next request succeeds`, async () => {
      const res = await get(`${t.url}/rpc/${fn}${fault}`);
      assert.equal(res.status, status, res.text);
      assert.equal(JSON.parse(res.text).code, code);
      // A crashed plugin is restarted with a short backoff; allow for it.
      let ok = await get(`${t.url}/rpc/${fn}/ok`);
      for (let i = 0; i < 20 && ok.status !== 200; i++) { await sleep(100); ok = await get(`${t.url}/rpc/${fn}/ok`); }
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.text, 'ok');
    });
  }

  it('a second push for the same id is 409 and the client keeps the first answer', async () => {
    for (const fn of ['misbehave-c', 'misbehave-py']) {
      const res = await get(`${t.url}/rpc/${fn}/double`);
      assert.equal(res.status, 200);
      assert.equal(res.text, 'first');
      const deadline = Date.now() + 2000;
      const seen = () => t.logs.some((l) => l.fn === `${fn}@1.0.0` && /409/.test(String(l.msg)) && /second|push/i.test(String(l.msg)));
      while (!seen() && Date.now() < deadline) await sleep(20);
      assert.ok(seen(), `${fn} saw 409 on its second push: ${JSON.stringify(t.logs.filter((l) => l.stream === 'stderr').map((l) => l.msg))}`);
    }
  });

  it('the plugin\'s stderr reaches the log tagged with the function', async () => {
    await get(`${t.url}/rpc/misbehave-c/double`);
    assert.ok(t.logs.some((l) => l.fn === 'misbehave-c@1.0.0' && l.stream === 'stderr'));
  });
});

describe('the ABI endpoints', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'plugins')); });
  after(async () => { await t.close(); });

  const admin = (p: string, init: RequestInit = {}, token: string | null = t.host.token) =>
    get(`${t.host.adminUrl}${p}`, { ...init, headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(init.headers as Record<string, string> | undefined) } });

  it('missing or wrong token: 401, and nothing about any request', async () => {
    const pending = get(`${t.url}/rpc/misbehave-c/hang?secret=s3cr3t`);
    await sleep(200);
    const ids = t.logs.map((l) => l.requestId).filter(Boolean);
    for (const token of [null, 'wrong-token-wrong-token']) {
      const res = await admin(`/admin/get-request-info?request_id=${ids[0] ?? '1'}`, {}, token);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_ABI_UNAUTHORIZED');
      assert.doesNotMatch(res.text, /s3cr3t/);
    }
    assert.equal((await pending).status, 504);
  });

  it('malformed id 400; a guessed id 404 that reveals no other request', async () => {
    const pending = get(`${t.url}/rpc/misbehave-c/hang?secret=s3cr3t`);
    await sleep(200);
    for (const bad of ['', 'abc', '-1', '0', '9223372036854775808', '1.5']) {
      const res = await admin(`/admin/get-request-info?request_id=${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_ABI_BAD_ID');
    }
    for (const guess of ['1', '2', '12345', '9223372036854775807']) {
      const res = await admin(`/admin/get-request-info?request_id=${guess}`);
      assert.equal(res.status, 404);
      assert.doesNotMatch(res.text, /s3cr3t|hang/);
      const push = await admin(`/admin/push-response-info?request_id=${guess}`, { method: 'POST', body: '{"status":200,"body":"pwned"}' });
      assert.equal(push.status, 404);
    }
    const res = await pending;
    assert.equal(res.status, 504, 'the pending request was not answered by a guess');
  });

  it('wrong method 405, unknown endpoint 404', async () => {
    assert.equal((await admin('/admin/get-request-info?request_id=1', { method: 'POST' })).status, 405);
    assert.equal((await admin('/admin/nope')).status, 404);
  });

  /** Send `n` requests to misbehave-py/fail (fetched, never answered); resolves with their ids and pending responses. */
  async function parked(n: number) {
    const before = t.logs.length;
    const responses = Array.from({ length: n }, (_, i) => get(`${t.url}/rpc/misbehave-py/fail?n=${i}`));
    const ids: string[] = [];
    for (let i = 0; i < 100 && ids.length < n; i++) {
      await sleep(20);
      ids.length = 0;
      for (const l of t.logs.slice(before)) {
        const m = /failing request (\d+) without an answer/.exec(String(l.msg));
        if (m) ids.push(m[1]!);
      }
    }
    assert.equal(ids.length, n, 'the plugin fetched every request');
    return { ids, responses };
  }
  const post = (p: string, body: unknown) => admin(p, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });

  it('batch fetch: one element per id, in order, errors in place', async () => {
    const { ids, responses } = await parked(2);
    const res = await post('/admin/get-request-info/batch', { ids: [ids[1], '12345', '007x', ids[0]] });
    assert.equal(res.status, 200, res.text);
    const { requests } = JSON.parse(res.text);
    assert.equal(requests.length, 4);
    assert.equal(requests[0].id, ids[1]);
    assert.equal(requests[0].method, 'GET');
    assert.match(requests[0].url, /^\/fail\?n=[01]$/);
    assert.equal(typeof requests[0].deadlineMs, 'number');
    assert.deepEqual([requests[1].statusCode, requests[1].code, requests[1].id], [404, 'FEZZ_ERR_ABI_UNKNOWN_ID', '12345']);
    assert.deepEqual([requests[2].statusCode, requests[2].code], [400, 'FEZZ_ERR_ABI_BAD_ID']);
    assert.equal(requests[3].id, ids[0]);
    // Answer both through the single endpoint: the batch fetch changed nothing else.
    for (const id of ids) assert.equal((await post(`/admin/push-response-info?request_id=${id}`, { body: 'single' })).status, 200);
    for (const r of await Promise.all(responses)) assert.equal(r.text, 'single');
  });

  it('batch push: responses and errors in one call; a bad element fails only its own request', async () => {
    const { ids, responses } = await parked(4);
    const res = await post('/admin/push-response-info/batch', {
      responses: [
        { id: ids[0], response: { status: 201, headers: { 'x-via': 'batch', 'set-cookie': ['a=1', 'b=2'] }, body: 'aGk=', bodyEncoding: 'base64' } },
        { id: ids[1], error: { message: 'db down' } },
        { id: ids[2], response: { status: 99 } },
        { id: ids[0], response: { body: 'again' } },
        { id: '5', response: {} },
        { nope: 1 },
        { id: ids[3], response: { body: 'ok' }, extra: true },
      ],
    });
    assert.equal(res.status, 200, res.text);
    const { results } = JSON.parse(res.text);
    assert.deepEqual(results.map((r: { ok: boolean; statusCode?: number }) => r.ok || r.statusCode), [true, true, 400, 409, 404, 400, 400]);
    assert.equal(results[5].id, null);
    assert.equal(results[2].code, 'FEZZ_ERR_ABI_BAD_BODY');
    assert.match(results[2].message, /status/);
    // The log gives ids in fetch order, not request order: pair them by x-request-id.
    const byId = new Map((await Promise.all(responses)).map((r) => [r.headers.get('x-request-id'), r]));
    const [a, b, c, d] = ids.map((id) => byId.get(id));
    assert.equal(a!.status, 201);
    assert.equal(a!.text, 'hi');
    assert.equal(a!.headers.get('x-via'), 'batch');
    assert.equal(a!.headers.get('set-cookie'), 'a=1, b=2');
    assert.equal(b!.status, 500);
    assert.ok(t.logs.some((l) => l.pluginError === 'db down'));
    assert.equal(c!.status, 502, 'a malformed answer is a 502 at once, not a 504 later');
    assert.equal(d!.status, 502);
  });

  it('batch calls with a bad envelope: 400, and nothing is answered', async () => {
    const { ids, responses } = await parked(1);
    const cases: unknown[] = ['{not json', {}, { ids: [] }, { ids: Array.from({ length: 257 }, () => ids[0]) }, { ids: [Number(ids[0])] }];
    for (const body of cases) {
      const res = await post('/admin/get-request-info/batch', body);
      assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_ABI_BAD_BODY');
    }
    for (const body of ['{not json', { responses: [] }, { responses: { [ids[0]!]: {} } }, [{ id: ids[0], response: {} }]]) {
      const res = await post('/admin/push-response-info/batch', body);
      assert.equal(res.status, 400, JSON.stringify(body));
    }
    assert.equal((await admin('/admin/get-request-info/batch')).status, 405, 'GET on a batch endpoint');
    assert.equal((await post('/admin/push-response-info/batch', { responses: [{ id: ids[0], response: { body: 'late' } }] })).status, 200);
    assert.equal((await responses[0])!.text, 'late', 'still pending after the bad calls');
  });

  it('ids are random 63-bit decimals, not sequential', async () => {
    const ids = await Promise.all(Array.from({ length: 20 }, async () => (await get(`${t.url}/rpc/misbehave-c/ok`)).headers.get('x-request-id')!));
    const big = ids.map((x) => BigInt(x));
    assert.ok(big.every((b) => b > 0n && b < (1n << 63n)));
    assert.ok(big.filter((b) => b > (1n << 53n)).length >= 15, 'most ids exceed 2^53');
    const sorted = [...big].sort((a, b) => (a < b ? -1 : 1));
    assert.notDeepEqual(sorted, big, 'not increasing in arrival order');
  });
});
