// Errors that point at the user's code (issue 14, item 4), through real hosts on real sockets:
// - a TypeScript function (a helper in lib/, types esbuild strips) throws at known places: the
//   logged stack, console lines, uncaught errors and the --dev 500 body name `index.ts:line:col`
//   and `lib/explode.ts:line:col` (found from the `// @marker` comments in the fixture), never
//   the bundle or the cache; without --dev the body has no stack;
// - the thread tier, the inline runtime (a file outside its directory shows as `../x/index.ts`),
//   the sandbox tier (when bubblewrap works here), and a function uploaded by `fezz deploy`;
// - the maps themselves: sources relative to the function directory, no sourcesContent, no
//   absolute path of the machine that built them;
// - service-worker syntax (`addEventListener('fetch', (event) => event.respondWith(...))`)
//   answers in every tier, with its env as globals, waitUntil, scheduled listeners; a module
//   with neither form is a load problem that names both.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FIXTURES, sleep, startHost, type TestHost } from '../helpers/host.js';
import { bundleEntry } from '../../src/build/bundle.js';
import { packageForDeploy, readFunctionSource } from '../../src/build/deploy-bundle.js';
import { FEZZ_MAP_COMMENT, readInlineMap, STANDARD_MAP_COMMENT, StackMapper } from '../../src/build/source-map.js';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FNS = path.join(FIXTURES, 'source-maps', 'functions');
const CACHE = path.join(os.tmpdir(), 'fezz-test-cache');

/**
 * `file:line:col` of the place marked `// @<marker>` in fixture `rel` (under FNS): the line, and
 * the column where `token` starts on it (1-based, as in stacks).
 */
function at(rel: string, marker: string, token: string): string {
  const lines = readFileSync(path.join(FNS, rel), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.endsWith(`// @${marker}`));
  assert.notEqual(i, -1, `marker ${marker} in ${rel}`);
  const col = lines[i]!.indexOf(token);
  assert.notEqual(col, -1, `${token} on the ${marker} line`);
  return `${rel.slice(rel.indexOf('/') + 1)}:${i + 1}:${col + 1}`;
}

const THROW_INDEX = at('maps@1.0.0/index.ts', 'throw-index', 'new Error(');
const THROW_HELPER = at('maps@1.0.0/lib/explode.ts', 'throw-helper', 'new RangeError(');
const CALL_HELPER = at('maps@1.0.0/index.ts', 'call-helper', 'explode(');
const THROW_ASYNC = at('maps@1.0.0/index.ts', 'throw-async', 'new TypeError(');
const CONSOLE = at('maps@1.0.0/index.ts', 'console', 'new Error(');
const UNCAUGHT = at('maps@1.0.0/index.ts', 'uncaught', 'new RangeError(');
const THROW_SCHEDULED = at('maps@1.0.0/index.ts', 'throw-scheduled', 'new Error(');
const SW_THROW = at('sw@1.0.0/index.ts', 'sw-throw', 'new Error(');
const THROW_TOPLEVEL = at('toplevel@1.0.0/index.ts', 'throw-toplevel', 'new Error(');

/** The `at ...` lines of a stack. */
const frames = (stack: string): string[] => stack.split('\n').filter((l) => /^\s+at /.test(l)).map((l) => l.trim());

/** The stack has no trace of the bundle or the cache: no `.mjs` frame before fezz's own, no cache path. */
function assertNoBundle(stack: string): void {
  assert.ok(!stack.includes(CACHE), `the cache path is not shown:\n${stack}`);
  const user = frames(stack).filter((f) => !/worker-entry|sandbox-entry|inline-runtime|node:/.test(f));
  for (const f of user) assert.doesNotMatch(f, /\.mjs:\d+/, `a frame names a bundle:\n${stack}`);
}

interface ErrorBody { code: string; message: string }

async function fail(t: TestHost, p: string): Promise<{ body: ErrorBody; requestId: string }> {
  const res = await fetch(`${t.url}${p}`);
  assert.equal(res.status, 500, p);
  return { body: await res.json() as ErrorBody, requestId: res.headers.get('x-request-id')! };
}

/** The log line `msg` (a prefix) for request `requestId` (or any, when null), waited for up to 3 s. */
async function logLine(t: TestHost, msg: string, requestId: string | null, fn?: string): Promise<TestHost['logs'][number]> {
  for (let i = 0; i < 300; i++) {
    const line = t.logs.find((l) => l.msg.startsWith(msg) && (requestId === null || l.requestId === requestId) && (fn === undefined || l.fn === fn));
    if (line !== undefined) return line;
    await sleep(10);
  }
  assert.fail(`no log line "${msg}" for ${requestId}: ${JSON.stringify(t.logs.slice(-5))}`);
}

