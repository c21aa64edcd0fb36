// A connection flood up to the file-descriptor limit (the host runs under `ulimit -n 256`):
// the connection cap keeps descriptors in reserve, so /healthz, the admin API and a plugin
// that starts during the flood all keep working, and the host stays up.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXAMPLES } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOKEN = 'flood-test-token-0123456789abcdef';
const FD_LIMIT = 256;

/** One request on a fresh connection; resolves with the status, or 0 if the connection failed. */
function statusOf(port: number, target: string, headers = ''): Promise<number> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET ${target} HTTP/1.1\r\nhost: x\r\n${headers}connection: close\r\n\r\n`));
    let text = '';
    const timer = setTimeout(() => { sock.destroy(); resolve(0); }, 10_000);
    sock.on('data', (d) => { text += d.toString('latin1'); });
    sock.on('error', () => undefined);
    sock.on('close', () => { clearTimeout(timer); resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)); });
  });
}

describe(`a connection flood at the fd limit (ulimit -n ${FD_LIMIT})`, () => {
  let dir: string;
  let child: ChildProcess;
  let port = 0;
  let adminPort = 0;
  let out = '';
  const flood: net.Socket[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-flood-'));
    await cp(path.join(EXAMPLES, 'hello@1.0.0'), path.join(dir, 'hello@1.0.0'), { recursive: true });
    const py = path.join(dir, 'py@1.0.0');
    await mkdir(py);
    await writeFile(path.join(py, 'fezz.json'), JSON.stringify({ id: 'py', version: '1.0.0', entry: 'main.py', runtime: 'process' }));
    await writeFile(path.join(py, 'main.py'), [
      '#!/usr/bin/env python3',
      'import sys',
      'sys.dont_write_bytecode = True',
      `sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'sdk', 'python'))})`,
      'import fezz',
      'fezz.serve(lambda req: fezz.Response.text(200, "py ok"))',
      '',
    ].join('\n'));
    await chmod(path.join(py, 'main.py'), 0o755);
    child = spawn('bash', ['-c', `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`, process.execPath, ...CLI, 'serve', '--dir', dir, '--port', '0', '--admin-port', '0', '--no-watch', '--isolation', 'thread', '--token', TOKEN],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => { out += c; });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line in: ${out}`)), 30_000);
      child.stdout!.on('data', (c: string) => {
        out += c;
        const m = /"url":"http:\/\/127\.0\.0\.1:(\d+)","admin":"http:\/\/127\.0\.0\.1:(\d+)".*fezz listening/.exec(out);
        if (m && port === 0) { port = Number(m[1]); adminPort = Number(m[2]); clearTimeout(timer); resolve(); }
      });
      child.on('exit', (code) => reject(new Error(`exited early with ${code}: ${out}`)));
    });
  });

  after(async () => {
    for (const s of flood) s.destroy();
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('healthz, the admin API and a plugin start keep working; the host stays up', { timeout: 90_000 }, async () => {
    assert.equal(await statusOf(port, '/rpc/hello'), 200);
    // Twice the fd limit of idle connections, opened as fast as the host accepts them.
    for (let i = 0; i < FD_LIMIT * 2; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      flood.push(s);
      await new Promise((r) => { s.once('connect', r); s.once('close', r); });
    }
    const open = flood.filter((s) => !s.destroyed && s.readyState === 'open').length;
    assert.ok(child.exitCode === null, `host alive: ${out.slice(-2000)}`);
    assert.equal(await statusOf(port, '/healthz'), 200, 'healthz during the flood');
    assert.equal(await statusOf(adminPort, '/admin/functions', `authorization: Bearer ${TOKEN}\r\n`), 200, 'admin API during the flood');
    assert.equal(await statusOf(port, '/rpc/py/x'), 200, `a plugin started during the flood: ${out.slice(-3000)}`);
    assert.equal(await statusOf(port, '/rpc/hello'), 200);
    assert.ok(child.exitCode === null, 'host alive');
    assert.doesNotMatch(out, /EMFILE/, 'no descriptor ran out');
    assert.ok(open > 0, `${open} flood connections open`);
  });
});
