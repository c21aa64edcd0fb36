// Issue 11: the sandbox's seccomp filter (src/runtime/sandbox/seccomp.ts) is in force: the
// process reports a filter (Seccomp: 2), and an internet socket cannot even be created, on
// loopback either (EACCES), while unix sockets (the host channel, the egress proxy) work; and
// a function's sandbox cannot create a process (EPERM), with no Node permission layer and no
// pids cgroup in the way, while Node's threads run. The plugin variant allows both.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { probeSandbox, sandboxCommand } from '../../src/runtime/sandbox/bwrap.js';
import { newInbox, sandboxRuntimeDir } from '../../src/runtime/sandbox/sandbox-runtime.js';
import { seccompFilter } from '../../src/runtime/sandbox/seccomp.js';
import { get, startHost, type TestHost } from '../helpers/host.js';

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

const PROBE = `import { createServer } from 'node:net';
export default { async fetch() {
  const status = await (await import('node:fs')).promises.readFile('/proc/self/status', 'utf8');
  const seccomp = /^Seccomp:\\s*(\\d)/m.exec(status)?.[1] ?? '?';
  const listen = await new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err) => resolve(err.code));
    s.listen(0, '127.0.0.1', () => { s.close(); resolve('listening'); });
  });
  return Response.json({ seccomp, listen });
} };
`;

describe('the sandbox seccomp filter', { skip }, () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-seccomp-'));
    await chmod(dir, 0o755); // granted files are bound by bwrap running as the sandbox's uid
    await mkdir(path.join(dir, 'probe@1.0.0'));
    await writeFile(path.join(dir, 'probe@1.0.0', 'index.js'), PROBE);
    await writeFile(path.join(dir, 'probe@1.0.0', 'fezz.json'), JSON.stringify({ id: 'probe', version: '1.0.0', entry: 'index.js', isolation: 'sandbox', permissions: { outbound: ['127.0.0.1:1'], files: ['none'] } }));
    t = await startHost(dir);
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  it('is built here (python3-seccomp), is in force, and refuses internet sockets', async () => {
    const filter = seccompFilter(os.tmpdir());
    assert.notEqual(filter.file, null, filter.reason);
    const r = await get(`${t.url}/rpc/probe`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(JSON.parse(r.text), { seccomp: '2', listen: 'EACCES' });
  });

  /** Run `script` (CommonJS) under the bare function profile with `variant`'s filter and no cgroups; its stdout. */
  async function bare(script: string, inet: boolean): Promise<string> {
    const inbox = newInbox();
    writeFileSync(path.join(inbox, 'probe.cjs'), script);
    const filter = seccompFilter(path.dirname(sandboxRuntimeDir()), { inet });
    assert.notEqual(filter.file, null, filter.reason);
    const fd = openSync(filter.file!, 'r');
    const argv = sandboxCommand({ runtimeDir: sandboxRuntimeDir(), inbox, memoryMb: 64, readPaths: [], cgroupDirs: [], pidsCgroup: false, nodePermissions: false, seccompFd: 3 });
    argv[argv.length - 1] = '/fn/probe.cjs';
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', fd], env: {} });
    closeSync(fd);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => { out += d; });
    child.stderr!.on('data', (d: Buffer) => { err += d; });
    await new Promise((r) => child.on('close', r));
    assert.ok(out !== '', `no output; stderr: ${err}`);
    return out;
  }

  const FORK = `
    const { execFileSync } = require('child_process');
    const { Worker } = require('worker_threads');
    let sh;
    try { sh = execFileSync('/bin/sh', ['-c', 'echo forked']).toString().trim(); } catch (e) { sh = 'error ' + e.code; }
    const w = new Worker('require("worker_threads").parentPort.postMessage("thread ok")', { eval: true });
    w.once('message', (m) => { process.stdout.write(JSON.stringify({ sh, worker: m })); process.exit(0); });
  `;

  it('a function sandbox cannot create processes (no pids cgroup needed), threads still run', async () => {
    assert.deepEqual(JSON.parse(await bare(FORK, false)), { sh: 'error EPERM', worker: 'thread ok' });
  });

  it('a plugin sandbox may (its pids cgroup bounds it)', async () => {
    assert.deepEqual(JSON.parse(await bare(FORK, true)), { sh: 'forked', worker: 'thread ok' });
  });
});
