// Sandboxes (an isolate's, a plugin's) are started by a small helper process, the spawner
// (src/runtime/sandbox/spawner.ts), so that the fork behind each start does not stall the host. It must hold nothing secret, and
// losing it must not lose the host: its sandboxes end with it, their requests fail cleanly,
// and the next request starts a new spawner and a new sandbox.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { launchProcess, type LaunchedProcess, type ProcessSpec } from '../../src/runtime/sandbox/launched-process.js';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';
import { childrenOf } from '../helpers/procs.js';

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;


const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

describe('the sandbox spawner', { skip }, () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-sandbox-spawner-'));
    await chmod(dir, 0o755);
    await mkdir(path.join(dir, 'counter@1.0.0'));
    // Warm state: the count says whether the same instance answered.
    await writeFile(path.join(dir, 'counter@1.0.0', 'index.js'), 'let n = 0;\nexport default { fetch: () => new Response(String(++n)) };\n');
    await writeFile(path.join(dir, 'counter@1.0.0', 'fezz.json'), JSON.stringify({ id: 'counter', version: '1.0.0', entry: 'index.js', isolation: 'sandbox', instances: { min: 0, max: 1 } }));
    t = await startHost(dir, { token: 'spawner-test-token-0123456789abcdef' });
  });
  after(async () => { await t?.close(); await rm(dir, { recursive: true, force: true }); });

  it('starts sandboxes as its own children, with nothing of the host\'s environment', async () => {
    assert.equal((await get(`${t.url}/rpc/counter`)).text, '1');
    const spawners = childrenOf(process.pid).filter((c) => c.cmd[1] === '-e');
    assert.equal(spawners.length, 1, JSON.stringify(childrenOf(process.pid)));
    const spawner = spawners[0]!;
    const env = readFileSync(`/proc/${spawner.pid}/environ`, 'utf8').split('\0').filter((v) => v !== '');
    assert.deepEqual(env.map((v) => v.slice(0, v.indexOf('='))).filter((k) => !k.startsWith('NODE_CHANNEL_')).sort(), ['PATH'],
      'the spawner\'s environment is PATH (and Node\'s own IPC variables) alone');
    assert.ok(!readFileSync(`/proc/${spawner.pid}/cmdline`, 'utf8').includes(t.host.token), 'no token on its command line');
    // The sandbox (and the spare beside it) are the spawner's children, not the host's.
    // A child forked a moment ago may not have exec'd its launcher yet (it still shows the
    // spawner's own command line): look again until every child has.
    const isLauncher = (l: { cmd: string[] }): boolean => /^(bwrap|setpriv|sh)$/.test(path.basename(l.cmd[0] ?? ''));
    let launchers = childrenOf(spawner.pid);
    for (let i = 0; i < 40 && !launchers.every(isLauncher); i++) { await sleep(25); launchers = childrenOf(spawner.pid); }
    assert.ok(launchers.length >= 1, 'the spawner started the sandbox');
    assert.ok(launchers.every(isLauncher), JSON.stringify(launchers));
    assert.ok(!childrenOf(process.pid).some((c) => /bwrap|setpriv/.test(c.cmd[0] ?? '')), 'the host forks no sandbox itself');
  });

  it('a killed spawner takes its sandboxes with it; the next request starts a new spawner and a fresh instance', async () => {
    assert.equal((await get(`${t.url}/rpc/counter`)).text, '2', 'the same warm instance');
    const spawner = childrenOf(process.pid).find((c) => c.cmd[1] === '-e')!;
    const launchers = childrenOf(spawner.pid).map((c) => c.pid);
    process.kill(spawner.pid, 'SIGKILL');
    const deadline = Date.now() + 5000;
    while (launchers.some(alive) && Date.now() < deadline) await sleep(50);
    assert.deepEqual(launchers.filter(alive), [], 'every sandbox of the killed spawner ended');
    // The pool saw its instance end and starts another one, through a new spawner.
    let r = await get(`${t.url}/rpc/counter`);
    for (let i = 0; i < 20 && r.status !== 200; i++) { await sleep(100); r = await get(`${t.url}/rpc/counter`); }
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '1', 'a fresh instance');
    const now = childrenOf(process.pid).filter((c) => c.cmd[1] === '-e');
    assert.equal(now.length, 1);
    assert.notEqual(now[0]!.pid, spawner.pid);
    // A neighbour of the host is unaffected and the host logged what happened to the instance.
    assert.ok(t.logs.some((l) => /stopped|exited|crash/i.test(String(l.msg)) && String(l.fn ?? '').startsWith('counter@')), JSON.stringify(t.logs.slice(-5)));
  });
});

