// Issue 11: the sandbox's seccomp filter (src/runtime/sandbox/seccomp.ts) is in force: the
// process reports a filter (Seccomp: 2), and an internet socket cannot even be created, on
// loopback either (EACCES), while unix sockets (the host channel, the egress proxy) work.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { seccompFilter } from '../../src/runtime/sandbox/seccomp.js';
import { get, startHost, type TestHost } from '../helpers/host.js';

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

const PROBE = `import { createServer } from 'node:net';
export default { async fetch() {
  const status = await (await import('node:fs')).promises.readFile('/proc/self/status', 'utf8');
  const seccomp = /^Seccomp:\\s*(\\d)/m.exec(status)?.[1] ?? '?';
  const listen = await new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err) => resolve(err.code));
    s.listen(0, '127.0.0.1', () => { s.close(); resolve('listening'); });
  });
  return Response.json({ seccomp, listen });
} };
`;

describe('the sandbox seccomp filter', { skip }, () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-seccomp-'));
    await chmod(dir, 0o755); // granted files are bound by bwrap running as the sandbox's uid
    await mkdir(path.join(dir, 'probe@1.0.0'));
    await writeFile(path.join(dir, 'probe@1.0.0', 'index.js'), PROBE);
    await writeFile(path.join(dir, 'probe@1.0.0', 'fezz.json'), JSON.stringify({ id: 'probe', version: '1.0.0', entry: 'index.js', isolation: 'sandbox', permissions: { outbound: ['127.0.0.1:1'], files: ['none'] } }));
    t = await startHost(dir);
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  it('is built here (python3-seccomp), is in force, and refuses internet sockets', async () => {
    const filter = seccompFilter(os.tmpdir());
    assert.notEqual(filter.file, null, filter.reason);
    const r = await get(`${t.url}/rpc/probe`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(JSON.parse(r.text), { seccomp: '2', listen: 'EACCES' });
  });
});
