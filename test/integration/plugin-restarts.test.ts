// Issue 10 (item 2 and "Plugin restarts"): process and native plugins that crash, cannot
// start, never become ready or refuse to stop. Real hosts, real child processes, a real
// compiled library (gcc); fixtures in test/fixtures/plugin-faults/.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES, get, sleep, startHost, type TestHost } from '../helpers/host.js';

const FAULTS = path.join(FIXTURES, 'plugin-faults');
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// A plugin or host left running (the bugs this file is about) would keep this test process
// alive for good: once every test is done, give it 10 s to end, then fail it.
after(() => {
  setTimeout(() => {
    process.stderr.write('plugin-restarts: still running 10 s after the last test (a plugin process or a host did not stop)\n');
    process.exit(1);
  }, 10_000).unref();
});

/** The stats of function `id` (its only version). */
function statsOf(t: TestHost, id: string) {
  const f = t.host.functions().find((x) => x.id === id);
  assert.ok(f, `${id} is served (problems: ${JSON.stringify(t.host.problems)})`);
  return f.stats;
}

/** Fail with `what` unless `p` settles within `ms` ms. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('a process plugin that crashes on some requests', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FAULTS, 'restarts')); });
  after(async () => { await t.close(); });

  it('one crash fails only its own request: the next succeeds at once, and a second process is kept warm', async () => {
    assert.equal((await get(`${t.url}/rpc/crashy-py/ok`)).status, 200);
    const crash = await get(`${t.url}/rpc/crashy-py/crash`);
    assert.equal(crash.status, 502, crash.text);
    assert.equal(JSON.parse(crash.text).code, 'FEZZ_ERR_PLUGIN_DOWN');
    // No backoff window after a rare crash: the replacement takes the next request.
    const next = await get(`${t.url}/rpc/crashy-py/ok`);
    assert.equal(next.status, 200, next.text);
    let s = statsOf(t, 'crashy-py');
    for (let i = 0; i < 40 && s.instances < 2; i++) { await sleep(50); s = statsOf(t, 'crashy-py'); }
    assert.equal(s.instances, 2, 'max(instances.min, 2) processes warm after a crash');
    assert.equal(s.crashes, 1);
    assert.match(s.lastError ?? '', /exited with code 1/);
    assert.equal(t.logs.filter((l) => l.fn === 'crashy-py@1.0.0' && /exited with code 1/.test(l.msg)).length, 1, 'the crash is logged once');
  });

  it('200 requests at concurrency 8, one in 20 crashing: at least 90% of the others get 200', async (ctx) => {
    const total = 200;
    let next = 0;
    let good = 0;
    let goodOk = 0;
    const statuses: Record<string, number> = {}; // status (and reason) -> count
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < total) {
        const i = next++;
        const crash = i % 20 === 10;
        const res = await get(`${t.url}/rpc/crashy-py/${crash ? 'crash' : 'ok'}`);
        if (crash) continue;
        good++;
        const key = res.status === 200 ? '200' : `${res.status} ${JSON.parse(res.text).message}`;
        statuses[key] = (statuses[key] ?? 0) + 1;
        if (res.status === 200) goodOk++;
      }
    }));
    ctx.diagnostic(`${goodOk} of ${good} good requests got 200 (statuses ${JSON.stringify(statuses)})`);
    assert.ok(goodOk >= 0.9 * good, `${goodOk} of ${good} good requests got 200 (statuses ${JSON.stringify(statuses)})`);
    assert.ok(statsOf(t, 'crashy-py').crashes >= 10);
    const after = await get(`${t.url}/rpc/crashy-py/ok`);
    assert.equal(after.status, 200, after.text);
  });
});

describe('a process plugin that crashes on every request', () => {
  it('is replaced at once for its first 5 crashes, then backs off: no process started per request', async () => {
    const t = await startHost(path.join(FAULTS, 'restarts'));
    try {
      const backoff = (): boolean => t.logs.some((l) => l.fn === 'crashy-py@1.0.0' && /exited with code 1; no new process for \d+ ms/.test(l.msg));
      let sent = 0;
      while (sent < 12 && !backoff()) {
        assert.equal((await get(`${t.url}/rpc/crashy-py/crash`)).status, 502);
        sent++;
      }
      assert.ok(backoff(), `backing off after ${sent} crashes`);
      const replaced = t.logs.filter((l) => l.fn === 'crashy-py@1.0.0' && /exited with code 1; replacing it/.test(l.msg)).length;
      assert.equal(replaced, 5, 'the first 5 crashes within 10 s are replaced at once');
      assert.ok(statsOf(t, 'crashy-py').crashes >= 6);
    } finally {
      await t.close();
    }
  });
});

describe('a plugin process that cannot start', () => {
  it('spawn EMFILE (out of file descriptors): 502, the host lives on, and the plugin works once descriptors are free', async () => {
    const script = path.join(ROOT, 'test', 'helpers', 'plugin-emfile-host.ts');
    const child = spawn('bash', ['-c', 'ulimit -n 512 && exec "$0" --import tsx "$@"', process.execPath, script, path.join(FAULTS, 'restarts'), '/rpc/crashy-py/ok'], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await within(new Promise<number | null>((r) => child.on('close', (c) => r(c))), 20_000, 'the EMFILE host').catch((e: Error) => {
      child.kill('SIGKILL');
      throw e;
    });
    assert.equal(code, 0, `the host process survived (exit ${code}); stderr:\n${err.slice(-3000)}`);
    const seen = JSON.parse(out.trim()) as { exhausted: number; down: { status: number; body: string }; up: { status: number; body: string }; crashes: number };
    assert.ok(seen.exhausted > 0);
    assert.ok([502, 503].includes(seen.down.status), JSON.stringify(seen.down));
    assert.match(seen.down.body, /EMFILE/);
    assert.deepEqual(seen.up, { status: 200, body: 'ok' });
    assert.ok(seen.crashes >= 1, 'the failed start is counted');
  });

  describe('start failures and the start deadline (startTimeoutMs 1000)', () => {
    let dir: string;
    let t: TestHost;
    let gcc = true;
    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fezz-plugin-faults-'));
      fs.cpSync(path.join(FAULTS, 'start'), dir, { recursive: true });
      const fnDir = path.join(dir, 'never-ready-c@1.0.0');
      try {
        execFileSync('gcc', ['-shared', '-fPIC', '-O0', '-o', path.join(fnDir, 'libnever_ready.so'), path.join(fnDir, 'never_ready.c')]);
      } catch {
        gcc = false;
        fs.rmSync(fnDir, { recursive: true });
      }
      t = await startHost(dir, { startTimeoutMs: 1000 });
    });
    after(async () => {
      await t.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }, { timeout: 5000 });

    it('a native plugin that never says ready: 502 once startTimeoutMs passes, and other functions keep serving', async (ctx) => {
      if (!gcc) { ctx.skip('no gcc'); return; }
      const t0 = performance.now();
      const res = await fetch(`${t.url}/rpc/never-ready-c/x`, { signal: AbortSignal.timeout(6000) });
      const ms = performance.now() - t0;
      const body = await res.text();
      assert.equal(res.status, 502, body);
      assert.equal(JSON.parse(body).code, 'FEZZ_ERR_PLUGIN_DOWN');
      assert.match(body, /not ready within 1000 ms/);
      assert.ok(ms >= 900 && ms < 3000, `answered after ${Math.round(ms)} ms`);
      const s = statsOf(t, 'never-ready-c');
      assert.equal(s.crashes, 1);
      assert.match(s.lastError ?? '', /not ready within 1000 ms/);
      assert.equal(s.instances, 0, 'the plugin host was killed');
      const hello = await get(`${t.url}/rpc/hello-js`);
      assert.equal(hello.status, 200);
      assert.equal(hello.text, 'hello');
    });

    it('a new version that never says ready: the reload reports it within startTimeoutMs instead of waiting forever', async (ctx) => {
      if (!gcc) { ctx.skip('no gcc'); return; }
      const v2 = path.join(dir, 'never-ready-c@1.0.1');
      fs.cpSync(path.join(dir, 'never-ready-c@1.0.0'), v2, { recursive: true });
      const manifest = JSON.parse(fs.readFileSync(path.join(v2, 'fezz.json'), 'utf8'));
      fs.writeFileSync(path.join(v2, 'fezz.json'), JSON.stringify({ ...manifest, version: '1.0.1' }));
      const t0 = performance.now();
      const problems = await within(t.host.reload(), 8000, 'reload (runtime.ready())');
      const ms = performance.now() - t0;
      assert.ok(ms < 4000, `reload took ${Math.round(ms)} ms`);
      const p = problems.find((x) => x.file.includes('never-ready-c@1.0.1'));
      assert.ok(p, JSON.stringify(problems));
      assert.equal(p.code, 'FEZZ_ERR_INSTANCE_START_FAILED');
      assert.match(p.message, /not ready within 1000 ms/);
      assert.equal((await get(`${t.url}/rpc/hello-js`)).status, 200);
    });

    it('a process that exits at start: 502 at once, and restarts back off instead of looping', async () => {
      const statuses = new Set<number>();
      const end = performance.now() + 1000;
      while (performance.now() < end) {
        statuses.add((await get(`${t.url}/rpc/exit-at-start/x`)).status);
        await sleep(20);
      }
      assert.deepEqual([...statuses], [502]);
      const s = statsOf(t, 'exit-at-start');
      // Backoff 100, 200, 400, 800 ms: a handful of starts in a second, not one per request.
      assert.ok(s.coldStarts >= 2 && s.coldStarts <= 6, `${s.coldStarts} starts`);
      assert.equal(s.crashes, s.coldStarts, 'every failed start is counted');
      assert.match(s.lastError ?? '', /exited with code 3/);
    });
  });
});

describe('close', () => {
  it('a plugin that ignores SIGTERM and stdin EOF does not hold close() past its grace', async (ctx) => {
    const t = await startHost(path.join(FAULTS, 'close'));
    let s = statsOf(t, 'stubborn-py');
    for (let i = 0; i < 40 && s.instances < 1; i++) { await sleep(50); s = statsOf(t, 'stubborn-py'); }
    assert.equal(s.instances, 1, 'instances.min 1 is warm');
    const pending = get(`${t.url}/rpc/stubborn-py/hang`).catch((err: Error) => err);
    await sleep(200);
    const t0 = performance.now();
    await within(t.host.close(1000), 5000, 'host.close(1000)');
    const ms = performance.now() - t0;
    ctx.diagnostic(`close(1000) took ${Math.round(ms)} ms`);
    assert.ok(ms < 1600, `close(1000) took ${Math.round(ms)} ms`);
    const res = await pending;
    if (!(res instanceof Error)) assert.ok(res.status >= 500, `the unanswered request failed (${res.status})`);
  });
});
