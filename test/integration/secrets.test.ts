/**
 * Secrets (fezz issue 14 item 1; docs/secrets.md), on a real host with real functions: an
 * isolate function gets its secrets in `env`; a process plugin gets only the secrets its
 * manifest grants, and its ABI token cannot reach the secrets routes; a change reloads only
 * that function; values survive a restart, are encrypted at rest (0600 files), never appear
 * in a log line, a listing or any admin output; a wrong key stops the host at start with a
 * message naming the file; `.dev.vars` counts in dev mode only.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, startHost, type TestHost } from '../helpers/host.js';
import { createHost } from '../../src/index.js';
import type { FezzError } from '../../src/errors.js';
import { SecretStore } from '../../src/secrets/store.js';
import { parseDevVars } from '../../src/secrets/dev-vars.js';

const sha = (v: string): string => createHash('sha256').update(v).digest('hex');
/** A value no other text in the run could contain by chance. */
const secretValue = (label: string): string => `${label}-${randomBytes(18).toString('base64url')}`;

interface Checker { instance: string; keys: string[]; API_KEY: string | null; OTHER: string | null; PLAIN: string | null; processEnv: string | null }

let tmp: string;
let fnDir: string;
let secretsDir: string;
let keyFile: string;
/** Every value ever put in this file: none may appear in any host output. */
const values: string[] = [];
/** Every log line of every host this file started, as written (JSON). */
const output: string[] = [];
const hosts: TestHost[] = [];

async function start(options: Parameters<typeof startHost>[1] = {}): Promise<TestHost> {
  const h = await startHost(fnDir, { secretsDir, secretsKeyFile: keyFile, accessLog: true, ...options });
  hosts.push(h);
  return h;
}

async function stop(h: TestHost): Promise<void> {
  await h.close();
  output.push(...h.logs.map((l) => JSON.stringify(l)));
  hosts.splice(hosts.indexOf(h), 1);
}

