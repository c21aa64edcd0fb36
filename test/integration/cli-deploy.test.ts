// The operator's path through the real CLI: `fezz deploy` three new versions while traffic
// flows (every response 200, bodies switch in order, a broken fourth is refused and the
// third keeps serving), and `fezz new demo && fezz deploy demo`, then a request, as README says.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function fezz(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // --import resolves from cwd: name tsx by URL so a temp working directory works.
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

async function writeFunction(dir: string, version: string, body: string, broken = false): Promise<string> {
  const fnDir = path.join(dir, `site@${version}`);
  await mkdir(fnDir, { recursive: true });
  await writeFile(path.join(fnDir, 'fezz.json'), JSON.stringify({ id: 'site', version, entry: 'index.ts', routes: [{ method: 'GET', path: '/site' }] }));
  await writeFile(path.join(fnDir, 'index.ts'), broken
    ? 'throw new Error("cannot start on purpose");\nexport default { fetch: (): Response => new Response("never") };\n'
    : `const body: string = ${JSON.stringify(body)};\nexport default { fetch: (): Response => new Response(body) };\n`);
  return fnDir;
}

describe('fezz deploy under load', () => {
  let t: TestHost;
  let served: string;
  let work: string;
  let env: Record<string, string>;
  before(async () => {
    served = await mkdtemp(path.join(os.tmpdir(), 'fezz-served-'));
    work = await mkdtemp(path.join(os.tmpdir(), 'fezz-work-'));
    await writeFunction(served, '1.0.0', 'site v1');
    t = await startHost(served);
    env = { FEZZ_HOST: t.host.adminUrl, FEZZ_TOKEN: t.host.token };
  });
  after(async () => {
    await t.close();
    await rm(served, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  it('three CLI deploys switch the body with every response 200; a broken fourth is refused', async () => {
    const seen: Array<{ client: number; status: number; body: string }> = [];
    let running = true;
    const loops = Array.from({ length: 4 }, async (_, client) => {
      while (running) {
        const res = await fetch(`${t.url}/site`);
        seen.push({ client, status: res.status, body: await res.text() });
      }
    });
    for (const [version, body] of [['1.1.0', 'site v2'], ['1.2.0', 'site v3'], ['1.3.0', 'site v4']] as const) {
      const dir = await writeFunction(work, version, body);
      const r = await fezz(['deploy', dir], env, work);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`deployed site@${version.replace(/\./g, '\\.')}`));
      const n = seen.length;
      const deadline = Date.now() + 5000;
      while ((seen.length < n + 10 || seen[seen.length - 1]!.body !== body) && Date.now() < deadline) await sleep(10);
      assert.equal(seen[seen.length - 1]!.body, body);
    }
    const broken = await fezz(['deploy', await writeFunction(work, '1.4.0', 'site v5', true)], env, work);
    assert.notEqual(broken.code, 0);
    assert.match(broken.stderr, /FEZZ_ERR_DEPLOY_REJECTED.*cannot start on purpose/);
    const n = seen.length;
    while (seen.length < n + 20) await sleep(10);
    running = false;
    await Promise.all(loops);
    assert.deepEqual(seen.filter((s) => s.status !== 200), []);
    for (const c of [0, 1, 2, 3]) {
      const order: string[] = [];
      for (const s of seen) if (s.client === c && order[order.length - 1] !== s.body) order.push(s.body);
      const rank = order.map((b) => ['site v1', 'site v2', 'site v3', 'site v4'].indexOf(b));
      assert.ok(rank.every((r, i) => r >= 0 && (i === 0 || r > rank[i - 1]!)), `client ${c}: ${order.join(' -> ')}`);
    }
    assert.equal((await get(`${t.url}/site`)).text, 'site v4', 'the last good version keeps serving');
  });

  it('fezz new demo && fezz deploy demo, then curl, works as README says', async () => {
    const made = await fezz(['new', 'demo', '--dir', work], env, work);
    assert.equal(made.code, 0, made.stderr);
    const dir = path.join(work, 'demo@0.1.0');
    const deployed = await fezz(['deploy', dir], env, work);
    assert.equal(deployed.code, 0, deployed.stderr);
    const rpc = await get(`${t.url}/rpc/demo`);
    assert.equal(rpc.status, 200, rpc.text);
    const listed = await fezz(['list'], env, work);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /demo@0\.1\.0/);
  });
});
