// Graceful shutdown of a real `fezz serve` process: SIGTERM during slow requests lets each
// of them finish with 200, refuses new connections, stops the workers and exits 0.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function request(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A fresh connection per request (agent: false), as separate clients would have.
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

describe('graceful shutdown', () => {
  it('SIGTERM: in-flight slow requests complete 200, new connections are refused, exit 0', async () => {
    const child = spawn(process.execPath, [...CLI, 'serve',
      '--dir', path.join(FIXTURES, 'ops'), '--port', '0', '--admin-port', '0', '--no-watch', '--isolation', 'thread',
      // No drain delay: the listener closes at once (the delay is rolling-restart.test.ts's).
      '--drain-delay', '0'],
      // A token file of its own, not the user's ~/.fezz/admin-token.
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEZZ_TOKEN_FILE: path.join(os.tmpdir(), `fezz-shutdown-token-${process.pid}`) } });
    let out = '';
    child.stdout.setEncoding('utf8');
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line in: ${out}`)), 20_000);
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        const m = /"url":"(http:\/\/[^"]+)".*fezz listening/.exec(out);
        if (m) { clearTimeout(timer); resolve(m[1]!); }
      });
      child.on('exit', (code) => reject(new Error(`exited early with ${code}: ${out}`)));
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

    const inflight = Array.from({ length: 5 }, () => request(`${url}/slow?ms=1500`));
    await new Promise((r) => setTimeout(r, 400));
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(request(`${url}/slow?ms=1`), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED', 'new connections are refused');
    const results = await Promise.all(inflight);
    for (const r of results) assert.deepEqual(r, { status: 200, body: 'slept 1500' });
    assert.equal(await exited, 0);
    assert.match(out, /shutting down/);
    assert.match(out, /"msg":"stopped"/);
  });
});
