// Hot reload under steady load: deploys through the admin API and edits in the watched
// directory switch traffic from one version to the next with every response a 200; a broken
// version is refused and the previous one keeps serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';

const manifest = (version: string) => JSON.stringify({ id: 'live', version, entry: 'index.js', routes: [{ method: 'GET', path: '/live' }] });
const source = (body: string) => `export default { fetch: () => new Response(${JSON.stringify(body)}) };\n`;

async function writeVersion(dir: string, version: string, body: string, broken = false): Promise<void> {
  // Write beside, then rename in: the watcher sees a whole directory appear.
  const tmp = path.join(dir, `.tmp-${version}`);
  await mkdir(tmp, { recursive: true });
  await writeFile(path.join(tmp, 'fezz.json'), manifest(version));
  await writeFile(path.join(tmp, 'index.js'), broken ? 'throw new Error("broken on purpose");\n' : source(body));
  await rename(tmp, path.join(dir, `live@${version}`));
}

/** Keep `clients` keep-alive loops requesting `/live` until `stop()`; record every answer. */
function steadyLoad(url: string, clients = 6) {
  const seen: Array<{ client: number; status: number; body: string }> = [];
  let running = true;
  const loops = Array.from({ length: clients }, async (_, client) => {
    while (running) {
      const res = await fetch(`${url}/live`);
      seen.push({ client, status: res.status, body: await res.text() });
    }
  });
  return {
    seen,
    last: () => seen[seen.length - 1]?.body,
    async stop() { running = false; await Promise.all(loops); },
  };
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await sleep(20);
  assert.ok(cond(), 'condition reached in time');
}

/**
 * What each client saw, in order, with repeats collapsed. A client sends one request at a
 * time, so once it got the new version it must never get the old one again. (Across
 * clients, completions of requests in flight during the switch may interleave.)
 */
function assertSwitchesInOrder(seen: Array<{ client: number; body: string }>, versions: string[]): void {
  const clients = new Set(seen.map((s) => s.client));
  let sawAll = false;
  for (const c of clients) {
    const out: string[] = [];
    for (const s of seen) if (s.client === c && out[out.length - 1] !== s.body) out.push(s.body);
    const positions = out.map((b) => versions.indexOf(b));
    assert.ok(positions.every((p, i) => p !== -1 && (i === 0 || p > positions[i - 1]!)), `client ${c} saw ${out.join(' -> ')}`);
    if (out.length === versions.length) sawAll = true;
  }
  assert.ok(sawAll, 'some client saw every version');
}

