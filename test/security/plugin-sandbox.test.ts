// Issue 11: process and native plugins under the sandbox profile. A plugin whose manifest says
// `"isolation": "sandbox"` (or every plugin of a host started with `--isolation sandbox`) runs
// under bubblewrap (src/runtime/sandbox/plugin-sandbox.ts): uid 65534, no capabilities, its own
// pid and network namespaces, cgroup limits, seccomp; it still reaches the ABI over HTTP at
// FEZZ_HOST, through a relay on its own loopback.
//
// Asserted: the five example plugins (C, Go, Go native, Rust, Python) work unchanged under it
// (JSON, a binary body, 50 concurrent requests); a probe plugin (test/fixtures/escape-plugin)
// finds no secret of the host (environment, /proc of the host, the admin token, a canary),
// no host files (/etc/passwd, /root, other functions, the functions directory), writes only
// /tmp, runs as 65534 without capabilities (a child process is as harmless), cannot signal
// the host or reach the admin port or private addresses; its token gets 403 on admin routes
// and 404 on a request id not its own; a 2 GB allocation and a fork bomb end or stay in its
// sandbox while another function keeps answering.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { EXAMPLES, startHost, type TestHost } from '../helpers/host.js';
import { childrenOf } from '../helpers/procs.js';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CANARY = `plugin-canary-${randomBytes(16).toString('hex')}`;

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

type Outcome = 'denied' | 'contained' | 'failed' | 'escaped';
interface Result { attempt: string; outcome: Outcome; code: string | null; detail: string }

describe('sandboxed plugins: the example plugins work unchanged (issue 11)', { skip }, () => {
  let t: TestHost;
  before(async () => { t = await startHost(EXAMPLES, { isolation: 'sandbox' }); });
  after(async () => { await t.close(); });

  for (const [id, lang] of [['echo-c', 'c'], ['echo-go', 'go'], ['echo-go-native', 'go'], ['echo-rust', 'rust'], ['echo-python', 'python']] as const) {
    it(`${id}: JSON, a binary body and 50 concurrent requests`, async () => {
      let res = await fetch(`${t.url}/rpc/${id}/json`);
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(await res.json(), { lang, message: `hello from ${lang}`, path: '/json', method: 'GET' });
      const body = new Uint8Array(200_000).map((_, i) => (i * 31 + 7) % 256);
      res = await fetch(`${t.url}/rpc/${id}/bin?x=1`, { method: 'PUT', body, headers: { 'content-type': 'application/x-bin' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-echo-query'), 'x=1');
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), body);
      const many = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const r = await fetch(`${t.url}/rpc/${id}/n/${i}`, { method: 'POST', body: `body-${i}` });
        return { status: r.status, path: r.headers.get('x-echo-path'), text: await r.text() };
      }));
      assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => ({ status: 200, path: `/n/${i}`, text: `body-${i}` })));
    });
  }

  it('every plugin sandbox was started by the spawner: the host forked none (a fork stalls it 16-30 ms)', () => {
    const kids = childrenOf(process.pid); // the host runs in this process
    assert.ok(!kids.some((c) => /^(bwrap|setpriv|sh)$/.test(path.basename(c.cmd[0] ?? ''))), `the host's children: ${JSON.stringify(kids)}`);
    const spawner = kids.find((c) => c.cmd[1] === '-e');
    assert.ok(spawner !== undefined, `no spawner among ${JSON.stringify(kids)}`);
    const launchers = childrenOf(spawner.pid).filter((c) => /^(bwrap|setpriv|sh)$/.test(path.basename(c.cmd[0] ?? '')));
    // The five plugins above, each with at least one process still warm.
    assert.ok(launchers.length >= 5, `the spawner's sandboxes: ${JSON.stringify(launchers)}`);
  });
});