const loggedStack = (line: Record<string, unknown>): string => String((line.err as { stack?: unknown } | undefined)?.stack ?? '');

describe('source maps: the bundles', () => {
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-srcmap-')); });
  after(async () => { await rm(tmp, { recursive: true, force: true }); });

  it('a host bundle carries its map inline, fezz-marked, sources relative to the function, no sourcesContent', async () => {
    const b = await bundleEntry(path.join(FNS, 'maps@1.0.0', 'index.ts'), path.join(tmp, 'cache'), 'maps');
    const text = await readFile(b.file, 'utf8');
    assert.ok(text.includes(FEZZ_MAP_COMMENT), 'the map is inline');
    assert.ok(!text.includes('//# sourceMappingURL='), 'Node is not told about it (it would map against the cache directory)');
    const map = readInlineMap(text)!;
    assert.deepEqual([...map.sources].sort(), ['index.ts', 'lib/explode.ts']);
    assert.equal((map as { sourcesContent?: unknown }).sourcesContent, undefined);
    assert.ok(!JSON.stringify(map).includes(FNS), 'no absolute path in the map');
  });

  it('paths are relative to the directory of fezz.json (an entry in src/), and outside files keep their ../', async () => {
    const fn = path.join(tmp, 'nested@1.0.0');
    await mkdir(path.join(fn, 'src'), { recursive: true });
    await writeFile(path.join(fn, 'fezz.json'), JSON.stringify({ id: 'nested', version: '1.0.0', entry: 'src/index.ts' }));
    await writeFile(path.join(fn, 'src', 'index.ts'), 'import { x } from "../../shared";\nexport default { fetch: (): Response => new Response(String(x)) };\n');
    await writeFile(path.join(tmp, 'shared.ts'), 'export const x: number = 1;\n');
    const b = await bundleEntry(path.join(fn, 'src', 'index.ts'), path.join(tmp, 'cache'), 'nested');
    assert.deepEqual([...readInlineMap(await readFile(b.file, 'utf8'))!.sources].sort(), ['../shared.ts', 'src/index.ts']);
  });

  it('a deploy package carries a standard inline map (esbuild follows it when the host bundles again); nothing of the source machine', async () => {
    const plan = await packageForDeploy(await readFunctionSource(path.join(FNS, 'maps@1.0.0')));
    const code = Buffer.from(plan.body.files['index.mjs']!, 'base64').toString('utf8');
    assert.ok(code.includes(STANDARD_MAP_COMMENT));
    const map = readInlineMap(code)!;
    assert.deepEqual([...map.sources].sort(), ['index.ts', 'lib/explode.ts']);
    assert.equal((map as { sourcesContent?: unknown }).sourcesContent, undefined);
    assert.ok(!code.includes(FNS) && !code.includes(ROOT), 'no absolute path of the building machine');
  });

  it('a deploy package of a function importing .wasm and .bin assets names no absolute path either', async () => {
    const dir = path.join(ROOT, 'test', 'fixtures', 'platform', 'platform@1.0.0');
    const plan = await packageForDeploy(await readFunctionSource(dir));
    const code = Buffer.from(plan.body.files['index.mjs']!, 'base64').toString('utf8');
    assert.match(code, /\/\/ fezz-module-rule:assets\/[^\n]+\.wasm/, 'the generated module is named by its path relative to the function');
    assert.ok(!code.includes(ROOT), 'no absolute path of the building machine');
    const map = readInlineMap(code)!;
    assert.ok(map.sources.every((s) => !path.isAbsolute(s) && !s.includes(':')), JSON.stringify(map.sources));
  });

  it('a bundle without a map, or text that names no bundle, is left as it is', async () => {
    const file = path.join(tmp, 'plain.mjs');
    await writeFile(file, 'export default 1;\n');
    const url = pathToFileURL(file).href;
    const stack = `Error: x\n    at f (${url}:1:1)`;
    assert.equal(new StackMapper(url).map(stack), stack);
    assert.equal(new StackMapper(pathToFileURL(path.join(tmp, 'gone.mjs')).href).map('Error: y\n    at g (node:internal/x:1:1)'), 'Error: y\n    at g (node:internal/x:1:1)');
  });
});

