// Functions delivered by a Kubernetes ConfigMap volume (docs/kubernetes.md): fezz follows the
// symbolic links kubelet makes, reloads when kubelet swaps `..data`, and refuses links that
// lead out of the functions directory (with a log line and a problem, never silently).
//
// kubeletWrite() below repeats kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) step
// by step: the payload goes into a new `..<timestamp>/` directory, a `..data_tmp` link to it is
// renamed over `..data`, the user-visible links `<name> -> ..data/<name>` are made, names no
// longer in the payload are unlinked, and the old `..<timestamp>/` is removed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';

const manifest = (id: string, version: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ id, version, entry: 'index.js', ...extra });
const source = (body: string): string => `export default { fetch: () => new Response(${JSON.stringify(body)}) };\n`;

let stamp = 0;
/**
 * Write `payload` (paths relative to the volume, '/' allowed as in projected `items[].path`)
 * into the volume at `base` as kubelet does. With `holdOld`, the old `..<timestamp>/` is kept
 * and a function removing it is returned (kubelet removes it right after the swap; holding
 * it shows that the swap alone triggers the reload).
 */
async function kubeletWrite(base: string, payload: Record<string, string>, holdOld = false): Promise<() => Promise<void>> {
  const now = new Date();
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const tsName = `..${now.getUTCFullYear()}_${p2(now.getUTCMonth() + 1)}_${p2(now.getUTCDate())}_${p2(now.getUTCHours())}_${p2(now.getUTCMinutes())}_${p2(now.getUTCSeconds())}.${process.pid}${stamp++}`;
  const dataLink = path.join(base, '..data');
  const oldTs = await readlink(dataLink).catch(() => null);
  // The top-level names of the old payload (kubelet keeps them in memory; here: read back).
  const oldTop = new Set(oldTs === null ? [] : await readdir(path.join(base, oldTs)));
  // (1) the new timestamped directory with the whole payload
  const tsDir = path.join(base, tsName);
  await mkdir(tsDir);
  for (const [rel, text] of Object.entries(payload)) {
    await mkdir(path.dirname(path.join(tsDir, rel)), { recursive: true });
    await writeFile(path.join(tsDir, rel), text, { mode: 0o644 });
  }
  // (2) ..data_tmp -> ..<timestamp>, renamed over ..data (atomic)
  const tmpLink = path.join(base, '..data_tmp');
  await symlink(tsName, tmpLink);
  await rename(tmpLink, dataLink);
  // (3) user-visible links for new top-level names, (4) removal of names no longer there
  const newTop = new Set(Object.keys(payload).map((k) => k.split('/')[0]!));
  for (const name of newTop) {
    await symlink(path.join('..data', name), path.join(base, name)).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
  }
  for (const name of oldTop) if (!newTop.has(name)) await unlink(path.join(base, name));
  // (5) the old timestamped directory
  const removeOld = async (): Promise<void> => { if (oldTs !== null) await rm(path.join(base, oldTs), { recursive: true, force: true }); };
  if (!holdOld) await removeOld();
  return removeOld;
}

async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(50);
  }
  assert.fail(`not reached within ${ms} ms: ${what}`);
}

const body = async (url: string): Promise<string> => { const r = await get(url); return `${r.status} ${r.text}`; };

describe('a projected ConfigMap volume mounted at the functions directory', () => {
  let root: string;
  let dir: string;
  let t: TestHost;
  const hello = (text: string): Record<string, string> => ({ 'hello@1.0.0/fezz.json': manifest('hello', '1.0.0'), 'hello@1.0.0/index.js': source(text) });

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fezz-configmap-'));
    dir = path.join(root, 'functions');
    await mkdir(dir);
    await kubeletWrite(dir, hello('v1'));
    t = await startHost(dir, { watch: true });
  });
  after(async () => { await t?.close(); await rm(root, { recursive: true, force: true }); });

  it('serves a function whose directory is a link through ..data', async () => {
    assert.deepEqual(t.host.problems, []);
    assert.equal(await body(`${t.url}/rpc/hello/`), '200 v1');
    assert.equal(await body(`${t.url}/rpc/hello@1.0.0/`), '200 v1');
  });

  it('reloads after kubelet\'s exact update sequence', async () => {
    await kubeletWrite(dir, hello('v2'));
    await until('v2 served', async () => (await body(`${t.url}/rpc/hello/`)) === '200 v2');
  });

  it('reloads on the ..data swap itself, before kubelet removes the old directory', async () => {
    const removeOld = await kubeletWrite(dir, hello('v3'), true);
    try {
      await until('v3 served while the old ..<timestamp>/ is still there', async () => (await body(`${t.url}/rpc/hello/`)) === '200 v3');
    } finally {
      await removeOld();
    }
    await sleep(400);
    assert.equal(await body(`${t.url}/rpc/hello/`), '200 v3', 'the removal that follows changes nothing');
  });

  it('adds and removes functions as keys come and go', async () => {
    await kubeletWrite(dir, { ...hello('v3'), 'bye@2.0.0/fezz.json': manifest('bye', '2.0.0'), 'bye@2.0.0/index.js': source('bye') });
    await until('bye served', async () => (await body(`${t.url}/rpc/bye/`)) === '200 bye');
    assert.equal(await body(`${t.url}/rpc/hello/`), '200 v3');
    await kubeletWrite(dir, hello('v4'));
    await until('bye gone and v4 served', async () => (await get(`${t.url}/rpc/bye/`)).status === 404 && (await body(`${t.url}/rpc/hello/`)) === '200 v4');
    assert.deepEqual(t.host.problems, []);
  });
});

