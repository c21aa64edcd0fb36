// Issue 11, the "sandbox" tier: a function with `"isolation": "sandbox"` runs in a separate
// process under bubblewrap (src/runtime/sandbox/). A real `fezz serve` (from the sources) runs
// a sandboxed probe function (test/fixtures/escape-sandbox) that serves ordinary requests and
// tries one escape per request, next to a victim function (thread tier) whose files and
// traffic it goes after.
//
// Asserted: requests and responses work as in a thread (text, JSON, binary, headers, POST); a
// throw is 500, process.exit is 500 and the instance replaced, a synchronous loop 504; no
// secret of the host's is reachable (its environment, its pid, process.report, a canary in
// the host's process.env, the admin token); /etc/passwd, /root, other functions' files, the
// functions directory and the bundle cache are absent; writes outside /tmp fail, /tmp works;
// uid 65534 with no capabilities; child processes and workers are denied; process.kill of the
// host and listen({ fd }) fail, with 100 requests to the victim all answered by it; the admin
// port is unreachable (own network namespace); a 2 GB buffer and a fork bomb end only the
// sandbox. Skipped (with the reason) when bubblewrap cannot run here.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT, ServeProcess } from '../helpers/chaos-host.js';
import { PIDS_MAX, probeSandbox, sandboxCommand } from '../../src/runtime/sandbox/bwrap.js';
import { makeSandboxCgroups, removeCgroups } from '../../src/runtime/sandbox/cgroup.js';
import { newInbox, sandboxRuntimeDir } from '../../src/runtime/sandbox/sandbox-runtime.js';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'escape-sandbox');
const TOKEN = `escape-token-${randomBytes(16).toString('hex')}`;
const CANARY = `escape-canary-${randomBytes(16).toString('hex')}`;

type Outcome = 'denied' | 'contained' | 'failed' | 'escaped';
interface Result { attempt: string; outcome: Outcome; code: string | null; detail: string }

const availability = await probeSandbox();
// Skipped only on a developer machine without bubblewrap; CI installs it (.ci/run), so there
// a missing or broken bubblewrap is a failure, not a skip.
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