describe('sandboxed plugins: a hostile plugin cannot escape (issue 11)', { skip }, () => {
  let tmp: string;
  let t: TestHost;
  let upstream: http.Server;
  let upstreamPort = 0;
  const q: Record<string, string> = {};
  const results: Result[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-plugin-escape-'));
    const functionsDir = path.join(tmp, 'functions');
    await mkdir(functionsDir);
    await cp(path.join(FIXTURES, 'escape-plugin', 'probe-py@1.0.0'), path.join(functionsDir, 'probe-py@1.0.0'), { recursive: true });
    copyFileSync(path.join(ROOT, 'sdk', 'python', 'fezz.py'), path.join(functionsDir, 'probe-py@1.0.0', 'fezz.py'));
    await cp(path.join(FIXTURES, 'escape-sandbox', 'victim@1.0.0'), path.join(functionsDir, 'victim@1.0.0'), { recursive: true });
    // The same probe, granted one upstream (by IP: a name resolving to loopback is refused).
    upstream = http.createServer((req, res) => res.end(`upstream saw ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    upstreamPort = (upstream.address() as { port: number }).port;
    const netDir = path.join(functionsDir, 'probe-net@1.0.0');
    await cp(path.join(functionsDir, 'probe-py@1.0.0'), netDir, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(netDir, 'fezz.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(netDir, 'fezz.json'), JSON.stringify({
      ...manifest, id: 'probe-net', routes: [{ method: 'GET', path: '/net/:name' }], permissions: { outbound: [`127.0.0.1:${upstreamPort}`] },
    }));
    // A secret in the host's environment (this process is the host).
    process.env.PLUGIN_ESCAPE_CANARY = CANARY;
    t = await startHost(functionsDir, { cacheDir: path.join(tmp, 'cache') });
    assert.deepEqual(t.host.problems, []);
    Object.assign(q, {
      hostPid: String(process.pid), adminPort: new URL(t.host.adminUrl).port, functionsDir,
      victimFile: path.join(functionsDir, 'victim@1.0.0', 'secret.txt'), otherId: '1234567890123',
    });
  });

  after(async () => {
    delete process.env.PLUGIN_ESCAPE_CANARY;
    console.log(['', 'sandboxed plugin: attempts', ...results.map((r) => `  ${r.attempt.padEnd(24)}${r.outcome.padEnd(10)}${(r.code ?? '').padEnd(14)}${r.detail.slice(0, 110).replace(/\s+/g, ' ')}`)].join('\n'));
    await t?.close();
    upstream?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  async function probe(name: string, extra: Record<string, string> = {}): Promise<Result> {
    const res = await fetch(`${t.url}/probe/${encodeURIComponent(name)}?${new URLSearchParams({ ...q, ...extra }).toString()}`);
    const text = await res.text();
    assert.equal(res.status, 200, `${name}: ${text}`);
    const r = JSON.parse(text) as Result;
    results.push(r);
    return r;
  }

  async function expect(name: string, outcomes: Outcome[], extra?: Record<string, string>): Promise<Result> {
    const r = await probe(name, extra);
    assert.ok(outcomes.includes(r.outcome), `${name}: expected ${outcomes.join('|')}, got ${r.outcome} ${r.code ?? ''} ${r.detail}`);
    return r;
  }

  async function hostAlive(): Promise<void> {
    const res = await fetch(`${t.url}/victim`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'victim: VICTIM-BUNDLE-MARKER');
  }

  it('runs sandboxed and answers', async () => {
    assert.equal((await expect('ok', ['escaped'])).detail, 'ok');
    await hostAlive();
  });

  it('no secret of the host: its environment, the admin token, a canary, the host\'s /proc', async () => {
    const env = JSON.parse((await expect('env', ['contained'])).detail) as Record<string, string>;
    const values = Object.values(env).join('\n');
    assert.ok(!values.includes(t.host.token), 'the admin token is not in its environment');
    assert.ok(!values.includes(CANARY), 'the host\'s environment is not in its environment');
    assert.notEqual(env.FEZZ_TOKEN, t.host.token);
    assert.match(env.FEZZ_HOST ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    const environ = await expect('read-proc-self-environ', ['contained']);
    assert.ok(!environ.detail.includes(t.host.token) && !environ.detail.includes(CANARY));
    await expect('host-pid', ['denied']);
    await expect('kill-host', ['denied']);
    const pids = (await expect('pids', ['contained'])).detail.split(',');
    assert.ok(pids.length <= 4, `only its own processes are visible: ${pids.join(',')}`);
  });

  it('sees no host files and writes only /tmp', async () => {
    for (const a of ['read-etc-passwd', 'read-root-home', 'read-victim-file', 'list-functions-dir']) await expect(a, ['denied']);
    const root = (await expect('list-root', ['escaped'])).detail.split(',');
    const allowed = new Set(['bin', 'dev', 'fezz', 'fn', 'lib', 'lib32', 'lib64', 'libx32', 'proc', 'sbin', 'tmp', 'usr']);
    assert.deepEqual(root.filter((d) => !allowed.has(d)), [], `/ holds only what it needs: ${root.join(',')}`);
    const inbox = (await expect('list-inbox', ['escaped'])).detail.split(',');
    assert.deepEqual(inbox, ['abi.sock', 'app']);
    for (const a of ['write-usr', 'write-app', 'write-root']) await expect(a, ['denied']);
    assert.equal((await expect('write-tmp', ['escaped'])).detail, '/tmp/x works');
  });

  it('runs as uid 65534 without capabilities; its child processes too', async () => {
    const id = JSON.parse((await expect('uid', ['escaped'])).detail) as { uid: number; gid: number; capEff: string };
    assert.deepEqual([id.uid, id.gid, BigInt(`0x${id.capEff}`)], [65534, 65534, 0n]);
    assert.equal((await expect('exec', ['contained'])).detail, '65534 CapEff: 0000000000000000');
  });

  it('reaches neither the admin port nor private addresses: only its own loopback', async () => {
    await expect('connect-admin', ['denied']);
    for (const [host, port] of [['10.0.0.1', '80'], ['169.254.169.254', '80'], ['192.168.1.1', '443']] as const) {
      await expect('connect-private', ['denied'], { host, port });
    }
    assert.equal((await expect('interfaces', ['contained'])).detail, 'lo');
  });

  it('egress: a granted upstream answers through HTTPS_PROXY; another port is refused; no grant, no proxy', async () => {
    const get = async (name: string, extra: Record<string, string>): Promise<Result> => {
      const res = await fetch(`${t.url}/net/${name}?${new URLSearchParams(extra).toString()}`);
      assert.equal(res.status, 200);
      const r = await res.json() as Result;
      results.push({ ...r, attempt: `net:${r.attempt}` });
      return r;
    };
    const ok = await get('egress', { host: '127.0.0.1', port: String(upstreamPort) });
    assert.deepEqual([ok.outcome, ok.detail], ['escaped', 'upstream saw /from-plugin']);
    const other = await get('egress', { host: '127.0.0.1', port: q.adminPort! });
    assert.deepEqual([other.outcome, other.code], ['denied', '403']);
    const env = JSON.parse((await get('env', {})).detail) as Record<string, string>;
    assert.match(env.HTTPS_PROXY ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(env.NO_PROXY ?? '', /127\.0\.0\.1/);
    assert.equal((await expect('egress', ['denied'], { host: '127.0.0.1', port: String(upstreamPort) })).code, 'NOPROXY');
  });

  it('its ABI token: 403 on every admin route, 404 on a request id not its own', async () => {
    const fns = await expect('abi-admin-route', ['denied']);
    assert.equal(fns.code, '403');
    assert.equal((await expect('abi-deploy', ['denied'])).code, '403');
    assert.equal((await expect('abi-other-request', ['denied'])).code, '404');
  });

  it('a 2 GB allocation ends only its sandbox; the plugin is replaced', async () => {
    const res = await fetch(`${t.url}/probe/memory-bomb`);
    const text = await res.text();
    assert.ok([502, 504].includes(res.status), `memory bomb: ${res.status} ${text}`);
    await hostAlive();
    assert.equal((await expect('ok', ['escaped'])).detail, 'ok');
  });

  it('a fork bomb stays at the pids limit inside its sandbox; the host and another function answer', async () => {
    const r = await probe('fork-bomb');
    // The bomb may also starve the probe's own reply (no process left to fork): then it times out.
    if (r.outcome === 'contained') assert.ok(Number(r.detail) <= 64, `at most 64 processes: ${r.detail}`);
    else assert.equal(r.outcome, 'denied', `${r.code} ${r.detail}`);
    for (let i = 0; i < 20; i++) await hostAlive();
  });
});
