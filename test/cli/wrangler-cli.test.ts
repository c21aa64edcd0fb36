/**
 * The CLI a wrangler user expects (fezz issue 14 item 6): `fezz dev` (serve --dev under
 * another name, same options), `fezz delete <id> [version]`, `fezz logs` showing every
 * request by default and saying so when the function does not exist, and `fezz new
 * --template hono|itty|plain|scheduled|websocket` whose manifests load (and, where their
 * dependencies are at hand, type-check, bundle and serve). Real processes, real hosts.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { loadFunctionDir } from '../../src/manifest/load.js';
import { startHost, type TestHost } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'secrets-env');

interface Run { code: number | null; stdout: string; stderr: string }

let tmp: string;
const children: ChildProcess[] = [];

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) env[k] = v;
  // Never the user's own token file, secrets or key.
  return { ...env, FEZZ_TOKEN_FILE: path.join(tmp, 'admin-token'), FEZZ_SECRETS_DIR: path.join(tmp, 'secrets'), FEZZ_SECRETS_KEY_FILE: path.join(tmp, 'secrets.key'), ...extra };
}

function fezz(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: tmp, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Long-running CLI (fezz dev, fezz logs): its output so far, and a way to stop it. */
function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; out: () => string; stop(): Promise<void> } {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: tmp, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  child.stderr!.on('data', (d: Buffer) => { out += d; });
  return {
    child, out: () => out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-wrangler-cli-')); });
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

describe('fezz dev', { concurrency: false }, () => {
  it('takes exactly the options of fezz serve', async () => {
    const [serve, dev] = await Promise.all([fezz(['serve', '--help']), fezz(['dev', '--help'])]);
    const flags = (help: string): string[] => [...help.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]!).sort();
    assert.ok(flags(serve.stdout).length > 20);
    assert.deepEqual(flags(dev.stdout), flags(serve.stdout));
    assert.match(dev.stdout, /fezz serve --dev/);
  });

  it('serves in dev mode: hot reload, .dev.vars in env, stacks in 500 bodies', async () => {
    const dir = path.join(tmp, 'dev-fns');
    await mkdir(path.join(dir, 'devfn@1.0.0'), { recursive: true });
    await writeFile(path.join(dir, 'devfn@1.0.0', 'fezz.json'), JSON.stringify({ id: 'devfn', version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: '/devfn' }, { method: 'GET', path: '/devfn/throw', handler: 'boom' }] }));
    await writeFile(path.join(dir, 'devfn@1.0.0', 'index.js'), 'export function boom() { throw new Error("thrown on purpose"); }\nexport default { fetch: (r, env) => Response.json({ v: 1, keys: Object.keys(env) }) };\n');
    await writeFile(path.join(dir, 'devfn@1.0.0', '.dev.vars'), 'LOCAL_ONLY=yes\n');
    const dev = start(['dev', '--dir', dir, '--port', '0', '--admin-port', '0', '--drain-delay', '0']);
    try {
      await until('fezz dev to listen', () => /fezz listening on http/.test(dev.out()));
      const url = /fezz listening on (http:\/\/[\d.]+:\d+)/.exec(dev.out())![1]!;
      assert.deepEqual(await (await fetch(`${url}/devfn`)).json(), { v: 1, keys: ['LOCAL_ONLY'] });
      const crash = await fetch(`${url}/devfn/throw`);
      assert.equal(crash.status, 500);
      assert.match(await crash.text(), /thrown on purpose[\s\S]*at boom/, 'dev mode puts the stack in the body');
      await writeFile(path.join(dir, 'devfn@1.0.0', 'index.js'), 'export function boom() { throw new Error("x"); }\nexport default { fetch: (r, env) => Response.json({ v: 2, keys: Object.keys(env) }) };\n');
      let v = 1;
      let asked = 0;
      await until('the watcher to reload', () => {
        if (asked++ % 4 === 0) void fetch(`${url}/devfn`).then((r) => r.json() as Promise<{ v: number }>).then((b) => { v = b.v; }, () => undefined);
        return v === 2;
      });
    } finally {
      await dev.stop();
    }
    assert.match(dev.out(), /hardened worker threads \(--dev\)/, 'dev isolation announced');
  });
});