async function admin(h: TestHost, method: string, p: string, body?: string | Uint8Array, token = h.host.token): Promise<{ status: number; text: string; json: any }> {
  const res = await fetch(h.host.adminUrl + p, { method, body, headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let json: unknown = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  return (await res.json()) as T;
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-secrets-'));
  fnDir = path.join(tmp, 'functions');
  secretsDir = path.join(tmp, 'state', 'secrets');
  keyFile = path.join(tmp, 'config', 'secrets.key');
  await cp(path.join(FIXTURES, 'secrets-env'), fnDir, { recursive: true });
  // A Python plugin ships its SDK beside it.
  await cp(path.join(FIXTURES, '..', '..', 'sdk', 'python', 'fezz.py'), path.join(fnDir, 'plug@1.0.0', 'fezz.py'));
});

after(async () => {
  for (const h of [...hosts]) await stop(h).catch(() => undefined);
  await rm(tmp, { recursive: true, force: true });
});

describe('secrets', { concurrency: false }, () => {
  let h: TestHost;
  const apiKey = secretValue('sk-live');
  const granted = secretValue('granted');
  const ungranted = secretValue('ungranted');
  values.push(apiKey, granted, ungranted);

  it('a put secret reaches an isolate function\'s env (and process.env), encrypted at rest in 0600 files', async () => {
    h = await start();
    // Nothing is created before the first secret.
    await assert.rejects(stat(keyFile));
    assert.deepEqual((await admin(h, 'GET', '/admin/secrets/checker')).json, { id: 'checker', secrets: [] });
    const before = await getJson<Checker>(`${h.url}/checker`);
    assert.equal(before.API_KEY, null);
    assert.deepEqual(before.keys, ['PLAIN']);

    const put = await admin(h, 'PUT', '/admin/secrets/checker/API_KEY', apiKey);
    assert.equal(put.status, 201, put.text);
    assert.equal(put.json.created, true);
    assert.deepEqual(put.json.reloaded, ['checker@1.0.0']);
    assert.deepEqual(put.json.problems, []);

    const after = await getJson<Checker>(`${h.url}/checker`);
    assert.equal(after.API_KEY, sha(apiKey));
    assert.equal(after.processEnv, sha(apiKey));
    assert.equal(after.PLAIN, 'not-a-secret');
    assert.deepEqual(after.keys, ['API_KEY', 'PLAIN']);
    assert.notEqual(after.instance, before.instance, 'restarted with the secret');

    // At rest: the key file and the store are 0600 (the directory 0700), and the store holds
    // neither the value nor its base64.
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    assert.equal((await stat(secretsDir)).mode & 0o777, 0o700);
    const storeFile = path.join(secretsDir, 'checker.json');
    assert.equal((await stat(storeFile)).mode & 0o777, 0o600);
    const stored = await readFile(storeFile, 'utf8');
    assert.ok(!stored.includes(apiKey) && !stored.includes(Buffer.from(apiKey).toString('base64')), 'not in plaintext');
    assert.match(stored, /"API_KEY":\{"nonce":/);
    // No temporary file is left behind by the atomic write.
    assert.deepEqual((await readdir(secretsDir)).sort(), ['checker.json']);
  });

  it('lists names and update times only; a function without the secret never gets it', async () => {
    const list = await admin(h, 'GET', '/admin/secrets/checker');
    assert.equal(list.status, 200);
    assert.equal(list.json.secrets.length, 1);
    assert.equal(list.json.secrets[0].name, 'API_KEY');
    assert.ok(!Number.isNaN(Date.parse(list.json.secrets[0].updatedAt)));
    assert.deepEqual(Object.keys(list.json.secrets[0]).sort(), ['name', 'updatedAt']);
    assert.deepEqual((await getJson<{ keys: string[] }>(`${h.url}/other`)).keys, []);
  });

  it('a process plugin gets only the secrets its manifest grants', async () => {
    assert.equal((await admin(h, 'PUT', '/admin/secrets/plug/GRANTED', granted)).status, 201);
    assert.equal((await admin(h, 'PUT', '/admin/secrets/plug/API_KEY', ungranted)).status, 201);
    const seen = await getJson<{ GRANTED: string | null; API_KEY: string | null; keys: string[] }>(`${h.url}/plug`);
    assert.equal(seen.GRANTED, sha(granted));
    assert.equal(seen.API_KEY, null, 'an ungranted secret stays out of a plugin\'s environment');
    assert.deepEqual(seen.keys, ['GRANTED']);
  });

  it('a plugin\'s ABI token gets 403 on every secrets route', async () => {
    const probe = await getJson<Record<string, number>>(`${h.url}/plug/probe`);
    assert.deepEqual(probe, { list: 403, put: 403, delete: 403 });
    assert.equal((await admin(h, 'GET', '/admin/secrets/plug')).json.secrets.length, 2, 'nothing was added or removed');
  });

  it('changing a secret reloads only that function: new instances get the new value, others stay warm', async () => {
    const other = await getJson<{ instance: string }>(`${h.url}/other`);
    const old = await getJson<Checker>(`${h.url}/checker`);
    const next = secretValue('sk-rotated');
    values.push(next);
    const put = await admin(h, 'PUT', '/admin/secrets/checker/API_KEY', next);
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json.created, false);
    assert.deepEqual(put.json.reloaded, ['checker@1.0.0']);
    const now = await getJson<Checker>(`${h.url}/checker`);
    assert.equal(now.API_KEY, sha(next));
    assert.notEqual(now.instance, old.instance);
    assert.equal((await getJson<{ instance: string }>(`${h.url}/other`)).instance, other.instance, 'other kept its warm instance');
    // Back to the first value for the restart test below.
    assert.equal((await admin(h, 'PUT', '/admin/secrets/checker/API_KEY', apiKey)).status, 200);
  });

  it('refuses bad names, empty, oversized and non-UTF-8 values, and a name the manifest env has, with the FEZZ_ERR code', async () => {
    const cases: Array<[string, string | Uint8Array, number, string]> = [
      ['/admin/secrets/checker/1BAD', 'x', 400, 'FEZZ_ERR_SECRET_NAME_INVALID'],
      ['/admin/secrets/checker/FEZZ_TOKEN', 'x', 400, 'FEZZ_ERR_SECRET_NAME_INVALID'],
      ['/admin/secrets/Bad_Id/NAME', 'x', 400, 'FEZZ_ERR_BAD_REQUEST'],
      ['/admin/secrets/checker/EMPTY', '', 400, 'FEZZ_ERR_SECRET_VALUE_INVALID'],
      ['/admin/secrets/checker/BINARY', new Uint8Array([0xff, 0xfe, 0x00]), 400, 'FEZZ_ERR_SECRET_VALUE_INVALID'],
      ['/admin/secrets/checker/HUGE', 'x'.repeat(64 * 1024 + 1), 413, 'FEZZ_ERR_SECRET_LIMIT'],
      ['/admin/secrets/checker/PLAIN', 'x', 409, 'FEZZ_ERR_SECRET_CLASH'],
    ];
    for (const [p, body, status, code] of cases) {
      const r = await admin(h, 'PUT', p, body);
      assert.equal(r.status, status, `${p}: ${r.text}`);
      assert.equal(r.json.code, code, p);
    }
    assert.equal((await admin(h, 'DELETE', '/admin/secrets/checker/NOPE')).json.code, 'FEZZ_ERR_SECRET_NOT_FOUND');
    assert.deepEqual((await admin(h, 'GET', '/admin/secrets/checker')).json.secrets.map((s: { name: string }) => s.name), ['API_KEY']);
  });

  it('never shows a value in /admin/functions, stats, metrics, logs, reload or listings', async () => {
    const outputs = await Promise.all(['/admin/functions', '/admin/functions/checker', '/admin/stats', '/metrics', '/admin/secrets/checker', '/admin/secrets/plug', '/admin/logs?fn=checker&since=1000', '/admin/logs?fn=plug&since=1000']
      .map(async (p) => (await admin(h, 'GET', p)).text));
    outputs.push((await admin(h, 'POST', '/admin/reload')).text);
    for (const text of outputs) for (const v of values) assert.ok(!text.includes(v), `a secret value in admin output:\n${text.slice(0, 300)}`);
  });

  it('a file change (watch) and a deploy of a new version deliver the secrets too', async () => {
    await stop(h);
    h = await start({ watch: true });
    const first = await getJson<Checker>(`${h.url}/checker`);
    assert.equal(first.API_KEY, sha(apiKey));
    // Hot reload on a file change: a new instance, still with its secret.
    const entry = path.join(fnDir, 'checker@1.0.0', 'index.js');
    const code = await readFile(entry, 'utf8');
    await writeFile(entry, code + '\nexport const changed = 1;\n'); // (a comment alone bundles the same: no restart)
    let now = first;
    for (let i = 0; i < 100 && now.instance === first.instance; i++) {
      await new Promise((r) => setTimeout(r, 50));
      now = await getJson<Checker>(`${h.url}/checker`);
    }
    assert.notEqual(now.instance, first.instance, 'the watcher reloaded it');
    assert.equal(now.API_KEY, sha(apiKey));
    // A deploy: the start probe and the new version both get the secrets of the id.
    const manifest = JSON.parse(await readFile(path.join(fnDir, 'checker@1.0.0', 'fezz.json'), 'utf8'));
    const pkg = { files: { 'fezz.json': Buffer.from(JSON.stringify({ ...manifest, version: '1.0.1' })).toString('base64'), 'index.js': Buffer.from(code).toString('base64') } };
    const dep = await admin(h, 'POST', '/admin/deploy', JSON.stringify(pkg));
    assert.equal(dep.status, 201, dep.text);
    assert.equal((await getJson<Checker>(`${h.url}/rpc/checker@1.0.1/`)).API_KEY, sha(apiKey));
    assert.equal((await admin(h, 'DELETE', '/admin/functions/checker/1.0.1')).status, 200);
  });

  it('survives a restart; deleting restarts the function without it', async () => {
    await stop(h);
    h = await start();
    const c = await getJson<Checker>(`${h.url}/checker`);
    assert.equal(c.API_KEY, sha(apiKey));
    assert.equal((await getJson<{ GRANTED: string | null }>(`${h.url}/plug`)).GRANTED, sha(granted));
    const del = await admin(h, 'DELETE', '/admin/secrets/plug/API_KEY');
    assert.equal(del.status, 200, del.text);
    assert.equal(del.json.status, 'deleted');
    assert.deepEqual(del.json.reloaded, [], 'the plugin never had the ungranted secret: nothing to restart');
    const d2 = await admin(h, 'DELETE', '/admin/secrets/plug/GRANTED');
    assert.deepEqual(d2.json.reloaded, ['plug@1.0.0']);
    assert.equal((await getJson<{ GRANTED: string | null }>(`${h.url}/plug`)).GRANTED, null);
    await assert.rejects(stat(path.join(secretsDir, 'plug.json')), 'the file goes with its last secret');
    await stop(h);
  });

  it('a wrong key, or a missing key file, stops the host at start with a message naming the file', async () => {
    const logs: string[] = [];
    const sink = { write: (l: string) => { logs.push(l); } };
    const storeFile = path.join(secretsDir, 'checker.json');
    await assert.rejects(createHost({ dir: fnDir, port: 0, adminPort: 0, logDestination: sink, secretsDir, secretsKey: randomBytes(32).toString('hex') }), (err: FezzError) => {
      assert.equal(err.code, 'FEZZ_ERR_SECRETS_KEY');
      assert.ok(err.message.includes(storeFile), err.message);
      assert.match(err.message, /not the key .* was written with/);
      return true;
    });
    await assert.rejects(createHost({ dir: fnDir, port: 0, adminPort: 0, logDestination: sink, secretsDir, secretsKeyFile: path.join(tmp, 'nowhere.key') }), (err: FezzError) => {
      assert.equal(err.code, 'FEZZ_ERR_SECRETS_KEY');
      assert.ok(err.message.includes(path.join(tmp, 'nowhere.key')) && err.message.includes(storeFile), err.message);
      return true;
    });
    // Not a key at all; a key file anyone can read.
    await assert.rejects(createHost({ dir: fnDir, port: 0, adminPort: 0, logDestination: sink, secretsDir, secretsKey: 'hunter2' }), /FEZZ_SECRETS_KEY|secretsKey/);
    const loose = path.join(tmp, 'loose.key');
    await writeFile(loose, randomBytes(32).toString('hex'), { mode: 0o644 });
    await assert.rejects(createHost({ dir: fnDir, port: 0, adminPort: 0, logDestination: sink, secretsDir, secretsKeyFile: loose }), /mode is 644/);
    // A store inside the functions directory is refused.
    await assert.rejects(createHost({ dir: fnDir, port: 0, adminPort: 0, logDestination: sink, secretsDir: path.join(fnDir, 'secrets'), secretsKeyFile: keyFile }), /outside the functions directory/);
    output.push(...logs);
  });

  it('.dev.vars adds and overrides in dev mode only', async () => {
    const devValue = secretValue('dev');
    values.push(devValue);
    await writeFile(path.join(fnDir, 'checker@1.0.0', '.dev.vars'), `# local only\nOTHER="${devValue}"\nexport PLAIN=from-dev-vars # a comment\n`);
    try {
      const prod = await start();
      const p = await getJson<Checker>(`${prod.url}/checker`);
      assert.equal(p.OTHER, null, 'not read without dev');
      assert.equal(p.PLAIN, 'not-a-secret');
      await stop(prod);
      const dev = await start({ dev: true, isolation: 'thread' });
      const d = await getJson<Checker>(`${dev.url}/checker`);
      assert.equal(d.OTHER, sha(devValue));
      assert.equal(d.PLAIN, 'from-dev-vars', '.dev.vars overrides the manifest in dev');
      assert.equal(d.API_KEY, sha(apiKey), 'stored secrets still reach it');
      // A bad line makes the function a load problem naming the file and line, never a value.
      await writeFile(path.join(fnDir, 'checker@1.0.0', '.dev.vars'), `OK=1\nthis is not a pair\n`);
      const r = await admin(dev, 'POST', '/admin/reload');
      const problem = r.json.problems.find((x: { code: string }) => x.code === 'FEZZ_ERR_DEV_VARS_INVALID');
      assert.ok(problem, r.text);
      assert.match(problem.message, /\.dev\.vars: line 2: expected NAME=value/);
      assert.equal((await getJson<Checker>(`${dev.url}/checker`)).OTHER, sha(devValue), 'the last good version keeps serving');
      await stop(dev);
    } finally {
      await rm(path.join(fnDir, 'checker@1.0.0', '.dev.vars'), { force: true });
    }
  });

  it('no value appears anywhere in the hosts\' log output', () => {
    for (const h2 of hosts) output.push(...h2.logs.map((l) => JSON.stringify(l)));
    assert.ok(output.length > 30, `captured ${output.length} lines`);
    assert.ok(output.some((l) => l.includes('"secret changed"') && l.includes('"API_KEY"')), 'changes are logged, by name');
    assert.ok(output.some((l) => l.includes('"msg":"request"')), 'the access log was on');
    const all = output.join('\n');
    for (const v of values) assert.ok(!all.includes(v), `value ${v.slice(0, 8)}… in the host output`);
  });
});

describe('the store file and .dev.vars, up close', () => {
  it('a value moved under another name, or a changed byte, does not decrypt: the store says which file', async () => {
    const dir = path.join(tmp, 'tamper');
    const key = randomBytes(32).toString('hex');
    const store = await SecretStore.open({ dir, key });
    const v = secretValue('tamper');
    values.push(v);
    await store.put('fn', 'A', v);
    await store.put('fn', 'B', 'other');
    const file = path.join(dir, 'fn.json');
    const doc = JSON.parse(await readFile(file, 'utf8'));
    // Swap the ciphertexts of A and B: each is bound to its name.
    [doc.secrets.A, doc.secrets.B] = [{ ...doc.secrets.B, updatedAt: doc.secrets.A.updatedAt }, { ...doc.secrets.A, updatedAt: doc.secrets.B.updatedAt }];
    await writeFile(file, JSON.stringify(doc), { mode: 0o600 });
    await assert.rejects(SecretStore.open({ dir, key }), (err: FezzError) => err.code === 'FEZZ_ERR_SECRETS_STORE' && err.message.includes(file) && /does not decrypt/.test(err.message));
    // Put them back, then change one byte of the data.
    [doc.secrets.A, doc.secrets.B] = [doc.secrets.B, doc.secrets.A];
    const data = Buffer.from(doc.secrets.A.data, 'base64');
    data[0] ^= 1;
    await writeFile(file, JSON.stringify({ ...doc, secrets: { ...doc.secrets, A: { ...doc.secrets.A, data: data.toString('base64') } } }), { mode: 0o600 });
    await assert.rejects(SecretStore.open({ dir, key }), /secret A does not decrypt/);
    await writeFile(file, 'not json', { mode: 0o600 });
    await assert.rejects(SecretStore.open({ dir, key }), /not a store file \(not JSON\)/);
  });

  it('parses .dev.vars as documented, and names the line of a bad one', () => {
    const vars = parseDevVars([
      '# comment', '', 'A=plain value # trailing comment', 'export B="quoted \\"x\\"\\n"', "C='single # not a comment'",
      'D="multi', 'line"', 'E=', 'F = spaced ',
    ].join('\n'), '.dev.vars');
    assert.deepEqual(Object.fromEntries(vars), { A: 'plain value', B: 'quoted "x"\n', C: 'single # not a comment', D: 'multi\nline', E: '', F: 'spaced' });
    assert.throws(() => parseDevVars('OK=1\nnope\n', 'f'), /Local secrets file f: line 2: expected NAME=value/);
    assert.throws(() => parseDevVars('1X=1', 'f'), /line 1: "1X" is not an environment variable name/);
    assert.throws(() => parseDevVars('FEZZ_TOKEN=1', 'f'), /FEZZ_\* names are the host's own/);
    assert.throws(() => parseDevVars('A="open', 'f'), /line 1: the value of A has no closing "/);
    assert.throws(() => parseDevVars('A=secret-value\nB="x" y', 'f'), (err: Error) => /line 2/.test(err.message) && !err.message.includes('secret-value'));
  });
});
