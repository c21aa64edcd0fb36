// Issue 11, "Permissions in the manifest, deny by default": a bundle may import a Node
// built-in only when `permissions` grant what it is for; `permissions.env` hands named host
// variables to the function.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { get, startHost, type TestHost } from '../helpers/host.js';

async function writeFn(dir: string, id: string, source: string, extra: Record<string, unknown> = {}): Promise<void> {
  const fnDir = path.join(dir, `${id}@1.0.0`);
  await mkdir(fnDir, { recursive: true });
  await writeFile(path.join(fnDir, 'index.js'), source);
  await writeFile(path.join(fnDir, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', ...extra }));
}

const uses = (mod: string, call: string): string => `import * as m from '${mod}';\nexport default { fetch: () => new Response(String(typeof m.${call})) };\n`;

describe('permissions in the manifest', () => {
  let dir: string;
  let t: TestHost;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-perms-'));
    await writeFn(dir, 'spawner', uses('node:child_process', 'execSync'));
    await writeFn(dir, 'spawner-granted', uses('child_process', 'spawn'), { permissions: { outbound: ['example.com'], files: ['x'] } });
    await writeFn(dir, 'reader', uses('node:fs', 'readFileSync'));
    await writeFn(dir, 'reader-granted', uses('node:fs', 'readFileSync'), { permissions: { files: ['data/'] } });
    await writeFn(dir, 'caller', uses('node:https', 'request'));
    await writeFn(dir, 'caller-granted', uses('node:https', 'request'), { permissions: { outbound: ['https://api.example.com'] } });
    await writeFn(dir, 'required', `const cp = require('node:child_process');\nexport default { fetch: () => new Response(typeof cp) };\n`);
    await writeFn(dir, 'plain', uses('node:crypto', 'randomUUID'));
    await writeFn(dir, 'with-env', 'export default { fetch: (_r, env) => Response.json(env) };\n',
      { env: { OWN: 'a' }, permissions: { env: ['PERM_TEST_GRANTED', 'PERM_TEST_UNSET'] } });
    await writeFn(dir, 'typo', uses('node:crypto', 'randomUUID'), { permissions: { network: ['x'] } });
    await writeFn(dir, 'sneaky-env', uses('node:crypto', 'randomUUID'), { permissions: { env: ['FEZZ_TOKEN'] } });
    await writeFn(dir, 'escape-files', uses('node:crypto', 'randomUUID'), { permissions: { files: ['../other@1.0.0/'] } });
    process.env.PERM_TEST_GRANTED = 'granted';
    process.env.PERM_TEST_OTHER = 'not granted';
    t = await startHost(dir);
  });
  after(async () => {
    delete process.env.PERM_TEST_GRANTED;
    delete process.env.PERM_TEST_OTHER;
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  const problem = (id: string) => t.host.problems.find((p) => p.file.includes(`${id}@1.0.0`));

  it('built-ins for processes are refused whatever is granted, with the reason', async () => {
    for (const id of ['spawner', 'spawner-granted', 'required']) {
      const p = problem(id);
      assert.equal(p?.code, 'FEZZ_ERR_PERMISSION_DENIED', `${id}: ${JSON.stringify(p)}`);
      assert.match(p!.message, /node:child_process.*may not start processes/);
      assert.equal((await get(`${t.url}/rpc/${id}`)).status, 404);
    }
  });

  it('node:fs needs permissions.files, node:https needs permissions.outbound', async () => {
    assert.match(problem('reader')!.message, /node:fs.*"permissions": \{ "files"/);
    assert.match(problem('caller')!.message, /node:https.*"outbound"/);
    assert.equal((await get(`${t.url}/rpc/reader-granted`)).text, 'function');
    assert.equal((await get(`${t.url}/rpc/caller-granted`)).text, 'function');
    assert.equal((await get(`${t.url}/rpc/plain`)).text, 'function', 'harmless built-ins need nothing');
  });

  it('permissions.env hands over the named host variables, and only those', async () => {
    const env = JSON.parse((await get(`${t.url}/rpc/with-env`)).text);
    assert.deepEqual(env, { OWN: 'a', PERM_TEST_GRANTED: 'granted' });
  });

  it('unknown keys, FEZZ_* variables and paths outside the directory are manifest errors', () => {
    assert.match(problem('typo')!.message, /permissions/);
    assert.match(problem('sneaky-env')!.message, /FEZZ_\* variables are the host's own/);
    assert.match(problem('escape-files')!.message, /inside the function directory/);
  });
});