describe('deploy through the admin API under load', () => {
  let t: TestHost;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-reload-'));
    await writeVersion(dir, '1.0.0', 'v1');
    t = await startHost(dir);
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  const deploy = (version: string, body: string, broken = false, replace = false) => fetch(`${t.host.adminUrl}/admin/deploy${replace ? '?replace=1' : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.host.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ files: {
      'fezz.json': Buffer.from(manifest(version)).toString('base64'),
      'index.js': Buffer.from(broken ? 'throw new Error("broken on purpose");\n' : source(body)).toString('base64'),
    } }),
  });

  it('three deploys switch traffic v1 -> v2 -> v3 with every response 200; a broken fourth is refused', async () => {
    const load = steadyLoad(t.url);
    await until(() => load.seen.length > 20);
    for (const [version, body] of [['1.1.0', 'v2'], ['1.2.0', 'v3']] as const) {
      const res = await deploy(version, body);
      assert.equal(res.status, 201, await res.clone().text());
      assert.deepEqual(await res.json(), { key: `live@${version}`, status: 'serving' });
      const n = load.seen.length;
      await until(() => load.seen.length > n + 20 && load.last() === body);
    }
    // Re-deploying the same version with new code is refused (versions are immutable)...
    const refused = await deploy('1.2.0', 'v3b');
    assert.equal(refused.status, 409);
    assert.equal((await refused.json() as { code: string }).code, 'FEZZ_ERR_VERSION_EXISTS');
    // ...unless replaced explicitly: then it is replaced in place.
    const again = await deploy('1.2.0', 'v3b', false, true);
    assert.equal(again.status, 201);
    await until(() => load.last() === 'v3b');
    const broken = await deploy('1.3.0', 'v4', true);
    assert.equal(broken.status, 422);
    const err = await broken.json() as { code: string; message: string };
    assert.equal(err.code, 'FEZZ_ERR_DEPLOY_REJECTED');
    assert.match(err.message, /broken on purpose/);
    const n = load.seen.length;
    await until(() => load.seen.length > n + 50);
    await load.stop();
    const bad = load.seen.filter((s) => s.status !== 200);
    assert.deepEqual(bad, [], 'every response during the deploys is a 200');
    assertSwitchesInOrder(load.seen, ['v1', 'v2', 'v3', 'v3b']);
    assert.equal((await get(`${t.url}/rpc/live@1.0.0`)).text, 'v1', 'older versions stay addressable');
    assert.equal((await get(`${t.url}/rpc/live@1.3.0`)).status, 404, 'the refused version is not served');
  });

  it('deploy rejects paths that escape the function directory', async () => {
    for (const bad of ['../evil.js', '/abs.js', 'a/../../b.js']) {
      const res = await fetch(`${t.host.adminUrl}/admin/deploy`, {
        method: 'POST', headers: { authorization: `Bearer ${t.host.token}` },
        body: JSON.stringify({ files: { 'fezz.json': Buffer.from(manifest('9.9.9')).toString('base64'), [bad]: 'eA==' } }),
      });
      assert.equal(res.status, 400, bad);
    }
  });

  it('a deploy whose routes collide with another function is refused before it replaces anything', async () => {
    const other = JSON.stringify({ id: 'other', version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: '/live' }] });
    const res = await fetch(`${t.host.adminUrl}/admin/deploy`, {
      method: 'POST', headers: { authorization: `Bearer ${t.host.token}` },
      body: JSON.stringify({ files: { 'fezz.json': Buffer.from(other).toString('base64'), 'index.js': Buffer.from(source('other')).toString('base64') } }),
    });
    assert.equal(res.status, 422);
    const err = await res.json() as { code: string; message: string };
    assert.equal(err.code, 'FEZZ_ERR_DEPLOY_REJECTED');
    assert.match(err.message, /GET \/live of other@1\.0\.0 is already claimed by live@/);
    assert.equal((await get(`${t.url}/rpc/other`)).status, 404);
    assert.equal((await get(`${t.url}/live`)).status, 200);
  });

  it('delete stops routing to a version', async () => {
    const res = await fetch(`${t.host.adminUrl}/admin/functions/live/1.0.0`, { method: 'DELETE', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(res.status, 200);
    assert.equal((await get(`${t.url}/rpc/live@1.0.0`)).status, 404);
    assert.equal((await get(`${t.url}/live`)).status, 200);
    const again = await fetch(`${t.host.adminUrl}/admin/functions/live/1.0.0`, { method: 'DELETE', headers: { authorization: `Bearer ${t.host.token}` } });
    assert.equal(again.status, 404);
  });
});

describe('edits in the watched directory under load', () => {
  let t: TestHost;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-watch-'));
    await writeVersion(dir, '1.0.0', 'w1');
    t = await startHost(dir, { watch: true });
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  it('new version dirs and in-place edits switch traffic with every response 200; a broken one is ignored', async () => {
    const load = steadyLoad(t.url);
    await until(() => load.seen.length > 20);
    await writeVersion(dir, '2.0.0', 'w2');
    await until(() => load.last() === 'w2');
    await writeVersion(dir, '3.0.0', 'w3');
    await until(() => load.last() === 'w3');
    // Edit the serving version in place (an atomic save: write beside, rename over).
    const file = path.join(dir, 'live@3.0.0', 'index.js');
    await writeFile(`${file}.swp`, source('w3-edited'));
    await rename(`${file}.swp`, file);
    await until(() => load.last() === 'w3-edited');
    await writeVersion(dir, '4.0.0', 'w4', true);
    await until(() => t.host.problems.some((p) => p.file.includes('live@4.0.0')));
    const n = load.seen.length;
    await until(() => load.seen.length > n + 50);
    await load.stop();
    assert.deepEqual(load.seen.filter((s) => s.status !== 200), []);
    assertSwitchesInOrder(load.seen, ['w1', 'w2', 'w3', 'w3-edited']);
    assert.match(t.host.problems.find((p) => p.file.includes('live@4.0.0'))!.message, /broken on purpose/);
  });
});