describe('fezz logs and fezz delete against a host', { concurrency: false }, () => {
  let h: TestHost;
  let env: Record<string, string>;
  let dir: string;

  before(async () => {
    dir = path.join(tmp, 'host-fns');
    await cp(FIXTURES, dir, { recursive: true, filter: (src) => !src.includes('plug@') });
    await cp(path.join(dir, 'other@1.0.0'), path.join(dir, 'other@1.1.0'), { recursive: true });
    const m = JSON.parse(await readFile(path.join(dir, 'other@1.1.0', 'fezz.json'), 'utf8'));
    await writeFile(path.join(dir, 'other@1.1.0', 'fezz.json'), JSON.stringify({ ...m, version: '1.1.0' }));
    // Access log off (the library default): request lines come from the host's request records.
    h = await startHost(dir);
    env = { FEZZ_HOST: h.host.adminUrl, FEZZ_TOKEN: h.host.token };
  });
  after(async () => { await h.close(); });

  it('fezz logs shows every request (method, path, status, ms, request id) by default, without an access log', async () => {
    const ids: string[] = [];
    for (const p of ['/checker', '/checker?x=1', '/rpc/checker/deep/path']) {
      const res = await fetch(h.url + p);
      assert.equal(res.status, 200);
      ids.push(res.headers.get('x-request-id')!);
      await res.arrayBuffer();
    }
    assert.ok(!h.logs.some((l) => l.msg === 'request'), 'no access log line was written');
    const r = await fezz(['logs', 'checker', '--no-follow'], env);
    assert.equal(r.code, 0, r.stderr);
    // Its log lines (here "instance ready") are merged in, in time order.
    assert.match(r.stdout, /checker@1\.0\.0 - instance ready/);
    const lines = r.stdout.trim().split('\n').filter((l) => / GET /.test(l));
    assert.equal(lines.length, 3, r.stdout);
    assert.match(lines[0]!, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z info  checker@1\\.0\\.0 ${ids[0]} GET /checker 200 [\\d.]+ ms$`));
    assert.match(lines[2]!, new RegExp(`checker@1\\.0\\.0 ${ids[2]} GET /rpc/checker/deep/path 200 [\\d.]+ ms$`));
    const json = await fezz(['logs', 'checker', '--no-follow', '--json'], env);
    const first = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request')!;
    assert.deepEqual({ msg: first.msg, method: first.method, path: first.path, status: first.status, requestId: first.requestId, fn: first.fn }, { msg: 'request', method: 'GET', path: '/checker', status: 200, requestId: ids[0], fn: 'checker@1.0.0' });
    assert.equal(typeof first.ms, 'number');
    const quiet = await fezz(['logs', 'checker', '--no-follow', '--no-requests'], env);
    assert.match(quiet.stdout, /^\S+ debug checker@1\.0\.0 - instance ready \{.*\}\n$/);
  });

  it('fezz logs follows new requests as they come', async () => {
    const follow = start(['logs', 'other'], env);
    try {
      await new Promise((r) => setTimeout(r, 1500)); // the CLI connects (tsx start-up)
      let sent = 0;
      await until('a followed request line', () => {
        if (sent++ % 10 === 0) void fetch(`${h.url}/rpc/other@1.1.0/followed`).then((x) => x.arrayBuffer(), () => undefined);
        return /other@1\.1\.0 \S+ GET \/rpc\/other@1\.1\.0\/followed 200/.test(follow.out());
      });
    } finally {
      await follow.stop();
    }
  });

  it('fezz logs says so when the function or the version does not exist', async () => {
    for (const args of [['logs', 'nope', '--no-follow'], ['logs', 'nope']]) {
      const none = await fezz(args, env);
      assert.equal(none.code, 1, args.join(' '));
      assert.match(none.stderr, /^fezz: FEZZ_ERR_FUNCTION_NOT_FOUND: no function "nope" on the host at http:\/\/127\.0\.0\.1:\d+ \(fezz list shows what it has\)\n$/);
    }
    const version = await fezz(['logs', 'checker@9.9.9', '--no-follow'], env);
    assert.equal(version.code, 1);
    assert.match(version.stderr, /no function version checker@9\.9\.9 .*\(it has checker@1\.0\.0\)/);
  });

  it('fezz delete <id> <version> and <id>@<version> delete one version; an unknown one is a clear 404', async () => {
    const one = await fezz(['delete', 'other', '1.0.0'], env);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, 'deleted other@1.0.0\n');
    await assert.rejects(stat(path.join(dir, 'other@1.0.0')));
    const missing = await fezz(['delete', 'other@2.0.0'], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^fezz: FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND: /);
    const bad = await fezz(['delete', 'other@2.0.0', '1.0.0'], env);
    assert.match(bad.stderr, /two versions given/);
  });

  it('fezz delete <id> lists every version and wants --yes (or a y at a terminal)', async () => {
    await cp(path.join(dir, 'other@1.1.0'), path.join(dir, 'other@1.2.0'), { recursive: true });
    const m = JSON.parse(await readFile(path.join(dir, 'other@1.2.0', 'fezz.json'), 'utf8'));
    await writeFile(path.join(dir, 'other@1.2.0', 'fezz.json'), JSON.stringify({ ...m, version: '1.2.0' }));
    await h.host.reload();
    const refused = await fezz(['delete', 'other'], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /^other has 2 version\(s\):\n {2}other@1\.1\.0 +\w+\n {2}other@1\.2\.0 +latest, \w+\n$/);
    assert.match(refused.stderr, /not deleting 2 version\(s\) of other without confirmation: pass --yes/);
    assert.equal(h.host.functions().filter((f) => f.id === 'other').length, 2, 'nothing deleted');
    const all = await fezz(['delete', 'other', '--yes'], env);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /deleted other@1\.1\.0\ndeleted other@1\.2\.0\n/, 'older first, latest last');
    assert.deepEqual(h.host.functions().map((f) => f.key), ['checker@1.0.0']);
    const gone = await fezz(['delete', 'other', '--yes'], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /FEZZ_ERR_FUNCTION_NOT_FOUND: no function "other"/);
  });
});

describe('fezz new --template', { concurrency: false }, () => {
  const dir = (): string => path.join(tmp, 'new-fns');
  const tsc = (fnDir: string): Promise<Run> => new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', fnDir, '--typeRoots', path.join(ROOT, 'node_modules', '@types')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { out += d; });
    child.on('close', (code) => resolve({ code, stdout: out, stderr: '' }));
  });

  const expected: Record<string, { files: string[]; routes: string[]; next: RegExp }> = {
    plain: { files: ['fezz.json', 'index.ts', 'index.test.ts', 'fezz.d.ts', 'tsconfig.json', '.gitignore'], routes: ['GET /t-plain', 'GET /t-plain/:who'], next: /fezz serve --dir .* --dev/ },
    hono: { files: ['fezz.json', 'index.ts', 'index.test.ts', 'package.json', 'tsconfig.json', '.gitignore'], routes: ['* /t-hono', '* /t-hono/*'], next: /npm install/ },
    itty: { files: ['fezz.json', 'index.ts', 'package.json', 'tsconfig.json', '.gitignore'], routes: ['* /t-itty', '* /t-itty/*'], next: /npm install/ },
    scheduled: { files: ['fezz.json', 'index.ts', 'index.test.ts', 'fezz.d.ts', 'tsconfig.json', '.gitignore'], routes: ['GET /t-scheduled'], next: /fezz dev --dir/ },
    websocket: { files: ['fezz.json', 'index.ts', 'fezz.d.ts', 'tsconfig.json', '.gitignore'], routes: ['GET /t-websocket'], next: /wscat/ },
  };

  for (const [template, want] of Object.entries(expected)) {
    it(`${template}: writes its files, and its manifest loads`, async () => {
      const r = await fezz(['new', `t-${template}`, '--template', template, '--dir', dir()]);
      assert.equal(r.code, 0, r.stderr);
      const fnDir = path.join(dir(), `t-${template}@0.1.0`);
      for (const f of want.files) {
        assert.ok(r.stdout.includes(`  ${f}\n`), `${f} listed in\n${r.stdout}`);
        assert.ok((await stat(path.join(fnDir, f))).isFile(), `${f} written`);
      }
      assert.match(r.stdout, want.next);
      const fn = await loadFunctionDir(fnDir);
      assert.equal(fn.key, `t-${template}@0.1.0`);
      assert.deepEqual(fn.manifest.routes.map((x) => `${x.method} ${x.path}`), want.routes);
      assert.match(await readFile(path.join(fnDir, '.gitignore'), 'utf8'), /^\.dev\.vars$/m);
    });
  }

  it('scheduled has a cron trigger and a scheduled() export; websocket uses WebSocketPair; both type-check', async () => {
    const s = await loadFunctionDir(path.join(dir(), 't-scheduled@0.1.0'));
    assert.deepEqual(s.manifest.triggers?.crons, ['*/5 * * * *']);
    assert.match(await readFile(s.entryPath, 'utf8'), /scheduled\(controller: ScheduledController, env: Env, ctx: Context\)/);
    const w = await loadFunctionDir(path.join(dir(), 't-websocket@0.1.0'));
    const code = await readFile(w.entryPath, 'utf8');
    assert.match(code, /new WebSocketPair\(\)/);
    assert.match(code, /status: 101, webSocket: client/);
    for (const t of ['plain', 'scheduled', 'websocket']) {
      const r = await tsc(path.join(dir(), `t-${t}@0.1.0`));
      assert.equal(r.code, 0, `${t}: ${r.stdout}`);
    }
  });

  it('served as written: the websocket template echoes over a real WebSocket; the scheduled one runs its handler', async () => {
    const served = path.join(tmp, 'serve-workers-shape');
    for (const t of ['websocket', 'scheduled']) await cp(path.join(dir(), `t-${t}@0.1.0`), path.join(served, `t-${t}@0.1.0`), { recursive: true });
    const host = await startHost(served);
    try {
      assert.deepEqual(host.host.problems, []);
      const ws = new WebSocket(`${host.url.replace('http:', 'ws:')}/t-websocket`);
      const echoed = await new Promise<string>((resolve, reject) => {
        ws.once('open', () => ws.send('hello'));
        ws.once('message', (d) => resolve(String(d)));
        ws.once('error', reject);
      });
      ws.close();
      assert.equal(echoed, 'echo: hello');
      assert.equal((await fetch(`${host.url}/t-websocket`)).status, 426, 'a plain GET is told to upgrade');
      const run = await host.host.runScheduled('t-scheduled');
      assert.equal(run.outcome, 'ok', JSON.stringify(run));
      assert.deepEqual(((await (await fetch(`${host.url}/t-scheduled`)).json()) as { runs: number }).runs, 1);
    } finally {
      await host.close();
    }
  });

  it('hono and itty name their framework in package.json; hono, once installed, type-checks, bundles and serves', async () => {
    const pkg = (t: string): Promise<{ dependencies: Record<string, string> }> => readFile(path.join(dir(), `t-${t}@0.1.0`, 'package.json'), 'utf8').then(JSON.parse);
    assert.ok((await pkg('hono')).dependencies.hono);
    assert.ok((await pkg('itty')).dependencies['itty-router']);
    assert.match(await readFile(path.join(dir(), 't-itty@0.1.0', 'index.ts'), 'utf8'), /AutoRouter<IRequest, \[Env\]>\(\{ base: '\/t-itty' \}\)/);
    // "npm install" without the network: this repository's hono, linked where npm would put it.
    const served = path.join(tmp, 'serve-hono');
    await cp(path.join(dir(), 't-hono@0.1.0'), path.join(served, 't-hono@0.1.0'), { recursive: true });
    await mkdir(path.join(served, 't-hono@0.1.0', 'node_modules'));
    await symlink(path.join(ROOT, 'node_modules', 'hono'), path.join(served, 't-hono@0.1.0', 'node_modules', 'hono'), 'dir');
    const checked = await tsc(path.join(served, 't-hono@0.1.0'));
    assert.equal(checked.code, 0, checked.stdout);
    const host = await startHost(served);
    try {
      assert.deepEqual(host.host.problems, []);
      const res = await fetch(`${host.url}/t-hono/hello/you`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { message: 'Hello, you!' });
      assert.equal(await (await fetch(`${host.url}/t-hono`)).text(), 'Hello from Hono on fezz!');
    } finally {
      await host.close();
    }
  });

  it('an unknown template is refused', async () => {
    const r = await fezz(['new', 'x', '--template', 'vue', '--dir', dir()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /argument 'vue' is invalid\. Allowed choices are plain, hono, itty, scheduled, websocket/);
  });
});
