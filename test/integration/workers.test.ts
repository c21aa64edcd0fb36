// `fezz serve --workers 2` (issue 13, item 1): two host processes share the public port and
// the operator sees one host.
// - requests on new connections are answered by both processes (the per-process counts in
//   /admin/stats), and `fezz list` and /metrics count the requests of both;
// - a deploy through the primary's admin API is served by both processes at once;
// - kill -9 of one process: its in-flight requests end at once (connection closed, no hang),
//   the other keeps serving, and the dead one is started again and serves;
// - SIGTERM to the primary: every process drains and exits, then the primary exits 0.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sleep } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const run = promisify(execFile);

async function writeFn(dir: string, id: string, route: string, code: string): Promise<string> {
  const d = path.join(dir, `${id}@1.0.0`);
  await mkdir(d, { recursive: true });
  await writeFile(path.join(d, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: route }] }));
  await writeFile(path.join(d, 'index.js'), code);
  return d;
}

/** GET on a new connection (so the cluster spreads them); resolves with status and body, or the error. */
function getFresh(url: string, timeoutMs = 10_000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ error: err.message }));
  });
}

interface Stats { functions: Record<string, { requests: number }>; workers: Array<{ index: number; pid: number; requests: number; restarts: number; state: string }> }

describe('fezz serve --workers 2', () => {
  let tmp: string;
  let child: ChildProcess;
  let out = '';
  let url = '';
  let admin = '';
  let tokenFile = '';
  let token = '';

  const api = async <T>(p: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(admin + p, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
    const text = await res.text();
    assert.ok(res.ok, `${p}: ${res.status} ${text}`);
    return (res.headers.get('content-type') ?? '').startsWith('application/json') ? JSON.parse(text) as T : text as T;
  };
  const stats = (): Promise<Stats> => api<Stats>('/admin/stats');

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-workers-'));
    const fns = path.join(tmp, 'functions');
    await writeFn(fns, 'hello', '/hello', 'export default { fetch() { return new Response("hello"); } };');
    await writeFn(fns, 'say', '/say', 'export default { fetch(request) { console.log("said " + new URL(request.url).searchParams.get("n")); return new Response("ok"); } };');
    await writeFn(fns, 'slow', '/slow', 'export default { async fetch() { await new Promise((r) => setTimeout(r, 5000)); return new Response("slow"); } };');
    tokenFile = path.join(tmp, 'token');
    child = spawn(process.execPath, [...CLI, 'serve', '--dir', fns, '--port', '0', '--admin-port', '0', '--workers', '2', '--isolation', 'thread',
      '--token-file', tokenFile, '--drain-delay', '0', '--grace', '2000', '--no-watch', '--cache-dir', path.join(tmp, 'cache')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
    const deadline = Date.now() + 60_000;
    while (!/fezz listening on/.test(out)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`fezz serve --workers 2 did not start:\n${out}`);
      await sleep(100);
    }
    const line = JSON.parse(out.split('\n').find((l) => l.includes('fezz listening on'))!) as { url: string; admin: string };
    url = line.url;
    admin = line.admin;
    const { readFile } = await import('node:fs/promises');
    token = (await readFile(tokenFile, 'utf8')).trim();
  });

  after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      for (const pid of await pidsOf(out)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('answers from both processes; fezz list and /metrics count the requests of both', async () => {
    const s0 = await stats();
    assert.equal(s0.workers.length, 2);
    assert.ok(s0.workers.every((w) => w.state === 'serving'), JSON.stringify(s0.workers));
    assert.notEqual(s0.workers[0]!.pid, s0.workers[1]!.pid);
    const N = 60;
    const got = await Promise.all(Array.from({ length: N }, () => getFresh(`${url}/hello`)));
    assert.ok(got.every((g) => 'status' in g && g.status === 200 && g.body === 'hello'), JSON.stringify(got.filter((g) => !('status' in g) || g.status !== 200)));
    const s1 = await stats();
    assert.ok(s1.workers.every((w) => w.requests > 0), `both processes answered: ${JSON.stringify(s1.workers)}`);
    assert.equal(s1.functions['hello@1.0.0']!.requests, N);
    assert.equal(s1.workers.reduce((n, w) => n + w.requests, 0), N);

    const { stdout } = await run(process.execPath, [...CLI, 'list', '--json', '--host-url', admin, '--token-file', tokenFile], { cwd: ROOT });
    const listed = (JSON.parse(stdout) as { functions: Array<{ key: string; stats: { requests: number } }> }).functions;
    assert.equal(listed.find((f) => f.key === 'hello@1.0.0')?.stats.requests, N);

    const metrics = await api<string>('/metrics');
    assert.match(metrics, new RegExp(`fezz_requests_total\\{fn="hello@1\\.0\\.0",status="200"\\} ${N}\\b`));
    assert.match(metrics, /fezz_request_duration_seconds_count\{fn="hello@1\.0\.0"\} 60\b/);
    assert.match(metrics, /fezz_host_processes\{state="serving"\} 2\b/);
  });

  it('/admin/logs has the lines of the function from both processes, in time order', async () => {
    const got = await Promise.all(Array.from({ length: 20 }, (_, n) => getFresh(`${url}/say?n=${n}`)));
    assert.ok(got.every((g) => 'status' in g && g.status === 200));
    const pidsSeen = new Set<number>();
    let lines: Array<{ msg: string; time: number }> = [];
    for (let i = 0; i < 50 && lines.length < 20; i++) {
      const text = await api<string>('/admin/logs?fn=say&since=100');
      // The function's own lines (fezz logs also lists each request: msg "request").
      lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; time: number }).filter((l) => l.msg.startsWith('said '));
      if (lines.length < 20) await sleep(100);
    }
    assert.deepEqual(lines.map((l) => l.msg).sort(), Array.from({ length: 20 }, (_, n) => `said ${n}`).sort());
    for (let i = 1; i < lines.length; i++) assert.ok(lines[i]!.time >= lines[i - 1]!.time);
    for (const m of out.matchAll(/"pid":(\d+),[^\n]*"msg":"said \d+"/g)) pidsSeen.add(Number(m[1]));
    assert.equal(pidsSeen.size, 2, 'both processes logged some of them');
  });

  it('a deploy through the primary is served by both processes when it answers', async () => {
    const pkg = { files: {
      'fezz.json': Buffer.from(JSON.stringify({ id: 'fresh', version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: '/fresh' }] })).toString('base64'),
      'index.js': Buffer.from('export default { fetch() { return new Response("fresh"); } };').toString('base64'),
    } };
    const res = await api<{ key: string }>('/admin/deploy', { method: 'POST', body: JSON.stringify(pkg), headers: { 'content-type': 'application/json' } });
    assert.equal(res.key, 'fresh@1.0.0');
    const before = await stats();
    const got = await Promise.all(Array.from({ length: 30 }, () => getFresh(`${url}/fresh`)));
    assert.ok(got.every((g) => 'status' in g && g.status === 200 && g.body === 'fresh'), JSON.stringify(got));
    const after = await stats();
    assert.ok(after.workers.every((w, i) => w.requests > before.workers[i]!.requests), `both served the new function: ${JSON.stringify(after.workers)}`);
  });

  it('kill -9 of one process costs only its in-flight requests; it is started again', async () => {
    const s0 = await stats();
    const victim = s0.workers[0]!;
    // Slow requests on new connections: some are in the victim.
    const slow = Array.from({ length: 12 }, () => getFresh(`${url}/slow`, 20_000));
    await sleep(500);
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    // Meanwhile the other process serves. With the primary handing out connections (Node
    // without reusePort) none is lost: one not yet taken by the dead process goes to the other.
    // With SO_REUSEPORT the kernel resets the connections queued on the dead process's socket
    // (unless net.ipv4.tcp_migrate_req=1, docs/scaling.md): those fail at once, never hang.
    const balancing = /"balancing":"reusePort"/.test(out) ? 'reusePort' : 'primary';
    const during = await Promise.all(Array.from({ length: 20 }, async () => { const t = Date.now(); return { r: await getFresh(`${url}/hello`), ms: Date.now() - t }; }));
    for (const d of during) {
      if ('status' in d.r) assert.equal(d.r.status, 200);
      else {
        assert.equal(balancing, 'reusePort', `a connection was lost with the primary balancing: ${JSON.stringify(during)}`);
        assert.ok(d.ms < 2000 && /ECONNRESET|socket hang up/.test(d.r.error), `failed at once, not hung: ${JSON.stringify(d)}`);
      }
    }
    assert.ok(during.some((d) => 'status' in d.r), `the other process served: ${JSON.stringify(during)}`);
    const ended = await Promise.all(slow.map(async (p) => ({ r: await p, ms: Date.now() - killedAt })));
    const failed = ended.filter((e) => 'error' in e.r);
    const ok = ended.filter((e) => 'status' in e.r && e.r.status === 200);
    assert.ok(failed.length >= 1, `some slow requests were in the killed process: ${JSON.stringify(ended)}`);
    assert.equal(failed.length + ok.length, ended.length, JSON.stringify(ended));
    for (const f of failed) assert.ok(f.ms < 2000, `an in-flight request of the killed process ended at once, not after its 5 s: ${JSON.stringify(f)}`);
    // It comes back: a new pid in slot 1, serving, counted as a restart.
    const deadline = Date.now() + 30_000;
    let s: Stats;
    for (;;) {
      s = await stats();
      const w = s.workers[0]!;
      if (w.state === 'serving' && w.pid !== victim.pid) break;
      if (Date.now() > deadline) assert.fail(`process 1 was not started again: ${JSON.stringify(s.workers)}\n${out.slice(-3000)}`);
      await sleep(200);
    }
    assert.equal(s.workers[0]!.restarts, 1);
    assert.match(out, new RegExp(`host process ${victim.pid} exited \\(SIGKILL\\)`));
    const got = await Promise.all(Array.from({ length: 40 }, () => getFresh(`${url}/hello`)));
    assert.ok(got.every((g) => 'status' in g && g.status === 200));
    const s2 = await stats();
    assert.ok(s2.workers[0]!.requests > 0, `the restarted process serves: ${JSON.stringify(s2.workers)}`);
    // The restarted process got the deploy made before it started (it loads the directory).
    assert.ok((await Promise.all(Array.from({ length: 10 }, () => getFresh(`${url}/fresh`)))).every((g) => 'status' in g && g.status === 200));
  });

  it('SIGTERM: every process drains and exits, then the primary exits 0', async () => {
    const pids = (await stats()).workers.map((w) => w.pid);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), `host process ${pid} is gone`);
  });
});

/** Host process pids named in the log (for cleanup after a failure). */
async function pidsOf(log: string): Promise<number[]> {
  const pids = new Set<number>();
  for (const m of log.matchAll(/"pid":(\d+)/g)) pids.add(Number(m[1]));
  return [...pids].filter((p) => p !== process.pid);
}
