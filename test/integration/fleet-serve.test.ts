// `fezz serve --source s3://…` as an operator runs it (issue 13, items 1 and 3 together):
// the real CLI, a local S3 store (s3rver behind the conditional-write proxy of
// test/helpers/s3-conditional.ts), `--workers 2`.
// - the initial sync runs before the port opens: the first request finds the function;
// - a later `fezz deploy --to` reaches both host processes (each answers it);
// - the AWS keys given to `fezz serve` are not in the environment of a function.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sleep } from '../helpers/host.js';
import { S3RVER_CREDENTIALS, startLocalS3, type LocalS3 } from '../helpers/s3-conditional.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOURCE = 's3://fleet/prod';
const run = promisify(execFile);

async function fnDir(root: string, id: string, body: string): Promise<string> {
  const d = path.join(root, `${id}@1.0.0`);
  await mkdir(d, { recursive: true });
  await writeFile(path.join(d, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: `/${id}` }] }));
  await writeFile(path.join(d, 'index.js'), body);
  return d;
}

function getFresh(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}

describe('fezz serve --source s3://… --workers 2', () => {
  let s3: LocalS3;
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess | null = null;
  let out = '';

  before(async () => {
    s3 = await startLocalS3(['fleet']);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-fleet-serve-'));
    env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('NODE_TEST') && !k.startsWith('FEZZ_')) env[k] = v;
    Object.assign(env, { AWS_ENDPOINT_URL: s3.url, AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' });
  });

  after(async () => {
    if (child !== null && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => { const t = setTimeout(r, 8000); child!.once('exit', () => { clearTimeout(t); r(null); }); });
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    await s3.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('serves what the store holds from its first request, and follows later deploys in every process', async () => {
    const src = path.join(tmp, 'src');
    // A function that reports whether the host's AWS keys reached it.
    const first = await fnDir(src, 'first', 'export default { fetch(req, env) { const leaked = typeof process !== "undefined" && process.env && Object.keys(process.env).some((k) => k.startsWith("AWS_SECRET") || k.startsWith("AWS_ACCESS")); return new Response(`first leaked=${leaked} env=${Object.keys(env).filter((k) => k.startsWith("AWS")).length}`); } };');
    await run(process.execPath, [...CLI, 'deploy', first, '--to', SOURCE], { cwd: ROOT, env });

    const fns = path.join(tmp, 'functions');
    await mkdir(fns);
    child = spawn(process.execPath, [...CLI, 'serve', '--dir', fns, '--source', SOURCE, '--workers', '2', '--port', '0', '--admin-port', '0',
      '--isolation', 'thread', '--token-file', path.join(tmp, 'token'), '--drain-delay', '0', '--no-watch', '--cache-dir', path.join(tmp, 'cache')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
    const deadline = Date.now() + 60_000;
    while (!/fezz listening on/.test(out)) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`fezz serve --source did not start:\n${out}`);
      await sleep(100);
    }
    const { url, admin } = JSON.parse(out.split('\n').find((l) => l.includes('fezz listening on'))!) as { url: string; admin: string };
    // The very first request: synced before the port opened.
    const r1 = await getFresh(`${url}/first`);
    assert.equal(r1.status, 200, JSON.stringify(r1));
    assert.equal(r1.body, 'first leaked=false env=0');

    // A later deploy reaches both processes within 3 s.
    const second = await fnDir(src, 'second', 'export default { fetch() { return new Response("second"); } };');
    await run(process.execPath, [...CLI, 'deploy', second, '--to', SOURCE], { cwd: ROOT, env });
    const t0 = Date.now();
    let served = false;
    while (Date.now() - t0 < 3000) {
      const got = await Promise.all(Array.from({ length: 10 }, () => getFresh(`${url}/second`)));
      if (got.every((g) => g.status === 200 && g.body === 'second')) { served = true; break; }
      await sleep(100);
    }
    assert.ok(served, `served by every connection within 3 s of the deploy:\n${out.slice(-3000)}`);
    const token = (await readFile(path.join(tmp, 'token'), 'utf8')).trim();
    const stats = await (await fetch(`${admin}/admin/stats`, { headers: { authorization: `Bearer ${token}` } })).json() as { functions: Record<string, { requests: number }>; workers: Array<{ requests: number }> };
    assert.ok(stats.workers.every((w) => w.requests > 0), `both processes answered: ${JSON.stringify(stats.workers)}`);
    assert.ok(!out.includes(S3RVER_CREDENTIALS.secretAccessKey + '"'), 'the secret key is in no log line');
  });
});