describe('one ConfigMap per function version, mounted at <dir>/<id>@<version>/', () => {
  let root: string;
  let dir: string;
  let t: TestHost;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fezz-configmap-'));
    dir = path.join(root, 'functions');
    await mkdir(path.join(dir, 'todo@1.2.0'), { recursive: true });
    await kubeletWrite(path.join(dir, 'todo@1.2.0'), { 'fezz.json': manifest('todo', '1.2.0', { routes: [{ method: 'GET', path: '/todos' }] }), 'index.js': source('t1') });
    t = await startHost(dir, { watch: true });
  });
  after(async () => { await t?.close(); await rm(root, { recursive: true, force: true }); });

  it('serves it: fezz.json and index.js are links to ..data/', async () => {
    assert.deepEqual(t.host.problems, []);
    assert.equal(await body(`${t.url}/todos`), '200 t1');
  });

  it('reloads on the swap inside the function directory', async () => {
    const removeOld = await kubeletWrite(path.join(dir, 'todo@1.2.0'), { 'fezz.json': manifest('todo', '1.2.0', { routes: [{ method: 'GET', path: '/todos' }] }), 'index.js': source('t2') }, true);
    try {
      await until('t2 served', async () => (await body(`${t.url}/todos`)) === '200 t2');
    } finally {
      await removeOld();
    }
  });
});

describe('links that lead out of the functions directory', () => {
  let root: string;
  let dir: string;
  let t: TestHost;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fezz-configmap-'));
    dir = path.join(root, 'functions');
    const outside = path.join(root, 'outside');
    // A valid function outside the functions directory, linked in three ways.
    for (const key of ['evil@1.0.0', 'rel@1.0.0']) {
      await mkdir(path.join(outside, key), { recursive: true });
      await writeFile(path.join(outside, key, 'fezz.json'), manifest(key.split('@')[0]!, '1.0.0'));
      await writeFile(path.join(outside, key, 'index.js'), source('must not load'));
    }
    await writeFile(path.join(outside, 'secret.js'), source('secret'));
    await mkdir(dir);
    await symlink(path.join(outside, 'evil@1.0.0'), path.join(dir, 'evil@1.0.0'));
    await symlink(path.join('..', 'outside', 'rel@1.0.0'), path.join(dir, 'rel@1.0.0'));
    await symlink('/etc', path.join(dir, 'etc@1.0.0'));
    await symlink(path.join(dir, 'nowhere'), path.join(dir, 'gone@1.0.0'));
    // Inside, but its entry (or its manifest) is a link to a file outside.
    await mkdir(path.join(dir, 'entry@1.0.0'));
    await writeFile(path.join(dir, 'entry@1.0.0', 'fezz.json'), manifest('entry', '1.0.0'));
    await symlink(path.join(outside, 'secret.js'), path.join(dir, 'entry@1.0.0', 'index.js'));
    await mkdir(path.join(dir, 'mf@1.0.0'));
    await writeFile(path.join(dir, 'mf@1.0.0', 'index.js'), source('mf'));
    await writeFile(path.join(outside, 'mf.json'), manifest('mf', '1.0.0'));
    await symlink(path.join(outside, 'mf.json'), path.join(dir, 'mf@1.0.0', 'fezz.json'));
    // A link inside the functions directory is followed.
    await mkdir(path.join(dir, '.store', 'ok@1.0.0'), { recursive: true });
    await writeFile(path.join(dir, '.store', 'ok@1.0.0', 'fezz.json'), manifest('ok', '1.0.0'));
    await writeFile(path.join(dir, '.store', 'ok@1.0.0', 'index.js'), source('ok'));
    await symlink(path.join('.store', 'ok@1.0.0'), path.join(dir, 'ok@1.0.0'));
    t = await startHost(dir);
  });
  after(async () => { await t?.close(); await rm(root, { recursive: true, force: true }); });

  it('does not load them, and says why in a log line and in problems', async () => {
    for (const id of ['evil', 'rel', 'etc', 'gone', 'entry', 'mf']) assert.equal((await get(`${t.url}/rpc/${id}/`)).status, 404, id);
    assert.equal(await body(`${t.url}/rpc/ok/`), '200 ok', 'a link inside the functions directory is followed');
    const problem = (name: string): { code: string; message: string } | undefined => t.host.problems.find((p) => p.file.endsWith(name) || p.file.endsWith(`${name}/fezz.json`));
    for (const name of ['evil@1.0.0', 'rel@1.0.0', 'etc@1.0.0']) {
      const p = problem(name);
      assert.ok(p, `a problem for ${name}: ${JSON.stringify(t.host.problems)}`);
      assert.equal(p.code, 'FEZZ_ERR_MANIFEST_INVALID');
      assert.match(p.message, /not inside the functions directory/);
      const line = t.logs.find((l) => l.level === 50 && typeof l.file === 'string' && l.file.endsWith(name));
      assert.ok(line, `an error log line names ${name}`);
      assert.match(line.msg, /function not served: .*symbolic link to .* not followed/);
    }
    assert.match(problem('gone@1.0.0')?.message ?? '', /does not resolve \(ENOENT\)/);
    assert.equal(problem('entry@1.0.0')?.code, 'FEZZ_ERR_ENTRY_OUTSIDE');
    assert.match(problem('mf@1.0.0')?.message ?? '', /symbolic link to a file outside the function directory/);
    assert.equal(t.host.problems.length, 6, JSON.stringify(t.host.problems));
  });
});
