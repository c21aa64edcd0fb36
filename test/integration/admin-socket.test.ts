// The admin API on a unix socket (issue 11, `fezz serve --admin-socket`): a real host serves
// the abi-tokens fixtures (two process plugins) with `adminSocket`. The socket is 0600 in a
// 0700 directory; the admin API works over it (raw HTTP, the CLI's client, `fezz list`); the
// admin token over TCP is 403 FEZZ_ERR_ADMIN_SOCKET_ONLY while plugins' scoped tokens keep
// working there; a stale socket is replaced, a live one or a non-socket refuses the start;
// the file is gone after close.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { cp, lstat, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHost, type FezzError } from '../../src/index.js';
import { AdminClient } from '../../src/cli/admin-client.js';
import { FIXTURES, startHost, type TestHost } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Answer { status: number; body: Record<string, unknown> }

/** One request over the unix socket `socketPath` (http.request's socketPath: a real socket). */
function overSocket(socketPath: string, method: string, target: string, token: string | null, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = http.request({ socketPath, method, path: target, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body: text.startsWith('{') ? JSON.parse(text) as Record<string, unknown> : { text } }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One request to the TCP admin listener. */
async function overTcp(t: TestHost, target: string, token: string | null): Promise<Answer> {
  const res = await fetch(t.host.adminUrl + target, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) as Record<string, unknown> : { text } };
}

/** A socket file nobody listens on, as a host killed with SIGKILL leaves it. */
function staleSocket(file: string): void {
  const r = spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.equal(r.signal, 'SIGKILL', String(r.stderr));
}

function fezz(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) childEnv[k] = v;
  Object.assign(childEnv, env);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c; });
    child.stderr.on('data', (c: Buffer) => { stderr += c; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('admin socket', () => {
  let work: string;
  let dir: string;
  let sock: string;
  let tokenFile: string;
  let t: TestHost;

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fezz-admin-sock-'));
    dir = path.join(work, 'functions');
    await cp(path.join(FIXTURES, 'abi-tokens'), dir, { recursive: true });
    sock = path.join(work, 'run', 'admin.sock'); // `run/` does not exist yet
    tokenFile = path.join(work, 'admin-token');
    t = await startHost(dir, { adminSocket: sock, tokenFile });
  });
  after(async () => {
    await t?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('is a socket of mode 0600, in a directory created with 0700', async () => {
    assert.equal(t.host.adminSocket, sock);
    const st = await lstat(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(sock))).mode & 0o777, 0o700);
  });

  it('serves the admin API with the admin token; no token is 401', async () => {
    const list = await overSocket(sock, 'GET', '/admin/functions', t.host.token);
    assert.equal(list.status, 200);
    assert.deepEqual((list.body.functions as Array<{ key: string }>).map((f) => f.key).sort(), ['holder@1.0.0', 'prober@1.0.0']);
    assert.equal((await overSocket(sock, 'GET', '/admin/functions', null)).status, 401);
    assert.equal((await overSocket(sock, 'GET', '/admin/functions', 'not-the-admin-token-0123')).status, 401);
    assert.equal((await overSocket(sock, 'GET', '/metrics', t.host.token)).status, 200);
  });

  it('deploys through the CLI client over the socket (token from the token file)', async () => {
    const client = AdminClient.from({ adminSocket: sock, tokenFile }, {});
    assert.equal(client.where, `unix:${sock}`);
    const files = {
      'fezz.json': JSON.stringify({ id: 'viasock', version: '1.0.0', entry: 'index.mjs' }),
      'index.mjs': 'export default { fetch: () => new Response("deployed over the admin socket") };\n',
    };
    const pkg = { files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) };
    assert.equal((await client.deploy(pkg)).key, 'viasock@1.0.0');
    const res = await fetch(`${t.url}/rpc/viasock/`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'deployed over the admin socket');
    assert.ok((await client.listFunctions()).functions.some((f) => f.key === 'viasock@1.0.0'));
  });

  it('answers the admin token on TCP with 403 FEZZ_ERR_ADMIN_SOCKET_ONLY, on every route', async () => {
    for (const target of ['/admin/functions', '/metrics', '/admin/get-request-info?request_id=1', '/admin/no-such-path']) {
      const a = await overTcp(t, target, t.host.token);
      assert.equal(a.status, 403, target);
      assert.equal(a.body.code, 'FEZZ_ERR_ADMIN_SOCKET_ONLY', target);
      assert.match(String(a.body.message), new RegExp(`only on the admin socket ${sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*--admin-socket`));
    }
    // Without the admin token, TCP answers as before.
    assert.equal((await overTcp(t, '/admin/functions', null)).status, 401);
    assert.equal((await overTcp(t, '/admin/functions', 'not-the-admin-token-0123')).status, 401);
    // The CLI says the same.
    await assert.rejects(new AdminClient(t.host.adminUrl, t.host.token).listFunctions(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'FEZZ_ERR_ADMIN_SOCKET_ONLY');
      return true;
    });
  });

  it('keeps plugins on TCP: a scoped token fetches and answers its own requests there', async () => {
    // prober fetches its request and pushes the answer over FEZZ_HOST (TCP) with its own token.
    const res = await fetch(`${t.url}/rpc/prober/env`);
    assert.equal(res.status, 200);
    const env = ((await res.json()) as { env: Record<string, string> }).env;
    assert.equal(env.FEZZ_HOST, t.host.adminUrl);
    assert.match(env.FEZZ_HOST ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(env.FEZZ_TOKEN, t.host.token);
    // Its token still reaches only the ABI: the admin routes are 403 ABI_FORBIDDEN, as without a socket.
    const probe = await fetch(`${t.url}/rpc/prober/probe`);
    assert.equal(probe.status, 200);
    const p = (await probe.json()) as { ownFetch: { status: number }; admin: Record<string, { status: number; body: { code: string } }> };
    assert.equal(p.ownFetch.status, 200);
    for (const [route, a] of Object.entries(p.admin)) {
      assert.equal(a.status, 403, route);
      assert.equal(a.body.code, 'FEZZ_ERR_ABI_FORBIDDEN', route);
    }
  });

  it('`fezz list --admin-socket` works; over TCP it names the socket', async () => {
    const ok = await fezz(['list', '--admin-socket', sock], { FEZZ_TOKEN_FILE: tokenFile });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /prober@1\.0\.0/);
    assert.match(ok.stdout, /holder@1\.0\.0/);
    const viaEnv = await fezz(['list', '--json'], { FEZZ_TOKEN_FILE: tokenFile, FEZZ_ADMIN_SOCKET: sock });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.ok((JSON.parse(viaEnv.stdout) as { functions: Array<{ key: string }> }).functions.some((f) => f.key === 'prober@1.0.0'));
    const tcp = await fezz(['list', '--host-url', t.host.adminUrl], { FEZZ_TOKEN_FILE: tokenFile });
    assert.equal(tcp.code, 1);
    assert.match(tcp.stderr, /^fezz: FEZZ_ERR_ADMIN_SOCKET_ONLY: The admin token is accepted only on the admin socket/);
    const missing = await fezz(['list', '--admin-socket', path.join(work, 'nope.sock')], { FEZZ_TOKEN_FILE: tokenFile });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot reach the admin socket .*nope\.sock: no such socket/);
  });

  it('refuses to start on a live socket, and leaves that one serving', async () => {
    const second = await createHost({ dir, port: 0, adminPort: 0, adminSocket: sock, tokenFile, logLevel: 'silent', logDestination: { write: () => true } });
    try {
      await assert.rejects(second.listen(), (err: FezzError) => {
        assert.equal(err.code, 'FEZZ_ERR_ADMIN_SOCKET_IN_USE');
        assert.match(err.message, /is in use: a server answers on it/);
        return true;
      });
      assert.equal(second.adminSocket, null);
    } finally {
      await second.close(1000);
    }
    assert.ok((await lstat(sock)).isSocket(), 'the refused host left the live socket alone');
    assert.equal((await overSocket(sock, 'GET', '/admin/functions', t.host.token)).status, 200);
  });

  it('removes the socket file on close', async () => {
    await t.close();
    assert.equal(existsSync(sock), false);
    assert.equal(t.host.adminSocket, null);
  });
});

