// Issue 11: what a sandbox sends the host is untrusted. A sandboxed function can write to its
// own end of the host channel (fd 3) directly; a malformed response message gets its request a
// 500, and a frame announcing more bytes than the sandbox may send ends that sandbox only.
// The host and another function keep answering.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { get, startHost, type TestHost } from '../helpers/host.js';

const availability = await probeSandbox();
if (!availability.ok && process.env.CI === 'true') throw new Error(`CI: bubblewrap must run here: ${availability.reason}`);
const skip = availability.ok ? false : `bubblewrap cannot run here: ${availability.reason}`;

const FORGER = `import { writeSync } from 'node:fs';
import { serialize } from 'node:v8';
const frame = (payload) => { const b = Buffer.alloc(4 + payload.length); b.writeUInt32LE(payload.length, 0); payload.copy(b, 4); return b; };
export default { async fetch(request) {
  const what = new URL(request.url).pathname;
  if (what === '/ok') return new Response('ok');
  if (what === '/malformed') {
    // A Response message for this pool's first request (id 1) with nonsense in every field.
    writeSync(3, frame(serialize([1, 1, 'not a status', 'not headers', { not: 'a body' }])));
    return new Promise(() => {});
  }
  if (what === '/huge') {
    const head = Buffer.alloc(4); head.writeUInt32LE(600 * 1024 * 1024, 0); // under the 1 GiB stream limit, over this sandbox's (2 x 128 MB)
    writeSync(3, head);
    return new Promise(() => {});
  }
  return new Response('?', { status: 404 });
} };
`;

describe('a sandbox that forges messages on its channel', { skip }, () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-sandbox-channel-'));
    // Granted files are bound by bwrap running as the sandbox's uid: they must be readable by it.
    await chmod(dir, 0o755);
    for (const id of ['forger', 'forger2']) {
      await mkdir(path.join(dir, `${id}@1.0.0`));
      await writeFile(path.join(dir, `${id}@1.0.0`, 'index.js'), FORGER);
      await writeFile(path.join(dir, `${id}@1.0.0`, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', isolation: 'sandbox', permissions: { files: ['none'] }, limits: { timeoutMs: 3000 } }));
    }
    await mkdir(path.join(dir, 'neighbour@1.0.0'));
    await writeFile(path.join(dir, 'neighbour@1.0.0', 'index.js'), 'export default { fetch: () => new Response("neighbour") };\n');
    await writeFile(path.join(dir, 'neighbour@1.0.0', 'fezz.json'), JSON.stringify({ id: 'neighbour', version: '1.0.0', entry: 'index.js' }));
    t = await startHost(dir);
  });
  after(async () => { await t.close(); await rm(dir, { recursive: true, force: true }); });

  it('a malformed response message is a 500 for its request, not a crash', async () => {
    const r = await get(`${t.url}/rpc/forger/malformed`);
    assert.equal(r.status, 500, r.text);
    assert.equal(JSON.parse(r.text).code, 'FEZZ_ERR_HANDLER_BAD_RESPONSE');
    assert.ok(t.logs.some((l) => /malformed response message/.test(l.msg)));
    assert.equal((await get(`${t.url}/rpc/neighbour`)).text, 'neighbour');
  });

  it('a frame over the limit ends that sandbox only', async () => {
    const r = await get(`${t.url}/rpc/forger2/huge`);
    assert.equal(r.status, 500, r.text);
    assert.equal(JSON.parse(r.text).code, 'FEZZ_ERR_INSTANCE_CRASHED');
    assert.equal((await get(`${t.url}/rpc/forger2/ok`)).text, 'ok', 'a new sandbox serves');
    assert.equal((await get(`${t.url}/rpc/neighbour`)).text, 'neighbour');
    assert.ok(t.logs.some((l) => /at most/.test(JSON.stringify(l))), 'the reason is logged');
  });
});
