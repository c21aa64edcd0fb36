// Cron triggers (issue 14, item 2): `triggers.crons` in a manifest runs the module's
// `scheduled(controller, env, ctx)` on time, through a real host on real sockets:
// - a `*/1 * * * * *` cron fires every second, each run starting within 300 ms of its tick
//   (controller.scheduledTime against the time the function saw), in the thread tier (isolate
//   and inline) and in the sandbox tier (bubblewrap);
// - a run longer than the period makes the next ticks skip (overlap false), logged and counted;
// - a throw, a timeout and a missing handler are logged and counted; /metrics shows outcomes;
// - `fezz trigger` (the real CLI) runs a function on demand;
// - a Python plugin gets scheduled events through the ABI, and an HTTP client cannot forge one;
// - a reload moves the crons to the new latest version, and a function without crons stops;
// - `fezz serve --workers 2` fires each tick in one process only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES, sleep, startHost, type TestHost } from '../helpers/host.js';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** A run starts this close to its tick, at most, in ms (tolerant of a loaded 2-core machine). */
const ON_TIME_MS = 300;

interface Run { cron: string; scheduledTime: number; at: number; type?: string; who?: string; requestId?: string }

/** The fixtures in a fresh functions directory, with the tree's Python SDK beside the plugin. */
async function functionsDir(only?: string[]): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-cron-'));
  await cp(path.join(FIXTURES, 'cron'), dir, { recursive: true, filter: (src) => only === undefined || src === path.join(FIXTURES, 'cron') || only.some((d) => src.includes(`${path.sep}${d}`)) });
  if (only === undefined || only.includes('py-cron@1.0.0')) {
    await copyFile(path.join(ROOT, 'sdk', 'python', 'fezz.py'), path.join(dir, 'py-cron@1.0.0', 'fezz.py'));
    await chmod(path.join(dir, 'py-cron@1.0.0', 'main.py'), 0o755);
  }
  return dir;
}

/** The real CLI, from sources. */
function fezz(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c; });
    child.stderr.on('data', (c: Buffer) => { stderr += c; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function runsOf(url: string): Promise<Run[]> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return await res.json() as Run[];
}

/** Wait until `url` lists at least `n` runs (or `ms` passed); returns them. */
async function waitForRuns(url: string, n: number, ms = 6000): Promise<Run[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const runs = await runsOf(url);
    if (runs.length >= n || Date.now() > deadline) return runs;
    await sleep(100);
  }
}

/** At least two runs on consecutive ticks, each on time (see ON_TIME_MS), none early. */
function assertOnTime(runs: Run[], cron: string): void {
  assert.ok(runs.length >= 2, `at least two runs: ${JSON.stringify(runs)}`);
  for (const r of runs) {
    assert.equal(r.cron, cron);
    assert.equal(r.scheduledTime % 1000, 0, `a tick is on a second boundary: ${r.scheduledTime}`);
    assert.ok(r.at >= r.scheduledTime, `never early: ran at ${r.at} for ${r.scheduledTime}`);
    assert.ok(r.at - r.scheduledTime < 1000, `within its second: ${r.at - r.scheduledTime} ms late`);
  }
  const onTime = runs.filter((r) => r.at - r.scheduledTime < ON_TIME_MS);
  assert.ok(onTime.length >= 2, `two runs within ${ON_TIME_MS} ms of their tick: ${JSON.stringify(runs.map((r) => r.at - r.scheduledTime))}`);
  for (let i = 1; i < runs.length; i++) assert.equal(runs[i]!.scheduledTime - runs[i - 1]!.scheduledTime, 1000, 'consecutive ticks, none twice, none missed');
}

