/**
 * `fezz secret put|list|delete` against a real `fezz serve` (one process, then `--workers 2`),
 * with the key given in FEZZ_SECRETS_KEY: the value goes in through stdin (piped, and typed
 * at a prompt that does not echo it), reaches the function's env, leaves the host's own
 * environment alone (FEZZ_SECRETS_KEY is removed from it), and shows in no line the host or
 * the CLI prints.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI } from '../helpers/cli.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const sha = (v: string): string => createHash('sha256').update(v).digest('hex');

interface Run { code: number | null; stdout: string; stderr: string }
interface Probe { pid: number; API_KEY: string | null; hostEnvNames: string[]; hostEnvValues: Array<string | null> }

let tmp: string;
let fnDir: string;
const secretsKey = randomBytes(32).toString('hex');
/** Everything every process printed (hosts and CLI runs): no value may be in it. */
const printed: string[] = [];
const values: string[] = [];
const servers: ChildProcess[] = [];

/** The environment of every child: nothing FEZZ_* from outside, the token file in tmp. */
function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) env[k] = v;
  return { ...env, FEZZ_TOKEN_FILE: path.join(tmp, 'admin-token'), ...extra };
}

/** Run the CLI; `input` is piped to its stdin. */
function fezz(args: string[], opts: { env?: Record<string, string>; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: tmp, env: baseEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => { printed.push(stdout, stderr); resolve({ code, stdout, stderr }); });
    child.stdin.end(opts.input ?? '');
  });
}

