// Issue 11: the host caps isolation. With `isolation: 'sandbox'` (`fezz serve --isolation
// sandbox`), an isolate function runs sandboxed though its manifest does not ask for it, and
// an inline function (no isolation at all) is not served, with the reason. The library's
// default lets each manifest choose; `fezz serve` defaults to sandbox, `fezz serve --dev` to
// threads, and each says which at start-up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { get, startHost } from '../helpers/host.js';
import { ROOT } from '../helpers/chaos-host.js';
import { CLI } from '../helpers/cli.js';

/** `fezz serve` (from the sources) on `dir` with `args`; its log until it listens, and a GET helper. */
async function serve(dir: string, args: string[]): Promise<{ log: string; fetchText(p: string): Promise<{ status: number; text: string }>; stop(): Promise<void> }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) env[k] = v;
  env.FEZZ_TOKEN_FILE = path.join(dir, '..', `token-${path.basename(dir)}`);
  const child = spawn(process.execPath, [...CLI, 'serve', '--dir', dir, '--port', '0', '--admin-port', '0', '--no-watch', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in: ${log}`)), 30_000);
    const check = (): void => {
      const m = /fezz listening on (http:\/\/[0-9.:]+)/.exec(log); // JSON logs, or pretty ones with --dev
      if (m && /isolation: /.test(log)) { clearTimeout(timer); resolve(m[1]!); } else setTimeout(check, 50);
    };
    check();
  });
  return {
    log,
    fetchText: async (p) => { const r = await fetch(url + p); return { status: r.status, text: await r.text() }; },
    stop: async () => { child.kill('SIGTERM'); await exited; },
  };
}

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

const WHO = 'export default { fetch: () => new Response(String(process.getuid())) };\n';

describe('the host caps isolation', { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-host-isolation-'));
    for (const [id, extra] of [['who', {}], ['quick', { runtime: 'inline' }]] as const) {
      await mkdir(path.join(dir, `${id}@1.0.0`));
      await writeFile(path.join(dir, `${id}@1.0.0`, 'index.js'), WHO);
      await writeFile(path.join(dir, `${id}@1.0.0`, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', ...extra }));
    }
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('by default the manifest decides: a thread (the host\'s uid)', async () => {
    const t = await startHost(dir);
    try {
      assert.equal((await get(`${t.url}/rpc/who`)).text, String(process.getuid!()));
      assert.equal((await get(`${t.url}/rpc/quick`)).status, 200);
    } finally { await t.close(); }
  });

  it('with isolation "sandbox", every isolate function is sandboxed and inline ones are refused', async () => {
    const t = await startHost(dir, { isolation: 'sandbox' });
    try {
      assert.equal((await get(`${t.url}/rpc/who`)).text, '65534');
      assert.equal((await get(`${t.url}/rpc/quick`)).status, 404);
      const p = t.host.problems.find((x) => x.file.includes('quick@1.0.0'));
      assert.match(p?.message ?? '', /inline.*--isolation sandbox does not allow/);
    } finally { await t.close(); }
  });

  it('fezz serve sandboxes by default and says so; --dev and --isolation thread run threads and warn', async () => {
    let h = await serve(dir, []);
    try {
      assert.match(h.log, /isolation: every function \(isolate, process, native\) runs in a bubblewrap sandbox \(the default/);
      assert.equal((await h.fetchText('/rpc/who')).text, '65534');
      assert.equal((await h.fetchText('/rpc/quick')).status, 404, 'inline is refused under the default');
    } finally { await h.stop(); }
    for (const args of [['--dev'], ['--isolation', 'thread']]) {
      h = await serve(dir, args);
      try {
        assert.match(h.log, new RegExp(`isolation: functions run as hardened worker threads \\(${args.join(' ')}\\)`));
        assert.equal((await h.fetchText('/rpc/who')).text, String(process.getuid!()));
        assert.equal((await h.fetchText('/rpc/quick')).status, 200);
      } finally { await h.stop(); }
    }
  });
});