async function metric(t: TestHost, fn: string, outcome: string): Promise<number> {
  const res = await fetch(`${t.host.adminUrl}/metrics`, { headers: { authorization: `Bearer ${t.host.token}` } });
  const text = await res.text();
  const m = new RegExp(`^fezz_scheduled_runs_total\\{fn="${fn.replace(/\./g, '\\.')}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe('cron triggers, thread tier', () => {
  let t: TestHost;
  let dir: string;
  let env: Record<string, string>;
  before(async () => {
    dir = await functionsDir();
    t = await startHost(dir, { isolation: 'thread' });
    env = { FEZZ_HOST: t.host.adminUrl, FEZZ_TOKEN: t.host.token };
    assert.deepEqual(t.host.problems, []);
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a */1-second cron fires on time, every second (isolate, and inline with a named export)', async () => {
    const runs = await waitForRuns(`${t.url}/rpc/tick`, 3);
    assertOnTime(runs, '*/1 * * * * *');
    for (const r of runs) {
      assert.equal(r.type, 'scheduled');
      assert.equal(r.who, 'tick', 'env is the manifest env');
      assert.match(r.requestId ?? '', /^\d+$/, 'ctx.requestId');
    }
    assertOnTime(await waitForRuns(`${t.url}/rpc/tick-inline`, 2), '*/1 * * * * *');
    // Each run is logged with the function, so `fezz logs` shows it, with its console lines.
    const res = await fetch(`${t.host.adminUrl}/admin/logs?fn=tick&since=200`, { headers: { authorization: `Bearer ${t.host.token}` } });
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const ok = lines.filter((l) => l.msg === 'scheduled run ok');
    assert.ok(ok.length >= 2, 'scheduled runs are in the function\'s logs');
    assert.equal(ok[0]!.fn, 'tick@1.0.0');
    assert.equal(ok[0]!.cron, '*/1 * * * * *');
    assert.equal(typeof ok[0]!.ms, 'number');
    assert.ok(lines.some((l) => l.stream === 'console' && String(l.msg).startsWith('tick at ') && l.requestId === ok[0]!.requestId), 'console lines carry the run\'s request id');
  });

  it('a scheduled-only module (no fetch) loads and runs on its crons; an HTTP request to it is 500 FEZZ_ERR_HANDLER_MISSING (isolate, inline)', async () => {
    assert.deepEqual(t.host.problems, [], 'no load problem for a module without fetch when it has crons');
    for (const fn of ['only-cron', 'only-cron-inline']) {
      const deadline = Date.now() + 6000;
      while (await metric(t, `${fn}@1.0.0`, 'ok') < 2 && Date.now() < deadline) await sleep(100);
      assert.ok(await metric(t, `${fn}@1.0.0`, 'ok') >= 2, `${fn} ran on its crons`);
      const res = await fetch(`${t.host.adminUrl}/admin/logs?fn=${fn}&since=200`, { headers: { authorization: `Bearer ${t.host.token}` } });
      const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(lines.some((l) => l.msg === 'scheduled run ok'), `${fn}'s runs are in its logs`);
      // An isolate's console is captured per function; an inline function's is the host's own (docs/operating.md).
      if (fn === 'only-cron') assert.ok(lines.some((l) => l.stream === 'console' && String(l.msg).startsWith(`${fn} ran for `)), `${fn}'s console line is in its logs`);
      const http = await fetch(`${t.url}/rpc/${fn}`);
      assert.equal(http.status, 500);
      const body = await http.json() as { code: string; message: string };
      assert.equal(body.code, 'FEZZ_ERR_HANDLER_MISSING');
      assert.match(body.message, /has no handler fetch: .*only has a scheduled handler/);
      // The instance serves on: the next run still happens.
      const before = await metric(t, `${fn}@1.0.0`, 'ok');
      const until = Date.now() + 3000;
      while (await metric(t, `${fn}@1.0.0`, 'ok') <= before && Date.now() < until) await sleep(100);
      assert.ok(await metric(t, `${fn}@1.0.0`, 'ok') > before, `${fn} runs on after the refused request`);
    }
  });

  it('crons are read in the manifest\'s time zone (default UTC)', () => {
    const scheduled = (fn: string): { timezone: string; next: string[] } => {
      const line = t.logs.find((l) => l.fn === fn && l.msg === 'cron triggers scheduled');
      assert.ok(line, `${fn}: crons scheduled`);
      return line as unknown as { timezone: string; next: string[] };
    };
    const nightly = scheduled('nightly@1.0.0');
    assert.equal(nightly.timezone, 'Europe/Berlin');
    const next = new Date(nightly.next[0]!);
    const berlin = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(next);
    assert.equal(berlin, '03:00', `next tick ${next.toISOString()} is 03:00 in Berlin`);
    assert.ok(next.getTime() > Date.now() && next.getTime() <= Date.now() + 24 * 3600_000 + 3600_000);
    assert.equal(scheduled('tick@1.0.0').timezone, 'UTC');
  });

  it('a bad cron expression is a load problem naming the field', async () => {
    const bad = path.join(dir, 'badcron@1.0.0');
    await cp(path.join(dir, 'plain@1.0.0'), bad, { recursive: true });
    await writeFile(path.join(bad, 'fezz.json'), JSON.stringify({ id: 'badcron', version: '1.0.0', entry: 'index.js', triggers: { crons: ['*/5 * * * *', '61 * * * *'] } }));
    try {
      const problems = await t.host.reload();
      const p = problems.find((x) => x.file.includes('badcron@1.0.0'));
      assert.ok(p, JSON.stringify(problems));
      assert.equal(p.code, 'FEZZ_ERR_MANIFEST_INVALID');
      assert.match(p.message, /field "triggers\.crons\.1": "61 \* \* \* \*" is not a valid cron expression: Invalid value for minute: 61/);
      assert.ok(!t.host.functions().some((f) => f.id === 'badcron'));
    } finally {
      await rm(bad, { recursive: true, force: true });
      await t.host.reload();
    }
  });

  it('a run longer than the period: the ticks meanwhile are skipped, logged and counted', async () => {
    const deadline = Date.now() + 6000;
    while (await metric(t, 'slow@1.0.0', 'skipped-overlap') < 2 && Date.now() < deadline) await sleep(100);
    assert.ok(await metric(t, 'slow@1.0.0', 'skipped-overlap') >= 2);
    const state = await (await fetch(`${t.url}/rpc/slow`)).json() as { started: number; maxRunning: number };
    assert.equal(state.maxRunning, 1, 'never two runs at once');
    assert.ok(t.logs.some((l) => l.fn === 'slow@1.0.0' && l.outcome === 'skipped-overlap' && l.level === 40));
  });

  it('a throw is logged and counted as an error', async () => {
    const deadline = Date.now() + 4000;
    while (await metric(t, 'boom@1.0.0', 'error') < 1 && Date.now() < deadline) await sleep(100);
    assert.ok(await metric(t, 'boom@1.0.0', 'error') >= 1);
    const line = t.logs.find((l) => l.fn === 'boom@1.0.0' && l.outcome === 'error');
    assert.ok(line, 'the failed run is logged');
    assert.equal(line.level, 50);
    assert.equal(line.code, 'FEZZ_ERR_SCHEDULED_FAILED');
    assert.match(line.msg, /scheduled run failed: Error: boom for \*\/1 \* \* \* \* \*/);
    assert.match(String((line.err as { stack?: string }).stack), /at Object\.scheduled/);
  });

  it('fezz trigger runs a function now: ok, failed (exit 1), no handler (409); /metrics counts them', async () => {
    const before = await metric(t, 'tick@1.0.0', 'ok');
    const r = await fezz(['trigger', 'tick', '0 3 * * *'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ran tick@1\.0\.0 \(cron "0 3 \* \* \*"\): ok in [\d.]+ ms, request \d+\n$/);
    const runs = await runsOf(`${t.url}/rpc/tick`);
    const manual = runs.find((x) => x.cron === '0 3 * * *');
    assert.ok(manual, 'the function ran with controller.cron from the command line');
    assert.ok(Math.abs(manual.at - manual.scheduledTime) < 1000, 'scheduledTime is now');
    assert.ok(await metric(t, 'tick@1.0.0', 'ok') >= before + 1);

    const json = await fezz(['trigger', 'tick@1.0.0', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const run = JSON.parse(json.stdout) as { fn: string; cron: string; outcome: string; manual: boolean };
    assert.deepEqual([run.fn, run.cron, run.outcome, run.manual], ['tick@1.0.0', '*/1 * * * * *', 'ok', true], 'the default cron is the manifest\'s first');

    const boom = await fezz(['trigger', 'boom'], env);
    assert.equal(boom.code, 1);
    assert.match(boom.stderr, /^fezz: FEZZ_ERR_SCHEDULED_FAILED: Scheduled run of boom@1\.0\.0 \(cron "\*\/1 \* \* \* \* \*"\) failed: Error: boom/);
    assert.ok(t.logs.some((l) => l.fn === 'boom@1.0.0' && l.manual === true && l.outcome === 'error'), 'a manual run is logged as such');

    const plain = await fezz(['trigger', 'plain'], env);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /^fezz: FEZZ_ERR_SCHEDULED_MISSING: Function plain@1\.0\.0 has no scheduled handler/);
    assert.ok(await metric(t, 'plain@1.0.0', 'error') >= 1);
  });

  it('the admin endpoint: 504 for a timeout, 404 unknown function, 400 bad cron', async () => {
    const call = (p: string): Promise<Response> => fetch(`${t.host.adminUrl}${p}`, { method: 'POST', headers: { authorization: `Bearer ${t.host.token}` } });
    const hang = await call('/admin/functions/hang/scheduled');
    assert.equal(hang.status, 504);
    const body = await hang.json() as { code: string; run: { outcome: string; ms: number } };
    assert.equal(body.code, 'FEZZ_ERR_HANDLER_TIMEOUT');
    assert.equal(body.run.outcome, 'timeout');
    assert.ok(body.run.ms >= 250 && body.run.ms < 3000, `bounded by limits.timeoutMs: ${body.run.ms} ms`);
    assert.equal(await metric(t, 'hang@1.0.0', 'timeout'), 1);

    const unknown = await call('/admin/functions/nope/scheduled');
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json() as { code: string }).code, 'FEZZ_ERR_FUNCTION_NOT_FOUND');
    const bad = await call(`/admin/functions/tick/scheduled?cron=${encodeURIComponent('61 * * * *')}`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json() as { message: string }).message, /not a valid cron expression.*minute/);
    const noAuth = await fetch(`${t.host.adminUrl}/admin/functions/tick/scheduled`, { method: 'POST' });
    assert.equal(noAuth.status, 401);
  });

  it('a Python plugin receives scheduled events; an HTTP client cannot forge one', async () => {
    const deadline = Date.now() + 6000;
    let got: { events: Array<{ cron: string; scheduledTime: number }> } = { events: [] };
    while (got.events.length < 2 && Date.now() < deadline) {
      got = await (await fetch(`${t.url}/rpc/py-cron/state`)).json() as typeof got;
      if (got.events.length < 2) await sleep(150);
    }
    assert.ok(got.events.length >= 2, JSON.stringify(got));
    for (const e of got.events) {
      assert.equal(e.cron, '*/1 * * * * *');
      assert.equal(e.scheduledTime % 1000, 0);
    }
    assert.ok(await metric(t, 'py-cron@1.0.0', 'ok') >= 2);
    // The same path and headers from a client: the host strips the headers, so it is an ordinary request.
    const n = got.events.length;
    const forged = await fetch(`${t.url}/rpc/py-cron/__fezz/scheduled`, { method: 'POST', headers: { 'fezz-cron': 'forged', 'Fezz-Scheduled-Time': '1' } });
    assert.equal(forged.status, 200);
    const seen = await forged.json() as { events: Array<{ cron: string }>; path: string; cron: string | null };
    assert.equal(seen.path, '/__fezz/scheduled');
    assert.equal(seen.cron, null, 'the plugin never sees fezz-cron on an HTTP request');
    assert.ok(seen.events.length >= n && seen.events.every((e) => e.cron !== 'forged'));
  });

  it('a reload moves the crons to the new latest version; a function without crons stops', async () => {
    await cp(path.join(dir, 'tick@1.0.0'), path.join(dir, 'tick@1.1.0'), { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(dir, 'tick@1.1.0', 'fezz.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(dir, 'tick@1.1.0', 'fezz.json'), JSON.stringify({ ...manifest, version: '1.1.0', env: { WHO: 'tick2' } }));
    const inline = JSON.parse(await readFile(path.join(dir, 'tick-inline@1.0.0', 'fezz.json'), 'utf8')) as Record<string, unknown>;
    delete inline.triggers;
    await writeFile(path.join(dir, 'tick-inline@1.0.0', 'fezz.json'), JSON.stringify(inline));
    assert.deepEqual(await t.host.reload(), []);
    const reloadedAt = Date.now();
    const fresh = await waitForRuns(`${t.url}/rpc/tick@1.1.0`, 2);
    assertOnTime(fresh, '*/1 * * * * *');
    assert.ok(fresh.every((r) => r.who === 'tick2'));
    const old = await runsOf(`${t.url}/rpc/tick@1.0.0`);
    assert.ok(old.every((r) => r.scheduledTime <= reloadedAt + 1000 || r.cron !== '*/1 * * * * *'), 'the old version fires no more');
    // (An inline module shares the host's realm: its unchanged bundle is the same module, runs list included.)
    const n = (await runsOf(`${t.url}/rpc/tick-inline`)).length;
    await sleep(1300);
    assert.equal((await runsOf(`${t.url}/rpc/tick-inline`)).length, n, 'the inline function has no crons now: no run since');
    assert.ok(t.logs.some((l) => l.fn === 'tick-inline@1.0.0' && l.msg.startsWith('cron triggers stopped')));
  });
});

const can = await probeSandbox();

describe('cron triggers, sandbox tier', () => {
  let t: TestHost;
  let dir: string;
  before(async () => {
    if (!can.ok) return;
    dir = await functionsDir(['tick@1.0.0', 'plain@1.0.0']);
    t = await startHost(dir, { isolation: 'sandbox' });
    assert.deepEqual(t.host.problems, []);
  });
  after(async () => {
    if (!can.ok) return;
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a */1-second cron fires on time in a bubblewrap sandbox, and runs on demand', { skip: can.ok ? false : `no sandbox here: ${can.reason}` }, async () => {
    assertOnTime(await waitForRuns(`${t.url}/rpc/tick`, 2), '*/1 * * * * *');
    const run = await t.host.runScheduled('tick', '@daily');
    assert.equal(run.outcome, 'ok');
    assert.ok((await runsOf(`${t.url}/rpc/tick`)).some((r) => r.cron === '@daily'));
    const missing = await t.host.runScheduled('plain');
    assert.equal(missing.outcome, 'error');
    assert.equal(missing.error?.code, 'FEZZ_ERR_SCHEDULED_MISSING');
  });
});

describe('cron triggers under fezz serve --workers 2', () => {
  let tmp: string;
  let child: ChildProcess;
  let out = '';
  let admin = '';
  let token = '';
  before(async () => {
    tmp = await functionsDir(['tick@1.0.0']);
    const tokenFile = path.join(tmp, '.token');
    child = spawn(process.execPath, [...CLI, 'serve', '--dir', tmp, '--port', '0', '--admin-port', '0', '--workers', '2', '--isolation', 'thread',
      '--token-file', tokenFile, '--drain-delay', '0', '--grace', '2000', '--no-watch', '--cache-dir', path.join(os.tmpdir(), 'fezz-test-cache')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
    const deadline = Date.now() + 60_000;
    while (!/fezz listening on/.test(out)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`fezz serve --workers 2 did not start:\n${out}`);
      await sleep(100);
    }
    admin = (JSON.parse(out.split('\n').find((l) => l.includes('fezz listening on'))!) as { admin: string }).admin;
    token = (await readFile(tokenFile, 'utf8')).trim();
  });
  after(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('each tick runs in one host process only; fezz trigger goes through the primary', async () => {
    const runs = (): Array<{ pid: number; scheduledTime: number; manual?: boolean }> => out.split('\n')
      .filter((l) => l.includes('"scheduled run ok"'))
      .flatMap((l) => { try { return [JSON.parse(l) as { pid: number; scheduledTime: number; manual?: boolean }]; } catch { return []; } });
    const deadline = Date.now() + 8000;
    while (runs().length < 3 && Date.now() < deadline) await sleep(100);
    const ticks = runs().filter((r) => r.manual !== true);
    assert.ok(ticks.length >= 3, out.slice(-2000));
    assert.equal(new Set(ticks.map((r) => r.scheduledTime)).size, ticks.length, 'no tick ran twice');
    assert.equal(new Set(ticks.map((r) => r.pid)).size, 1, 'one process fires the crons');
    const r = await fezz(['trigger', 'tick', '--json'], { FEZZ_HOST: admin, FEZZ_TOKEN: token });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { outcome: string }).outcome, 'ok');
    const metrics = await (await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    const m = /^fezz_scheduled_runs_total\{fn="tick@1\.0\.0",outcome="ok"\} (\d+)$/m.exec(metrics);
    assert.ok(m !== null && Number(m[1]) >= ticks.length + 1, 'the primary\'s /metrics sums the processes\' runs');
  });
});