/** Start `fezz serve` (JSON logs on stdout); resolves with its public and admin URLs once it listens. */
async function serve(args: string[]): Promise<{ url: string; admin: string; child: ChildProcess; out: () => string }> {
  const child = spawn(process.execPath, [...CLI, 'serve', '--dir', fnDir, '--port', '0', '--admin-port', '0', '--isolation', 'thread', '--drain-delay', '0', '--grace', '2000', ...args], {
    cwd: tmp, env: baseEnv({ FEZZ_SECRETS_KEY: secretsKey, FEZZ_SECRETS_DIR: path.join(tmp, 'secrets') }), stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  child.stderr!.on('data', (d: Buffer) => { out += d; });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const line = out.split('\n').find((l) => l.includes('"fezz listening on'));
    if (line !== undefined) {
      const o = JSON.parse(line) as { url: string; admin: string };
      return { url: o.url, admin: o.admin, child, out: () => out };
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`fezz serve did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopServer(s: { child: ChildProcess; out: () => string }): Promise<void> {
  if (s.child.exitCode === null) {
    const exited = new Promise((r) => s.child.once('exit', r));
    s.child.kill('SIGTERM');
    await exited;
  }
  printed.push(s.out());
}

async function probe(url: string): Promise<Probe> {
  // A new connection per request, so that with --workers each lands where the balancer says.
  const res = await fetch(`${url}/probe`, { headers: { connection: 'close' } });
  assert.equal(res.status, 200);
  return (await res.json()) as Probe;
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-secret-cli-'));
  fnDir = path.join(tmp, 'functions');
  await cp(path.join(ROOT, 'test', 'fixtures', 'secrets-cli'), fnDir, { recursive: true });
});

after(async () => {
  for (const c of servers) if (c.exitCode === null) c.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

describe('fezz secret without a host', { concurrency: 4 }, () => {
  it('refuses an id@version, a bad name and a value on the command line, with one line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['secret', 'put', 'probe@1.0.0', 'API_KEY'], /^fezz: secrets belong to a function id, shared by all its versions: use "probe"/],
      [['secret', 'put', 'probe', 'api-key'], /^fezz: invalid secret name "api-key"/],
      [['secret', 'put', 'probe', 'FEZZ_TOKEN'], /^fezz: invalid secret name "FEZZ_TOKEN"/],
      [['secret', 'put', 'probe', 'API_KEY', 'the-value'], /too many arguments/],
    ];
    for (const [args, re] of cases) {
      const r = await fezz(args, { env: { FEZZ_HOST: 'http://127.0.0.1:9' , FEZZ_TOKEN: 'x'.repeat(32) } });
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
    }
  });

  it('refuses an empty stdin before contacting anyone', async () => {
    const r = await fezz(['secret', 'put', 'probe', 'API_KEY'], { env: { FEZZ_HOST: 'http://127.0.0.1:9', FEZZ_TOKEN: 'x'.repeat(32) }, input: '' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^fezz: no value for API_KEY of probe: pipe it in/);
  });

  it('refuses a value over 64 KiB', async () => {
    const r = await fezz(['secret', 'put', 'probe', 'API_KEY'], { env: { FEZZ_HOST: 'http://127.0.0.1:9', FEZZ_TOKEN: 'x'.repeat(32) }, input: 'x'.repeat(70_000) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /over 65536 bytes/);
  });
});

describe('.dev.vars never leaves the machine', () => {
  it('fezz deploy leaves it out of a JS function\'s and a plugin\'s package, and says so', async () => {
    const { packageForDeploy, readFunctionSource } = await import('../../src/build/deploy-bundle.js');
    const js = path.join(tmp, 'deploy-js');
    await cp(path.join(fnDir, 'probe@1.0.0'), js, { recursive: true });
    const plugin = path.join(tmp, 'deploy-plugin');
    await cp(path.join(ROOT, 'test', 'fixtures', 'secrets-env', 'plug@1.0.0'), plugin, { recursive: true });
    for (const dir of [js, plugin]) {
      const local = `local-${randomBytes(8).toString('hex')}`;
      await writeFile(path.join(dir, '.dev.vars'), `API_KEY=${local}\n`);
      const plan = await packageForDeploy(await readFunctionSource(dir));
      assert.ok(!Object.keys(plan.body.files).some((f) => f.includes('.dev.vars')), Object.keys(plan.body.files).join(','));
      for (const [f, b64] of Object.entries(plan.body.files)) assert.ok(!Buffer.from(b64, 'base64').toString('latin1').includes(local), `${f} carries the .dev.vars value`);
      assert.ok(plan.notes.some((n) => n.startsWith('not uploaded: .dev.vars (local secrets for fezz dev')), plan.notes.join('\n'));
    }
    const r = await fezz(['deploy', plugin, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /not uploaded: \.dev\.vars/);
  });
});

describe('fezz secret against fezz serve', { concurrency: false }, () => {
  let host: Awaited<ReturnType<typeof serve>>;
  let env: Record<string, string>;
  const first = `sk-${randomBytes(16).toString('hex')}`;
  const typed = `typed-${randomBytes(12).toString('hex')}`;
  values.push(first, typed, secretsKey);

  it('put (piped, one trailing newline dropped) reaches the function; FEZZ_SECRETS_KEY left the host environment', async () => {
    host = await serve([]);
    env = { FEZZ_HOST: host.admin };
    const before = await probe(host.url);
    assert.equal(before.API_KEY, null);
    assert.deepEqual(before.hostEnvNames, [], 'FEZZ_SECRETS_KEY is not in the host\'s process.env');
    assert.ok(!before.hostEnvValues.includes(sha(secretsKey)), 'nor its value under another name');

    const put = await fezz(['secret', 'put', 'probe', 'API_KEY'], { env, input: `${first}\n` });
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stdout, 'added secret API_KEY of probe; restarted with it: probe@1.0.0\n');
    assert.equal((await probe(host.url)).API_KEY, sha(first));
  });

  it('list shows names and times, --json too; never the value', async () => {
    const list = await fezz(['secret', 'list', 'probe'], { env });
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^NAME +UPDATED\nAPI_KEY +\d{4}-\d\d-\d\dT[\d:.]+Z\n$/);
    const json = await fezz(['secret', 'ls', 'probe', '--json'], { env });
    const parsed = JSON.parse(json.stdout) as { id: string; secrets: Array<{ name: string }> };
    assert.equal(parsed.id, 'probe');
    assert.deepEqual(parsed.secrets.map((s) => s.name), ['API_KEY']);
    assert.equal((await fezz(['secret', 'list', 'nothing-here'], { env })).stdout, 'no secrets for nothing-here\n');
  });

  it('put at a terminal prompts without echoing the value', async () => {
    // script(1) gives the CLI a pseudo-terminal; the value is typed after the prompt shows.
    const cmd = [process.execPath, ...CLI, 'secret', 'put', 'probe', 'API_KEY'].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: tmp, env: baseEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => { out += d; });
    const deadline = Date.now() + 20_000;
    while (!out.includes('Enter the value of API_KEY of probe') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(out.includes('(not shown; Enter ends it)'), out);
    child.stdin.write(`${typed}\r`);
    const code = await new Promise<number | null>((r) => child.on('close', r));
    printed.push(out);
    assert.equal(code, 0, out);
    assert.match(out, /changed secret API_KEY of probe; restarted with it: probe@1\.0\.0/);
    assert.ok(!out.includes(typed), 'the typed value was not echoed');
    assert.equal((await probe(host.url)).API_KEY, sha(typed));
  });

  it('delete restarts the function without it; a second delete is a clear 404', async () => {
    const del = await fezz(['secret', 'delete', 'probe', 'API_KEY'], { env });
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, 'deleted secret API_KEY of probe; restarted without it: probe@1.0.0\n');
    assert.equal((await probe(host.url)).API_KEY, null);
    const again = await fezz(['secret', 'rm', 'probe', 'API_KEY'], { env });
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'fezz: FEZZ_ERR_SECRET_NOT_FOUND: Function probe has no secret API_KEY\n');
    await stopServer(host);
  });

  it('with --workers 2: a put through the primary reaches every host process', async () => {
    host = await serve(['--workers', '2']);
    env = { FEZZ_HOST: host.admin };
    const rotated = `rot-${randomBytes(16).toString('hex')}`;
    values.push(rotated);
    const put = await fezz(['secret', 'put', 'probe', 'API_KEY'], { env, input: rotated });
    assert.equal(put.code, 0, put.stderr);
    const pids = new Set<number>();
    for (let i = 0; i < 40 && pids.size < 2; i++) {
      const p = await probe(host.url);
      pids.add(p.pid);
      assert.equal(p.API_KEY, sha(rotated), `process ${p.pid}`);
      assert.deepEqual(p.hostEnvNames, [], `process ${p.pid} removed FEZZ_SECRETS_KEY`);
    }
    assert.equal(pids.size, 2, 'both host processes answered');
    const list = await fezz(['secret', 'list', 'probe'], { env });
    assert.match(list.stdout, /^API_KEY /m);
    const del = await fezz(['secret', 'delete', 'probe', 'API_KEY'], { env });
    assert.equal(del.code, 0, del.stderr);
    for (let i = 0; i < 6; i++) assert.equal((await probe(host.url)).API_KEY, null);
    await stopServer(host);
  });

  it('no value and not the key appear in anything the hosts or the CLI printed; the store holds ciphertext only', async () => {
    const all = printed.join('\n');
    assert.ok(all.includes('secret added') && all.includes('"secret":"API_KEY"'), 'changes are logged, by name');
    for (const v of values) assert.ok(!all.includes(v), `${v.slice(0, 6)}… was printed`);
    for (const f of await readdir(path.join(tmp, 'secrets'))) {
      const text = await readFile(path.join(tmp, 'secrets', f), 'utf8');
      for (const v of values) assert.ok(!text.includes(v));
    }
  });
});
