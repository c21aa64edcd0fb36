// Issue 13, item 3: versions are immutable on a host too. POST /admin/deploy of an
// `<id>@<version>` already in the functions directory with other content is a 409
// (FEZZ_ERR_VERSION_EXISTS) unless `?replace=1`; the same content again is a 200 that
// restarts nothing (idempotent); `fezz deploy --replace` sends `?replace=1`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { get, startHost, type TestHost } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Answer { status: number; body: { code?: string; message?: string; key?: string; status?: string; unchanged?: boolean } }

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const manifest = (id: string, version: string): string => JSON.stringify({ id, version, entry: 'index.js' });
/** Counts its requests in module state: a restart starts again from 1. */
const counter = (tag: string): string => `let n = 0;\nexport default { fetch: () => new Response(${JSON.stringify(tag)} + ' ' + (++n)) };\n`;

describe('immutable versions on a host', () => {
  let t: TestHost;
  let dir: string;
  let work: string;

  const deploy = async (files: Record<string, string>, query = '', modes?: Record<string, number>): Promise<Answer> => {
    const res = await fetch(`${t.host.adminUrl}/admin/deploy${query}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.host.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(modes === undefined ? { files } : { files, modes }),
    });
    return { status: res.status, body: await res.json() as Answer['body'] };
  };
  const rpc = async (fn: string): Promise<string> => (await get(`${t.url}/rpc/${fn}`)).text;

  before(async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'fezz-immutable-'));
    dir = path.join(root, 'functions');
    work = path.join(root, 'work');
    await mkdir(dir, { recursive: true });
    await mkdir(work);
    // A version put in the directory by hand that does not start.
    await mkdir(path.join(dir, 'broken@1.0.0'));
    await writeFile(path.join(dir, 'broken@1.0.0', 'fezz.json'), manifest('broken', '1.0.0'));
    await writeFile(path.join(dir, 'broken@1.0.0', 'index.js'), 'throw new Error("broken on purpose");\n');
    t = await startHost(dir);
  });
  after(async () => {
    await t.close();
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  it('the same content again is a 200 that restarts nothing; other content is a 409; ?replace=1 replaces it', async () => {
    const v1 = { 'fezz.json': b64(manifest('imm', '1.0.0')), 'index.js': b64(counter('one')) };
    const first = await deploy(v1);
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.deepEqual(first.body, { key: 'imm@1.0.0', status: 'serving' });
    assert.equal(await rpc('imm'), 'one 1');
    assert.equal(await rpc('imm'), 'one 2');

    const same = await deploy(v1);
    assert.equal(same.status, 200, JSON.stringify(same.body));
    assert.deepEqual(same.body, { key: 'imm@1.0.0', status: 'serving', unchanged: true });
    assert.equal(await rpc('imm'), 'one 3', 'the instance kept its state: nothing restarted');
    assert.ok(t.logs.some((l) => l.msg === 'deploy of an identical version: nothing to do' && l.fn === 'imm@1.0.0'));

    const other = { 'fezz.json': b64(manifest('imm', '1.0.0')), 'index.js': b64(counter('two')) };
    const refused = await deploy(other);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'FEZZ_ERR_VERSION_EXISTS');
    assert.match(refused.body.message!, /imm@1\.0\.0 is already deployed to this host with other content: .*replace=1/);
    assert.equal(await rpc('imm'), 'one 4', 'the version in place keeps serving, untouched');

    // Another mode on a file is other content too.
    const modeOnly = await deploy(v1, '', { 'index.js': 0o755 });
    assert.equal(modeOnly.status, 409, JSON.stringify(modeOnly.body));

    for (const q of ['?replace=0', '?replace=false']) {
      const r = await deploy(other, q);
      assert.equal(r.status, 409, `${q}: ${JSON.stringify(r.body)}`);
    }
    const bad = await deploy(other, '?replace=yes');
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.equal(bad.body.code, 'FEZZ_ERR_BAD_REQUEST');

    const replaced = await deploy(other, '?replace=1');
    assert.equal(replaced.status, 201, JSON.stringify(replaced.body));
    assert.equal(await rpc('imm'), 'two 1');
    const replacedAgain = await deploy(other, '?replace=1');
    assert.equal(replacedAgain.status, 200, 'replace with the same content is still idempotent');
    assert.equal(await rpc('imm'), 'two 2');
    assert.ok(!(await readdir(dir)).includes('.fezz-staging'));
  });

  it('a version in the directory that does not start is immutable too, unless replaced', async () => {
    assert.equal((await get(`${t.url}/rpc/broken`)).status, 500, 'it fails to start');
    const fixed = { 'fezz.json': b64(manifest('broken', '1.0.0')), 'index.js': b64(counter('fixed')) };
    const refused = await deploy(fixed);
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'FEZZ_ERR_VERSION_EXISTS');
    const replaced = await deploy(fixed, '?replace=true');
    assert.equal(replaced.status, 201, JSON.stringify(replaced.body));
    assert.equal(await rpc('broken'), 'fixed 1');
  });

  it('fezz deploy --replace replaces a version on a real host; without it the CLI refuses', async () => {
    const fn = path.join(work, 'cli');
    await mkdir(fn, { recursive: true });
    await writeFile(path.join(fn, 'fezz.json'), JSON.stringify({ id: 'clifn', version: '1.0.0', entry: 'index.ts' }));
    const write = (body: string): Promise<void> => writeFile(path.join(fn, 'index.ts'), `export default { fetch: (): Response => new Response(${JSON.stringify(body)}) };\n`);
    const env = { ...process.env, FEZZ_HOST: t.host.adminUrl, FEZZ_TOKEN: t.host.token };
    const fezz = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
      const child = spawn(process.execPath, [...CLI, ...args], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c; });
      child.stderr.on('data', (c: Buffer) => { stderr += c; });
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    await write('cli one');
    const first = await fezz(['deploy', fn]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await rpc('clifn'), 'cli one');
    await write('cli two');
    const refused = await fezz(['deploy', fn]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /already deployed .*--replace/);
    const replaced = await fezz(['deploy', fn, '--replace']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal(replaced.stdout, 'deployed clifn@1.0.0\n');
    assert.equal(await rpc('clifn'), 'cli two');
    const same = await fezz(['deploy', fn, '--replace']);
    assert.equal(same.code, 0, same.stderr);
    assert.equal(same.stdout, 'clifn@1.0.0 is already deployed with the same content: nothing changed\n');
  });
});