describe('admin socket: what is at the path before start', () => {
  let work: string;
  let dir: string;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fezz-admin-sock-'));
    dir = path.join(work, 'functions');
    await cp(path.join(FIXTURES, 'abi-tokens'), dir, { recursive: true });
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('replaces a stale socket (nobody answers: left by a crash)', async () => {
    const sock = path.join(work, 'stale.sock');
    staleSocket(sock);
    assert.ok((await lstat(sock)).isSocket());
    assert.equal(await new Promise((resolve) => { net.connect(sock).once('error', (e: NodeJS.ErrnoException) => resolve(e.code)).once('connect', () => resolve('connected')); }), 'ECONNREFUSED');
    const t = await startHost(dir, { adminSocket: sock });
    try {
      // The stale one answered nothing: this answer comes from the new socket (inode numbers are reused, so not compared).
      assert.equal((await lstat(sock)).mode & 0o777, 0o600);
      assert.equal((await overSocket(sock, 'GET', '/admin/functions', t.host.token)).status, 200);
      assert.ok(t.logs.some((l) => l.msg.startsWith('removed a stale admin socket')));
    } finally {
      await t.close();
    }
    assert.equal(existsSync(sock), false);
  });

  it('refuses a path that is not a socket, and leaves it alone', async () => {
    const file = path.join(work, 'not-a-socket');
    await writeFile(file, 'keep me');
    const host = await createHost({ dir, port: 0, adminPort: 0, adminSocket: file, logLevel: 'silent', logDestination: { write: () => true } });
    try {
      await assert.rejects(host.listen(), (err: FezzError) => {
        assert.equal(err.code, 'FEZZ_ERR_ADMIN_SOCKET_UNUSABLE');
        assert.match(err.message, /exists and is not a socket/);
        return true;
      });
    } finally {
      await host.close(1000);
    }
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  it('refuses a path longer than a socket address takes', async () => {
    await assert.rejects(createHost({ dir, adminSocket: path.join(work, 'x'.repeat(120)) }), (err: FezzError) => {
      assert.equal(err.code, 'FEZZ_ERR_CONFIG_INVALID');
      assert.match(err.message, /adminSocket/);
      return true;
    });
  });
});