describe('sandbox tier: a sandboxed function cannot escape into the host (issue 11)', { skip }, () => {
  let tmp: string;
  let host: ServeProcess;
  let hostPid: number;
  const q: Record<string, string> = {};
  const results: Result[] = [];

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-sbx-escape-'));
    const functionsDir = path.join(tmp, 'functions');
    const cacheDir = path.join(tmp, 'cache');
    await mkdir(functionsDir);
    for (const name of ['probe@1.0.0', 'victim@1.0.0']) await cp(path.join(FIXTURES, name), path.join(functionsDir, name), { recursive: true });
    await writeFile(path.join(functionsDir, '.secret'), 'functions-dir secret\n');
    // A secret in the host's environment; the admin token is on its command line (--token).
    process.env.SANDBOX_ESCAPE_CANARY = CANARY;
    host = new ServeProcess({ dir: functionsDir, cacheDir, token: TOKEN, graceMs: 2000, startTimeoutMs: 10_000, logFile: path.join(tmp, 'host.log'), listenTimeoutMs: 30_000 }, false);
    delete process.env.SANDBOX_ESCAPE_CANARY;
    await host.listening(30_000);
    hostPid = host.child.pid!;
    assert.equal((await victim()).text, 'victim: VICTIM-BUNDLE-MARKER');
    const bundles = readdirSync(cacheDir).filter((f) => f.endsWith('.mjs')).map((f) => path.join(cacheDir, f));
    const otherBundle = bundles.find((f) => readFileSync(f, 'utf8').includes('VICTIM-BUNDLE-MARKER'));
    assert.ok(otherBundle, `the victim's bundle is in the cache: ${bundles.join(', ')}`);
    Object.assign(q, {
      hostPid: String(hostPid), canary: CANARY, token: TOKEN, functionsDir, cacheDir, otherBundle,
      victimFile: path.join(functionsDir, 'victim@1.0.0', 'secret.txt'), adminUrl: host.adminUrl,
    });
  });

  after(async () => {
    console.log(['', 'sandbox tier: attempts', ...results.map((r) => `  ${r.attempt.padEnd(28)}${r.outcome.padEnd(10)}${(r.code ?? '').padEnd(20)}${r.detail.slice(0, 110).replace(/\s+/g, ' ')}`)].join('\n'));
    if (host !== undefined && host.exit === null) {
      host.child.kill('SIGTERM');
      await Promise.race([host.exited, new Promise((r) => setTimeout(r, 5000))]);
      if (host.exit === null) host.child.kill('SIGKILL');
    }
    await host?.closeLog();
    await rm(tmp, { recursive: true, force: true });
  });

  async function victim(): Promise<{ status: number; text: string }> {
    const res = await fetch(`${host.url}/victim`, { headers: { connection: 'close' } });
    return { status: res.status, text: await res.text() };
  }

  async function call(name: string, init?: RequestInit): Promise<Response> {
    return fetch(`${host.url}/probe/${name}`, init);
  }

  async function probe(name: string): Promise<Result> {
    const res = await fetch(`${host.url}/probe/${encodeURIComponent(name)}?${new URLSearchParams(q).toString()}`);
    const text = await res.text();
    assert.equal(res.status, 200, `${name}: ${text}`);
    const r = JSON.parse(text) as Result;
    results.push(r);
    return r;
  }

  async function expect(name: string, outcomes: Outcome[]): Promise<Result> {
    const r = await probe(name);
    assert.ok(outcomes.includes(r.outcome), `${name}: expected ${outcomes.join('|')}, got ${r.outcome} ${r.code ?? ''} ${r.detail}`);
    return r;
  }

  /** The host and the victim still answer. */
  async function hostAlive(): Promise<void> {
    assert.equal(host.exit, null, `the host is running: ${JSON.stringify(host.exit)}`);
    const v = await victim();
    assert.deepEqual(v, { status: 200, text: 'victim: VICTIM-BUNDLE-MARKER' });
  }

  it('serves requests: text, JSON, binary, headers, a POST body', async () => {
    let res = await call('text');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello from the sandbox, hello');
    res = await call('json', { method: 'PUT' });
    const j = await res.json() as { ok: boolean; env: string; method: string };
    assert.deepEqual([j.ok, j.env, j.method], [true, 'hello', 'PUT']);
    res = await call('binary');
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), new Uint8Array(Array.from({ length: 256 }, (_, i) => i)));
    res = await call('headers', { headers: { 'x-test': 'echo me' } });
    assert.equal(res.headers.get('x-echo'), 'echo me');
    assert.equal(res.headers.get('set-cookie'), 'a=1');
    assert.ok(res.headers.get('x-request-id'));
    await res.text();
    const body = randomBytes(300_000);
    let sum = 0;
    for (const b of body) sum = (sum + b) % 65521;
    res = await call('post', { method: 'POST', body, headers: { 'content-type': 'application/x-test' } });
    assert.deepEqual(await res.json(), { length: body.length, sum, type: 'application/x-test' });
    res = await call('console');
    assert.equal(await res.text(), 'logged');
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => call('post', { method: 'POST', body: `x${i}` }).then((r) => r.json() as Promise<{ length: number }>)));
    assert.deepEqual(many.map((m) => m.length), Array.from({ length: 200 }, (_, i) => `x${i}`.length));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(host.logs.some((l) => l.line.msg === `from the sandbox ${String(l.line.requestId)}` && l.line.fn === 'probe@1.0.0'), 'console.log reaches the host log with its request id');
  });

  it('a throw is 500, process.exit is 500 and the instance is replaced, a synchronous loop is 504', async () => {
    let res = await call('throw');
    assert.equal(res.status, 500);
    await res.text();
    const before = await (await call('json')).json() as { served: number };
    res = await call('exit');
    assert.equal(res.status, 500);
    assert.match(await res.text(), /FEZZ_ERR_INSTANCE_CRASHED/);
    const t0 = performance.now();
    const after = await (await call('json')).json() as { served: number };
    console.log(`  replaced after process.exit: next request in ${(performance.now() - t0).toFixed(1)} ms (served ${before.served} -> ${after.served})`);
    assert.equal(after.served, 1, 'a new instance (module state reset)');
    res = await call('loop');
    assert.equal(res.status, 504);
    await res.text();
    await new Promise((r) => setTimeout(r, 1800)); // the ping grace, then the replacement
    res = await call('text');
    assert.equal(res.status, 200);
    await res.text();
    await hostAlive();
  });

  it('no secret of the host is reachable: environment, pid, process.report, the canary, the token', async () => {
    await expect('read-proc-self-environ', ['contained']);
    await expect('read-proc-1-environ', ['contained', 'denied']);
    await expect('read-proc-host-environ', ['denied']);
    await expect('host-pid-visible', ['contained']);
    await expect('process.report', ['contained']);
    await expect('process.env', ['contained']);
  });

  it('sees no host files: /etc/passwd, /root, other functions, the functions dir, the cache; writes only /tmp', async () => {
    for (const a of ['read-etc-passwd', 'read-root-home', 'read-other-function-file', 'list-functions-dir', 'list-cache-dir', 'read-other-bundle']) await expect(a, ['denied']);
    // Node's permission layer refuses to list /; the bare-profile test below lists it.
    const root = await expect('list-root', ['contained', 'denied']);
    if (root.outcome === 'contained') {
      const allowed = new Set(['bin', 'dev', 'fezz', 'fn', 'lib', 'lib32', 'lib64', 'libx32', 'proc', 'sbin', 'tmp', 'usr']);
      assert.deepEqual(root.detail.split(',').filter((d) => !allowed.has(d)), [], `/ holds only what Node needs: ${root.detail}`);
    }
    const inbox = await expect('list-own-inbox', ['escaped']);
    assert.match(inbox.detail, /^[^,]+\.mjs$/, 'its inbox holds its bundle alone');
    for (const a of ['write-usr', 'write-inbox', 'write-root']) await expect(a, ['denied']);
    const tmpWrite = await expect('write-tmp', ['escaped']);
    assert.equal(tmpWrite.detail, 'tmp works');
  });

  it('runs as uid 65534 without capabilities; child processes and workers are denied', async () => {
    const id = JSON.parse((await expect('uid', ['escaped'])).detail) as { uid: number; gid: number; capEff: string };
    assert.equal(id.uid, 65534);
    assert.equal(id.gid, 65534);
    assert.equal(BigInt(`0x${id.capEff}`), 0n, 'no effective capabilities');
    for (const a of ['child_process.execSync', 'child_process.spawn-sh', 'worker_threads.Worker', 'fork-bomb']) await expect(a, ['denied']);
    await hostAlive();
  });

  it('cannot signal the host or listen on its sockets: 100 requests to another function are all answered by it', async () => {
    await expect('process.kill-host', ['denied']);
    await expect('process._kill-host', ['denied']);
    const fds = await expect('socket-fds', ['contained']);
    assert.equal(fds.detail, 'socket descriptors: 2,3', 'only its stderr and its channel to the host (stdout is /dev/null)');
    await expect('net.listen-fd', ['denied']);
    const answers = await Promise.all(Array.from({ length: 100 }, () => victim().catch((err: Error) => ({ status: 0, text: err.message }))));
    assert.equal(answers.filter((a) => a.status !== 200 || a.text !== 'victim: VICTIM-BUNDLE-MARKER').length, 0);
    await hostAlive();
  });

  it('cannot reach the admin port: its own network namespace, loopback only', async () => {
    await expect('net.fetch-admin', ['denied', 'failed']);
    await expect('net.connect-admin', ['denied']);
    const ifs = await expect('net.interfaces', ['contained']);
    assert.ok(['', 'lo'].includes(ifs.detail), `interfaces: ${ifs.detail}`);
  });

  it('a 2 GB Buffer.alloc ends only the sandbox (and a filled one, where a memory cgroup caps it)', async () => {
    const bombs = ['alloc-bomb'];
    const memoryCgroup = makeSandboxCgroups(64);
    removeCgroups(memoryCgroup.dirs);
    if (memoryCgroup.dirs.some((d) => d.includes('/memory/') || existsSync(path.join(d, 'memory.max')))) bombs.push('alloc-fill-bomb');
    else console.log('  no memory cgroup here: the filled 2 GB bomb is not tried');
    for (const bomb of bombs) {
      const res = await call(bomb);
      // 500 when the sandbox dies first; 504 when filling the memory outlasts the request's
      // deadline on a loaded machine (the cgroup ends the sandbox all the same).
      assert.ok([500, 504].includes(res.status), `${bomb}: ${res.status} ${await res.clone().text()}`);
      await res.text();
      await hostAlive();
      const again = await call('text');
      assert.equal(again.status, 200);
      await again.text();
    }
  });

  it('the bare profile (bubblewrap alone, without Node\'s permission layer) shows nothing of the host', async () => {
    const inbox = newInbox();
    writeFileSync(path.join(inbox, 'look.cjs'), `
      const fs = require('fs');
      const out = {};
      const tryit = (k, f) => { try { out[k] = f(); } catch (e) { out[k] = 'error ' + e.code; } };
      tryit('root', () => fs.readdirSync('/').sort().join(','));
      tryit('passwd', () => fs.readFileSync('/etc/passwd', 'utf8').slice(0, 20));
      tryit('selfEnviron', () => fs.readFileSync('/proc/self/environ', 'utf8'));
      tryit('pids', () => fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).join(','));
      tryit('hostPid', () => fs.existsSync('/proc/${'$'}{process.argv[2]}'));
      tryit('uid', () => process.getuid() + ' ' + /CapEff:\\s*(\\w+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
      tryit('writeUsr', () => { fs.writeFileSync('/usr/x', 'x'); return 'wrote'; });
      tryit('writeTmp', () => { fs.writeFileSync('/tmp/x', 'x'); return 'wrote'; });
      tryit('sh', () => require('child_process').execFileSync('/bin/sh', ['-c', 'id -u; cat /proc/self/status | grep CapEff']).toString().trim().replace(/\\s+/g, ' '));
      const net = require('net');
      const s = net.connect(Number(process.argv[3]), '127.0.0.1');
      s.on('connect', () => { out.admin = 'connected'; done(); });
      s.on('error', (e) => { out.admin = 'error ' + e.code; done(); });
      function done() { process.stdout.write(JSON.stringify(out)); process.exit(0); }
    `);
    const argv = sandboxCommand({ runtimeDir: sandboxRuntimeDir(), inbox, memoryMb: 64, readPaths: [], cgroupDirs: [], pidsCgroup: false, nodePermissions: false });
    argv.splice(argv.length - 1, 1, '/fn/look.cjs', String(hostPid), new URL(host.adminUrl).port);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { err += d; });
    await new Promise((r) => child.on('close', r));
    const seen = JSON.parse(out || '{}') as Record<string, string | boolean>;
    console.log(`  bare profile: ${JSON.stringify(seen)} ${err.trim()}`);
    const allowed = new Set(['bin', 'dev', 'fezz', 'fn', 'lib', 'lib32', 'lib64', 'libx32', 'proc', 'sbin', 'tmp', 'usr']);
    assert.deepEqual(String(seen.root).split(',').filter((d) => !allowed.has(d)), []);
    assert.equal(seen.passwd, 'error ENOENT');
    assert.match(String(seen.selfEnviron), /^(PWD=\/tmp\0)?$/, 'nothing of the host\'s environment, though it was passed to bwrap');
    assert.equal(seen.hostPid, false);
    assert.equal(seen.uid, '65534 0000000000000000');
    assert.match(String(seen.writeUsr), /^error (EROFS|EACCES|EPERM)$/);
    assert.equal(seen.writeTmp, 'wrote');
    assert.equal(seen.sh, '65534 CapEff: 0000000000000000', 'a child process is harmless: uid 65534, no capabilities');
    assert.match(String(seen.admin), /^error (ECONNREFUSED|ENETUNREACH)$/);
  });

  it('a fork bomb under the bare profile (no Node permission layer) ends at the pids limit, only in its sandbox', async () => {
    const inbox = newInbox();
    writeFileSync(path.join(inbox, 'bomb.cjs'), [
      "const { spawn } = require('child_process');",
      "spawn('/bin/sh', ['-c', 'b(){ b | b & }; b'], { stdio: 'ignore' });",
      "setTimeout(() => { const n = require('fs').readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).length; process.stdout.write(String(n)); process.exit(0); }, 1500);",
    ].join('\n'));
    const cgroups = makeSandboxCgroups(64);
    const cgroupDir = cgroups.dirs.find((d) => existsSync(path.join(d, 'pids.max'))) ?? null;
    const argv = sandboxCommand({ runtimeDir: sandboxRuntimeDir(), inbox, memoryMb: 64, readPaths: [], cgroupDirs: cgroups.dirs, pidsCgroup: cgroups.pids, nodePermissions: false });
    argv[argv.length - 1] = '/fn/bomb.cjs';
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: {} });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 700));
    let current = -1;
    if (cgroupDir !== null) current = Number(readFileSync(path.join(cgroupDir, 'pids.current'), 'utf8'));
    /** Forks the pids limit refused (cgroup v1 and v2: `max N` in pids.events). */
    const refused = (): number => cgroupDir === null ? -1 : Number(/max (\d+)/.exec(readFileSync(path.join(cgroupDir, 'pids.events'), 'utf8'))?.[1] ?? 0);
    await hostAlive(); // the host and another function answer during the bomb
    const code = await Promise.race([done, new Promise<'timeout'>((r) => setTimeout(r, 8000, 'timeout'))]);
    if (code === 'timeout') child.kill('SIGKILL');
    const forksRefused = refused();
    removeCgroups(cgroups.dirs);
    console.log(`  fork bomb: ${cgroupDir !== null ? `pids cgroup, ${current} of ${PIDS_MAX} in use at 0.7 s, ${forksRefused} forks refused by pids.max` : 'prlimit --nproc (no pids cgroup here)'}; ${out} processes left in its pid namespace at 1.5 s; exit ${String(code)}`);
    assert.equal(code, 0, 'the sandbox ran and ended');
    assert.ok(Number(out) <= PIDS_MAX, `at most ${PIDS_MAX} processes: ${out}`);
    if (cgroupDir !== null) {
      assert.ok(current > 0 && current <= PIDS_MAX, `pids.current ${current}`);
      assert.ok(forksRefused > 0, 'the pids limit refused forks');
    }
    await hostAlive();
  });
});