// A plugin's process started through the spawner (src/runtime/sandbox/launched-process.ts):
// real processes, no sandbox needed to see the pipes, signals and events behave as a
// ChildProcess's would.
describe('a process launched through the spawner', () => {
  const PIPES = ['pipe', 'pipe', 'pipe', 'ignore'] as const;
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const events = (p: LaunchedProcess): Promise<string[]> => new Promise((resolve) => {
    const seen: string[] = [];
    p.on('spawn', () => seen.push('spawn'));
    p.on('error', (e: Error) => seen.push(`error ${e.message}`));
    p.on('exit', (code, signal) => seen.push(`exit ${code} ${signal}`));
    p.on('close', () => { seen.push('close'); resolve(seen); });
  });
  const text = (s: NodeJS.ReadableStream | null): Promise<string> => new Promise((resolve) => {
    let out = '';
    s!.setEncoding('utf8');
    s!.on('data', (c: string) => { out += c; });
    s!.on('end', () => resolve(out));
  });

  it('has working pipes from the start: stdin written before it started reaches it, stdout and stderr come back', async () => {
    const p = launchProcess(PIPES, { argv: ['/bin/sh', '-c', 'read x; echo "got $x"; echo oops >&2'], env, seccompFile: null });
    const seen = events(p);
    p.stdin!.write('abc\n'); // before the spawner handed over the pipe
    const [out, err] = await Promise.all([text(p.stdout), text(p.stderr)]);
    assert.equal(out, 'got abc\n');
    assert.equal(err, 'oops\n');
    assert.deepEqual(await seen, ['spawn', 'exit 0 null', 'close']);
    assert.ok(p.pid !== undefined && p.pid > 0);
    assert.ok(!childrenOf(process.pid).some((c) => c.pid === p.pid), 'not a child of this process');
  });

  it('takes a signal: SIGTERM ends it as ChildProcess.kill does', async () => {
    const p = launchProcess(PIPES, { argv: ['/bin/sleep', '30'], env, seccompFile: null });
    const seen = events(p);
    await new Promise((r) => p.once('spawn', r));
    assert.equal(p.kill(), true);
    assert.deepEqual(await seen, ['spawn', 'exit null SIGTERM', 'close']);
    assert.equal(p.signalCode, 'SIGTERM');
    assert.equal(p.kill(), false, 'nothing left to signal');
  });

  it('a program that does not exist is an error with no pid and no exit, then close', async () => {
    const p = launchProcess(PIPES, { argv: ['/nonexistent/program'], env, seccompFile: null });
    const seen = await events(p);
    assert.equal(seen.length, 2, JSON.stringify(seen));
    assert.match(seen[0]!, /^error .*ENOENT/);
    assert.equal(seen[1], 'close');
    assert.equal(p.pid, undefined);
  });

  it('a spec still being prepared: a failure is an error; a kill before it arrives means it never starts', async () => {
    const failed = launchProcess(PIPES, Promise.reject(new Error('staging failed')));
    assert.deepEqual(await events(failed), ['error staging failed', 'close']);

    let cleaned = 0;
    let arrive: (s: ProcessSpec) => void = () => undefined;
    const p = launchProcess(PIPES, new Promise<ProcessSpec>((r) => { arrive = r; }));
    const seen = events(p);
    p.kill('SIGKILL');
    arrive({ argv: ['/bin/sleep', '30'], env, seccompFile: null, cleanup: () => { cleaned++; } });
    assert.deepEqual(await seen, ['exit null SIGKILL', 'close']);
    assert.equal(p.pid, undefined, 'never started');
    assert.equal(cleaned, 1);
  });
});
