// Issue 11: the host caps isolation. With `isolation: 'sandbox'` (`fezz serve --isolation
// sandbox`), an isolate function runs sandboxed though its manifest does not ask for it, and
// an inline function (no isolation at all) is not served, with the reason. The default lets
// each manifest choose.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { probeSandbox } from '../../src/runtime/sandbox/bwrap.js';
import { get, startHost } from '../helpers/host.js';

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
});
