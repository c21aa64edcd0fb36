// Issue 14 (platform details): URLPattern and navigator in the function's realm, the client's
// address (cf-connecting-ip / x-real-ip, trustProxy), module imports of .txt/.html/.bin/.wasm,
// custom statusText, Response.error() as a connection reset, `/x/*` matching `/x/`, and OPTIONS
// reaching the function (an unmodified Hono app answers its own CORS preflight). Real hosts on
// 127.0.0.1, real functions (test/fixtures/platform), in the thread, inline and sandbox tiers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, startHost, type TestHost } from '../helpers/host.js';
import { parseTrustProxy } from '../../src/config/options.js';
import { FezzError } from '../../src/errors.js';

const DIR = path.join(FIXTURES, 'platform');
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
/** Read before any host runs (an inline function installs the polyfill in this realm). */
const NATIVE_URLPATTERN = typeof (globalThis as { URLPattern?: unknown }).URLPattern === 'function';

interface Info {
  url: string;
  headers: Record<string, string>;
  urlPattern: { type: string; native: boolean; match: Record<string, string> | null };
  navigator: { userAgent: string; hardwareConcurrency: number };
  webStorage: [string, string];
  who: string;
}

/** One request over a fresh connection with exactly these raw headers; resolves status, reason, headers, body or the socket error. */
function raw(url: string, reqPath: string, opts: { method?: string; headers?: Array<[string, string]> } = {}): Promise<{ status: number; statusText: string; headers: http.IncomingHttpHeaders; body: string } | { error: string }> {
  const u = new URL(url);
  const given = opts.headers ?? [];
  const flat = given.some(([n]) => n.toLowerCase() === 'host') ? [] : ['host', u.host];
  for (const [n, v] of given) flat.push(n, v);
  return new Promise((resolve) => {
    const req = http.request({ host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port, path: reqPath, method: opts.method ?? 'GET', agent: false, headers: flat }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, statusText: res.statusMessage!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

async function info(url: string, reqPath: string, headers: Array<[string, string]> = []): Promise<Info> {
  const r = await raw(url, reqPath, { headers });
  assert.ok(!('error' in r), `request failed: ${JSON.stringify(r)}`);
  assert.equal(r.status, 200, r.body);
  return JSON.parse(r.body) as Info;
}

/** Scrape one sample of the admin /metrics. */
async function metric(t: TestHost, name: string, labels: string): Promise<number> {
  const res = await fetch(`${t.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t.host.token}` } });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('platform details (thread and inline runtimes)', () => {
  let t: TestHost;
  before(async () => {
    t = await startHost(DIR);
    assert.deepEqual(t.host.problems, []);
  });
  after(async () => { await t?.close(); });

  it('URLPattern and navigator exist in the function (isolate and inline)', async () => {
    for (const p of ['/p/info', '/rpc/platform-inline/info']) {
      const i = await info(t.url, p);
      assert.equal(i.urlPattern.type, 'function', p);
      assert.deepEqual(i.urlPattern.match, { id: '42' }, p);
      // Node's own where it has one (Node >= 23.8), else urlpattern-polyfill.
      assert.equal(i.urlPattern.native, NATIVE_URLPATTERN, p);
      assert.equal(i.navigator.userAgent, `Node.js/${NODE_MAJOR}`, p);
      assert.ok(Number.isInteger(i.navigator.hardwareConcurrency) && i.navigator.hardwareConcurrency >= 1, p);
      // No Web Storage on any Node line (Node >= 25 has it; Workers and Deno Deploy do not).
      assert.deepEqual(i.webStorage, ['undefined', 'undefined'], p);
    }
  });

  it('without trustProxy: cf-connecting-ip and x-real-ip are the peer, whatever the client sent; x-forwarded-proto is not believed', async () => {
    const i = await info(t.url, '/p/info', [
      ['CF-Connecting-IP', '6.6.6.6'], ['cf-connecting-ip', '6.6.6.7'], ['X-Real-IP', '7.7.7.7'],
      ['X-Forwarded-For', '8.8.8.8'], ['X-Forwarded-Proto', 'https'], ['Host', 'app.example:8080'],
    ]);
    assert.equal(i.headers['cf-connecting-ip'], '127.0.0.1');
    assert.equal(i.headers['x-real-ip'], '127.0.0.1');
    assert.equal(i.headers['x-forwarded-for'], '8.8.8.8', 'passed through as sent (not believed)');
    assert.equal(i.url, 'http://app.example:8080/p/info');
    const inline = await info(t.url, '/rpc/platform-inline/info', [['cf-connecting-ip', '6.6.6.6']]);
    assert.equal(inline.headers['cf-connecting-ip'], '127.0.0.1');
  });

  it('.txt and .html import as text, .bin as an ArrayBuffer, .wasm as a WebAssembly.Module', async () => {
    for (const p of ['/p/assets', '/rpc/platform-inline/assets']) {
      const r = await fetch(t.url + p);
      assert.equal(r.status, 200, p);
      assert.deepEqual(await r.json(), {
        note: 'hello from a text module\n',
        page: '<h1>fezz</h1>\n',
        data: { isArrayBuffer: true, bytes: [0, 1, 2, 254, 255] },
        wasm: { isModule: true, add: 42 },
      }, p);
    }
  });

  it('a custom statusText reaches the client (buffered and streamed bodies, isolate and inline)', async () => {
    for (const [p, status, text, body] of [
      ['/p/status-text', 418, 'I Am A Teapot', 'short and stout'],
      ['/p/stream-status-text', 202, 'Accepted For Later', 'streamed'],
      ['/rpc/platform-inline/status-text', 418, 'I Am A Teapot', 'short and stout'],
    ] as const) {
      const r = await raw(t.url, p);
      assert.ok(!('error' in r));
      assert.deepEqual([r.status, r.statusText, r.body], [status, text, body], p);
    }
    // Without one, the standard phrase.
    const plain = await raw(t.url, '/p/wild/x');
    assert.ok(!('error' in plain) && plain.statusText === 'OK');
  });

  it('a status text a status line cannot carry is a 500, never a split response', async () => {
    for (const p of ['/p/bad-status-text', '/rpc/platform-inline/bad-status-text']) {
      const r = await raw(t.url, p);
      assert.ok(!('error' in r));
      assert.equal(r.status, 500, p);
      assert.equal(r.headers['x-injected'], undefined);
      assert.equal((JSON.parse(r.body) as { code: string }).code, 'FEZZ_ERR_HANDLER_BAD_RESPONSE');
    }
  });

  it('Response.error() resets the connection (no HTTP answer), is counted as status 0 and logged; the host goes on', async () => {
    for (const p of ['/p/error', '/p/error-async', '/rpc/platform-inline/error']) {
      const r = await raw(t.url, p);
      assert.deepEqual(r, { error: 'ECONNRESET' }, p);
    }
    assert.equal(await metric(t, 'fezz_requests_total', 'fn="platform@1.0.0",status="0"'), 2);
    assert.ok(t.logs.some((l) => /Response\.error\(\)/.test(l.msg)), 'logged');
    const after = await raw(t.url, '/p/status-text');
    assert.ok(!('error' in after) && after.status === 418);
  });

  it('a route /x/* also matches /x/ (not /x)', async () => {
    const slash = await raw(t.url, '/p/wild/');
    assert.ok(!('error' in slash));
    assert.deepEqual([slash.status, slash.body], [200, 'wild:/p/wild/']);
    const bare = await raw(t.url, '/p/wild');
    assert.ok(!('error' in bare) && bare.status === 404);
  });

  it('OPTIONS on a route with no OPTIONS handler reaches the function\'s default handler; other methods still get 405', async () => {
    const r = await raw(t.url, '/p/items/7', { method: 'OPTIONS', headers: [['origin', 'https://a.example'], ['access-control-request-method', 'POST']] });
    assert.ok(!('error' in r));
    assert.equal(r.status, 204);
    assert.equal(r.headers['x-answered-by'], 'function:/p/items/7');
    assert.equal(r.headers['access-control-allow-origin'], 'https://a.example');
    const put = await raw(t.url, '/p/items/7', { method: 'PUT' });
    assert.ok(!('error' in put) && put.status === 405);
    assert.deepEqual(put.headers.allow?.split(', ').sort(), ['GET', 'HEAD', 'POST']);
    const none = await raw(t.url, '/nothing/here', { method: 'OPTIONS' });
    assert.ok(!('error' in none) && none.status === 404);
    // The named GET handler is still the GET route's.
    assert.deepEqual(await (await fetch(`${t.url}/p/items/9`)).json(), { item: '9', who: 'platform' });
  });

  it('an unmodified Hono app with hono/cors answers a preflight from its own middleware', async () => {
    const pre = await raw(t.url, '/api/items', {
      method: 'OPTIONS',
      headers: [['origin', 'https://app.example'], ['access-control-request-method', 'DELETE'], ['access-control-request-headers', 'x-custom']],
    });
    assert.ok(!('error' in pre));
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET,POST,DELETE');
    assert.equal(pre.headers['access-control-allow-headers'], 'x-custom');
    assert.equal(pre.headers['access-control-max-age'], '600');
    const post = await fetch(`${t.url}/api/items`, { method: 'POST', headers: { origin: 'https://app.example', 'content-type': 'application/json' }, body: '{"a":1}' });
    assert.equal(post.status, 201);
    assert.equal(post.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.deepEqual(await post.json(), { created: { a: 1 } });
    const root = await fetch(`${t.url}/api/`);
    assert.deepEqual(await root.json(), { root: true });
  });
});

describe('trustProxy', () => {
  it('parses hop counts, address lists and names; refuses the rest with FEZZ_ERR_CONFIG_INVALID', () => {
    for (const off of [undefined, false, 0, '0', 'false', '', ' ', []]) assert.equal(parseTrustProxy(off), null, JSON.stringify(off));
    assert.deepEqual({ ...parseTrustProxy(2)! }, { hops: 2, proxies: null, description: '2' });
    assert.equal(parseTrustProxy('3')!.hops, 3);
    const list = parseTrustProxy('loopback, 10.0.0.0/8,192.0.2.7, fd00::/8')!;
    assert.equal(list.description, 'loopback,10.0.0.0/8,192.0.2.7,fd00::/8');
    assert.equal(list.hops, 0);
    for (const [a, fam, want] of [['127.9.9.9', 'ipv4', true], ['::1', 'ipv6', true], ['10.200.0.1', 'ipv4', true], ['192.0.2.7', 'ipv4', true], ['192.0.2.8', 'ipv4', false], ['fd12::1', 'ipv6', true], ['11.0.0.1', 'ipv4', false]] as const) {
      assert.equal(list.proxies!.check(a, fam), want, a);
    }
    assert.equal(parseTrustProxy(['private'])!.proxies!.check('172.20.1.1', 'ipv4'), true);
    for (const bad of [true, -1, 1.5, 101, 'nonsense', '10.0.0.0/33', '10.0.0.0/', '::1/129', '1.2.3.4/8x', [1], {}]) {
      assert.throws(() => parseTrustProxy(bad), (e: FezzError) => e.code === 'FEZZ_ERR_CONFIG_INVALID' && /trustProxy/.test(e.message), JSON.stringify(bad));
    }
  });

  describe('a hop count', () => {
    let t: TestHost;
    before(async () => { t = await startHost(DIR, { trustProxy: 1 }); });
    after(async () => { await t?.close(); });

    it('the client is the address the nearest proxy added; its x-forwarded-proto sets request.url\'s scheme', async () => {
      let i = await info(t.url, '/p/info', [['x-forwarded-for', '203.0.113.9, 198.51.100.4'], ['x-forwarded-proto', 'https'], ['cf-connecting-ip', '6.6.6.6'], ['host', 'app.example']]);
      assert.equal(i.headers['cf-connecting-ip'], '198.51.100.4', 'options.trustProxy must reach the request path (host.ts: DispatchState.trustProxy)');
      assert.equal(i.headers['x-real-ip'], '198.51.100.4');
      assert.equal(i.url, 'https://app.example/p/info');
      // Two header lines are one list; ports are dropped; IPv6 as is.
      i = await info(t.url, '/p/info', [['x-forwarded-for', '203.0.113.9'], ['X-Forwarded-For', '[2001:db8::7]:4711'], ['x-forwarded-proto', 'http']]);
      assert.equal(i.headers['cf-connecting-ip'], '2001:db8::7');
      assert.match(i.url, /^http:\/\//);
      // No header: the peer. A garbage entry: the peer stands.
      assert.equal((await info(t.url, '/p/info')).headers['cf-connecting-ip'], '127.0.0.1');
      assert.equal((await info(t.url, '/p/info', [['x-forwarded-for', 'not-an-ip']])).headers['cf-connecting-ip'], '127.0.0.1');
      // Inline functions see the same.
      assert.equal((await info(t.url, '/rpc/platform-inline/info', [['x-forwarded-for', '203.0.113.5']])).headers['cf-connecting-ip'], '203.0.113.5');
    });
  });

  describe('an address list', () => {
    let t: TestHost;
    let untrusted: TestHost;
    before(async () => {
      t = await startHost(DIR, { trustProxy: ['loopback', '10.0.0.0/8'] });
      untrusted = await startHost(DIR, { trustProxy: '10.0.0.0/8' });
    });
    after(async () => { await t?.close(); await untrusted?.close(); });

    it('walks x-forwarded-for from the right past trusted proxies', async () => {
      const i = await info(t.url, '/p/info', [['x-forwarded-for', '198.51.100.1, 203.0.113.9, 10.1.2.3, 127.0.0.2'], ['x-forwarded-proto', 'HTTPS, http']]);
      assert.equal(i.headers['cf-connecting-ip'], '203.0.113.9');
      assert.match(i.url, /^https:\/\//);
      // Every hop trusted: the leftmost.
      assert.equal((await info(t.url, '/p/info', [['x-forwarded-for', '10.0.0.1, 127.0.0.1']])).headers['cf-connecting-ip'], '10.0.0.1');
    });

    it('a peer not in the list is the client, and nothing it forwards is believed', async () => {
      const i = await info(untrusted.url, '/p/info', [['x-forwarded-for', '203.0.113.9'], ['x-forwarded-proto', 'https'], ['x-real-ip', '203.0.113.9']]);
      assert.equal(i.headers['cf-connecting-ip'], '127.0.0.1');
      assert.equal(i.headers['x-real-ip'], '127.0.0.1');
      assert.match(i.url, /^http:\/\//);
    });
  });
});

describe('platform details in the sandbox tier', () => {
  let t: TestHost;
  before(async () => {
    t = await startHost(DIR, { isolation: 'sandbox' });
  });
  after(async () => { await t?.close(); });

  it('globals, module imports, statusText, Response.error() and the client address work as in a thread', async () => {
    // The inline fixture cannot run under --isolation sandbox; everything else loads.
    assert.deepEqual(t.host.problems.map((p) => p.file), ['test/fixtures/platform/platform-inline@1.0.0/fezz.json']);
    const i = await info(t.url, '/p/info', [['cf-connecting-ip', '6.6.6.6']]);
    assert.deepEqual(i.urlPattern.match, { id: '42' });
    assert.equal(i.navigator.userAgent, `Node.js/${NODE_MAJOR}`);
    assert.equal(i.headers['cf-connecting-ip'], '127.0.0.1');
    const assets = await (await fetch(`${t.url}/p/assets`)).json() as { wasm: { add: number }; data: { isArrayBuffer: boolean } };
    assert.equal(assets.wasm.add, 42);
    assert.equal(assets.data.isArrayBuffer, true);
    const st = await raw(t.url, '/p/stream-status-text');
    assert.ok(!('error' in st));
    assert.deepEqual([st.status, st.statusText], [202, 'Accepted For Later']);
    assert.deepEqual(await raw(t.url, '/p/error'), { error: 'ECONNRESET' });
  });
});

describe('the client address on a dual-stack listener', () => {
  let t: TestHost;
  before(async () => { t = await startHost(DIR, { host: '::' }); });
  after(async () => { await t?.close(); });

  it('an IPv4 client is shown as IPv4, not ::ffff:127.0.0.1', async () => {
    const port = new URL(t.url).port;
    const i = await info(`http://127.0.0.1:${port}`, '/p/info');
    assert.equal(i.headers['cf-connecting-ip'], '127.0.0.1');
    if (await canReach('::1', Number(port))) {
      const v6 = await info(`http://[::1]:${port}`, '/p/info');
      assert.equal(v6.headers['cf-connecting-ip'], '::1');
    }
  });
});

describe('the compiled build (dist/)', () => {
  const ROOT = path.join(FIXTURES, '..', '..');
  const built = existsSync(path.join(ROOT, 'dist', 'runtime', 'isolate', 'platform-globals.js'));

  it('a hardened worker of dist/ has URLPattern and module imports (it may read the polyfill file, not node_modules)', { skip: built ? false : 'dist/ is not built (npm run build; npm ci builds it)' }, async () => {
    // A child process runs the compiled library the way `fezz serve` does, on the fixture.
    const script = `
      import { createHost } from './dist/index.js';
      const host = await createHost({ dir: ${JSON.stringify(DIR)}, port: 0, adminPort: 0, logLevel: 'silent', cacheDir: ${JSON.stringify(path.join((await import('node:os')).tmpdir(), 'fezz-test-cache'))} });
      try {
        const { url } = await host.listen();
        const out = {};
        for (const p of ['/p/info', '/p/assets']) { const r = await fetch(url + p); out[p] = [r.status, await r.json().catch(() => null)]; }
        process.stdout.write(JSON.stringify(out));
      } finally { await host.close(1000); }
    `;
    let stderr = '';
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, timeout: 30_000 }, (err, out, errOut) => { stderr = errOut; return err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out); });
    });
    // Node >= 25 warns on stderr when something reads its localStorage without --localstorage-file.
    assert.doesNotMatch(stderr, /ExperimentalWarning|localStorage/, stderr);
    const out = JSON.parse(stdout) as Record<string, [number, Record<string, unknown>]>;
    assert.equal(out['/p/info']![0], 200, JSON.stringify(out['/p/info']));
    assert.deepEqual((out['/p/info']![1] as unknown as Info).urlPattern.match, { id: '42' });
    assert.deepEqual((out['/p/info']![1] as unknown as Info).webStorage, ['undefined', 'undefined']);
    assert.equal(out['/p/assets']![0], 200);
    assert.equal((out['/p/assets']![1] as { wasm: { add: number } }).wasm.add, 42);
  });
});

/** Whether this machine has IPv6 loopback. */
function canReach(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}