describe('source maps: thread tier and inline runtime, --dev', () => {
  let t: TestHost;
  before(async () => { t = await startHost(FNS, { dev: true }); });
  after(async () => { await t.close(); });

  it('a throw in index.ts: the logged stack and the 500 body name index.ts:line:col', async () => {
    const { body, requestId } = await fail(t, '/rpc/maps/index');
    assert.equal(body.code, 'FEZZ_ERR_HANDLER_THREW');
    assert.equal(frames(body.message)[0], `at Object.fetch (${THROW_INDEX})`);
    assertNoBundle(body.message);
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.equal(frames(stack)[0], `at Object.fetch (${THROW_INDEX})`);
    assertNoBundle(stack);
  });

  it('a throw in lib/explode.ts, called from index.ts: both frames mapped', async () => {
    const { body, requestId } = await fail(t, '/rpc/maps/helper');
    assert.deepEqual(frames(body.message).slice(0, 2), [`at explode (${THROW_HELPER})`, `at Object.fetch (${CALL_HELPER})`]);
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.deepEqual(frames(stack).slice(0, 2), [`at explode (${THROW_HELPER})`, `at Object.fetch (${CALL_HELPER})`]);
    assertNoBundle(stack);
  });

  it('a rejection after an await, a console.error(err) line and an uncaught throw in a timer', async () => {
    const { body } = await fail(t, '/rpc/maps/async');
    assert.equal(frames(body.message)[0], `at Object.fetch (${THROW_ASYNC})`);

    assert.equal((await fetch(`${t.url}/rpc/maps/console`)).status, 200);
    const logged = await logLine(t, 'logged: Error: logged, not thrown', null);
    assert.equal(logged.stream, 'console');
    assert.equal(frames(logged.msg)[0], `at Object.fetch (${CONSOLE})`);
    assertNoBundle(logged.msg);

    assert.equal((await fetch(`${t.url}/rpc/maps/uncaught`)).status, 200);
    const uncaught = loggedStack(await logLine(t, 'uncaught error in the function', null, 'maps@1.0.0'));
    assert.match(frames(uncaught)[0]!, new RegExp(`\\(${UNCAUGHT.replace(/\./g, '\\.')}\\)$`));
    assertNoBundle(uncaught);
  });

  it('a scheduled run that throws: its logged stack too', async () => {
    const res = await fetch(`${t.host.adminUrl}/admin/functions/maps/scheduled`, { method: 'POST', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(res.status, 500);
    const stack = loggedStack(await logLine(t, 'scheduled run failed', null, 'maps@1.0.0'));
    assert.equal(frames(stack)[0], `at Object.scheduled (${THROW_SCHEDULED})`);
    assertNoBundle(stack);
    const inline = await fetch(`${t.host.adminUrl}/admin/functions/maps-inline/scheduled`, { method: 'POST', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(inline.status, 500);
    const inlineStack = loggedStack(await logLine(t, 'scheduled run failed', null, 'maps-inline@1.0.0'));
    assert.equal(frames(inlineStack)[0], `at Object.scheduled (../maps@1.0.0/${THROW_SCHEDULED})`);
  });

  it('a module that throws while it loads: the "failed to start" log names its line', async () => {
    const res = await fetch(`${t.url}/rpc/toplevel/`);
    assert.equal(res.status, 500);
    assert.equal((await res.json() as ErrorBody).code, 'FEZZ_ERR_INSTANCE_START_FAILED');
    const stack = loggedStack(await logLine(t, 'function failed to start', null, 'toplevel@1.0.0'));
    assert.equal(frames(stack)[0], `at ${THROW_TOPLEVEL}`);
    assertNoBundle(stack);
  });

  it('the inline runtime: the same, with a file outside the function shown as ../maps@1.0.0/...', async () => {
    const { body, requestId } = await fail(t, '/rpc/maps-inline/helper');
    const expected = [`at explode (../maps@1.0.0/${THROW_HELPER})`, `at Object.fetch (../maps@1.0.0/${CALL_HELPER})`];
    assert.deepEqual(frames(body.message).slice(0, 2), expected);
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.deepEqual(frames(stack).slice(0, 2), expected);
    assertNoBundle(stack);
  });

  it('service-worker syntax: answers with its env as a global; waitUntil runs; a throw is mapped; a late respondWith is refused', async () => {
    const ok = await fetch(`${t.url}/rpc/sw/hello?x=1`);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'hello from a service worker: GET /hello');

    const { body, requestId } = await fail(t, '/rpc/sw/throw');
    assert.match(frames(body.message)[0]!, new RegExp(`${SW_THROW.replace(/\./g, '\\.')}\\)?$`));
    assertNoBundle(loggedStack(await logLine(t, 'handler failed', requestId)));

    const late = await fail(t, '/rpc/sw/late');
    assert.match(late.body.message, /no "fetch" listener called event\.respondWith\(\)/);
    let state = { waited: 0, lateError: '', scheduledRuns: [] as string[] };
    for (let i = 0; i < 100 && (state.waited === 0 || state.lateError === ''); i++) {
      state = await (await fetch(`${t.url}/rpc/sw/state`)).json() as typeof state;
      if (state.waited === 0 || state.lateError === '') await sleep(10);
    }
    assert.ok(state.waited >= 1, 'event.waitUntil ran');
    assert.match(state.lateError, /^InvalidStateError: event\.respondWith\(\) must be called synchronously/);
  });

  it('service-worker syntax: a scheduled listener runs for `fezz trigger` (the admin API)', async () => {
    const res = await fetch(`${t.host.adminUrl}/admin/functions/sw/scheduled?cron=${encodeURIComponent('0 3 * * *')}`, { method: 'POST', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(res.status, 200, await res.clone().text());
    const state = await (await fetch(`${t.url}/rpc/sw/state`)).json() as { scheduledRuns: string[] };
    assert.equal(state.scheduledRuns.length, 1);
    assert.match(state.scheduledRuns[0]!, /^0 3 \* \* \*@\d+$/);
  });

  it('service-worker syntax in the inline runtime (the host realm: no env globals)', async () => {
    const res = await fetch(`${t.url}/rpc/sw-inline/hi`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'no binding from a service worker: GET /hi');
  });

  it('a module with neither a default fetch nor a fetch listener: a load problem naming both forms', async () => {
    const res = await fetch(`${t.url}/rpc/neither/`);
    assert.equal(res.status, 500);
    const body = await res.json() as ErrorBody;
    assert.equal(body.code, 'FEZZ_ERR_INSTANCE_START_FAILED');
    assert.match(body.message, /neither@1\.0\.0 has no handler fetch: expected export default \{ fetch\(request, env, ctx\).*addEventListener\("fetch", \(event\) => event\.respondWith\(\.\.\.\)\)/);
    const line = await logLine(t, 'function failed to start', null, 'neither@1.0.0');
    assert.match(String((line.err as { message?: unknown }).message), /addEventListener\("fetch"/);
  });
});

describe('source maps: not --dev', () => {
  let t: TestHost;
  before(async () => { t = await startHost(FNS, { dev: false }); });
  after(async () => { await t.close(); });

  it('the 500 body has no stack; the log has it, mapped', async () => {
    const { body, requestId } = await fail(t, '/rpc/maps/helper');
    assert.equal(body.message, 'Function maps@1.0.0 failed');
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.deepEqual(frames(stack).slice(0, 2), [`at explode (${THROW_HELPER})`, `at Object.fetch (${CALL_HELPER})`]);
  });
});

const sandbox = await probeSandbox();

describe('source maps: sandbox tier', { skip: sandbox.ok ? false : `no sandbox here: ${sandbox.reason}` }, () => {
  let t: TestHost;
  before(async () => { t = await startHost(FNS, { dev: true, isolation: 'sandbox' }); });
  after(async () => { await t.close(); });

  it('a throw in lib/explode.ts: the map is read inside the sandbox; log and body mapped', async () => {
    const { body, requestId } = await fail(t, '/rpc/maps/helper');
    const expected = [`at explode (${THROW_HELPER})`, `at Object.fetch (${CALL_HELPER})`];
    assert.deepEqual(frames(body.message).slice(0, 2), expected);
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.deepEqual(frames(stack).slice(0, 2), expected);
    assertNoBundle(stack);
  });

  it('service-worker syntax answers in a sandbox', async () => {
    const res = await fetch(`${t.url}/rpc/sw/hello`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello from a service worker: GET /hello');
  });
});

function fezz(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, ...args], {
      cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c; });
    child.stderr.on('data', (c: Buffer) => { stderr += c; });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('source maps: after fezz deploy', () => {
  let t: TestHost;
  let served: string;
  before(async () => {
    served = await mkdtemp(path.join(os.tmpdir(), 'fezz-srcmap-served-'));
    t = await startHost(served);
  });
  after(async () => {
    await t.close();
    await rm(served, { recursive: true, force: true });
  });

  it('the uploaded bundle keeps the map: the host that bundles it again logs index.ts and lib/explode.ts', async () => {
    const r = await fezz(['deploy', path.join(FNS, 'maps@1.0.0')], { FEZZ_HOST: t.host.adminUrl, FEZZ_TOKEN: t.host.token }, served);
    assert.equal(r.code, 0, r.stderr);
    const uploaded = await readFile(path.join(served, 'maps@1.0.0', 'index.mjs'), 'utf8');
    assert.ok(uploaded.includes(STANDARD_MAP_COMMENT));
    assert.ok(!uploaded.includes(FNS), 'no path of the machine that built it');
    const { body, requestId } = await fail(t, '/rpc/maps/helper');
    assert.equal(body.message, 'Function maps@1.0.0 failed');
    const stack = loggedStack(await logLine(t, 'handler failed', requestId));
    assert.deepEqual(frames(stack).slice(0, 2), [`at explode (${THROW_HELPER})`, `at Object.fetch (${CALL_HELPER})`]);
    assertNoBundle(stack);
  });
});
