// Issue 11, "Secrets out of reach": the admin token is never in the host's environment, its
// command line or a log line; it lives in a 0600 file the CLI reads; `fezz serve` runs with
// --zero-fill-buffers. The reporter function runs inline (on the host's own thread), so it
// sees exactly what the host process has.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKEN = 'secret-admin-token-' + 'x'.repeat(24);
const DIR = path.join(FIXTURES, 'secrets');

interface Served { child: ChildProcess; url: string; admin: string; out: () => string; stop(): Promise<number | null> }

/** Start `fezz serve` (through `bin/fezz.js`, the launcher users run, or the sources). */
function serve(launcher: 'bin' | 'src', args: string[], env: Record<string, string | undefined>): Promise<Served> {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) childEnv[k] = v;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  const entry = launcher === 'bin' ? [path.join(ROOT, 'bin', 'fezz.js')] : [...CLI];
  const child = spawn(process.execPath, [...entry, 'serve', '--dir', DIR, '--port', '0', '--admin-port', '0', '--no-watch', '--isolation', 'thread', ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in: ${out}`)), 30_000);
    const check = (): void => {
      const m = /"url":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)".*fezz listening/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, admin: m[2]!, out: () => out, stop: async () => { child.kill('SIGTERM'); return exited; } });
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`exited with ${code}: ${out}`)); });
  });
}

/** Wait until `re` matches what the host printed so far. */
async function printed(s: Served, re: RegExp): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!re.test(s.out()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.match(s.out(), re);
}

describe('the admin token and freed memory are out of a function\'s reach', () => {
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-secrets-')); });
  after(async () => { await rm(tmp, { recursive: true, force: true }); });

  it('FEZZ_TOKEN leaves the environment; the launcher adds --zero-fill-buffers (and --max-semi-space-size=16 where it relaunches in place)', { timeout: 60_000 }, async () => {
    assert.ok(existsSync(path.join(ROOT, 'dist', 'cli', 'bin.js')), 'dist/ is built (npm ci runs npm run build)');
    const s = await serve('bin', [], { FEZZ_TOKEN: TOKEN });
    try {
      const r = await (await fetch(`${s.url}/rpc/reporter?token=${TOKEN}`)).json() as Record<string, boolean>;
      assert.deepEqual(r, { zeroFill: true, envHasToken: false, envHasName: false, reportHasToken: false, argvHasToken: false, youngGeneration16: true, unsafeIsZero: true });
      const admin = await fetch(`${s.admin}/admin/functions`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(admin.status, 200, 'the token from the environment still opens the admin API');
      assert.doesNotMatch(s.out(), new RegExp(TOKEN), 'the token is in no log line');
    } finally { assert.equal(await s.stop(), 0); }
  });

  it('with no token, one is made in a 0600 file that the CLI reads, and never printed', { timeout: 60_000 }, async () => {
    const file = path.join(tmp, 'state', 'admin-token');
    const s = await serve('src', [], { FEZZ_TOKEN_FILE: file });
    try {
      const st = await stat(file);
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
      const token = (await readFile(file, 'utf8')).trim();
      assert.match(token, /^[0-9a-f]{64}$/);
      assert.doesNotMatch(s.out(), new RegExp(token), 'the token is in no log line');
      await printed(s, /admin token for .* is in .*admin-token/);
      const r = await (await fetch(`${s.url}/rpc/reporter?token=${token}`)).json() as Record<string, boolean>;
      assert.equal(r.envHasToken || r.reportHasToken || r.argvHasToken, false, JSON.stringify(r));
      // `fezz list` finds the host's token through the same file.
      const list = spawn(process.execPath, [...CLI, 'list', '--json'],
        { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, FEZZ_HOST: s.admin, FEZZ_TOKEN_FILE: file }, stdio: ['ignore', 'pipe', 'pipe'] });
      let listOut = '';
      list.stdout!.on('data', (d: Buffer) => { listOut += d.toString(); });
      list.stderr!.on('data', (d: Buffer) => { listOut += d.toString(); });
      assert.equal(await new Promise((r) => list.on('exit', r)), 0, listOut);
      assert.match(listOut, /reporter@1\.0\.0/);
    } finally { await s.stop(); }
  });

  it('a token file others can read is refused with the fix', { timeout: 30_000 }, async () => {
    const file = path.join(tmp, 'loose-token');
    await writeFile(file, TOKEN);
    await chmod(file, 0o644);
    await assert.rejects(serve('src', ['--token-file', file], {}), /chmod 600/);
  });

  it('a token on the command line works but is warned about', { timeout: 60_000 }, async () => {
    const s = await serve('src', ['--token', TOKEN], {});
    try {
      await printed(s, /process list/);
    } finally { await s.stop(); }
  });
});
