// A functions directory with broken functions next to good ones: the good ones serve, each
// broken one is reported with the file, the field and what was expected.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, get, startHost, type TestHost } from '../helpers/host.js';

describe('functions directory with bad neighbours', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'mixed')); });
  after(async () => { await t.close(); });

  const problem = (dir: string) => t.host.problems.find((p) => p.file.includes(dir));

  it('the good function serves its latest version at its routes and /rpc', async () => {
    assert.equal((await get(`${t.url}/good`)).text, 'good 1.10.0');
    assert.equal((await get(`${t.url}/shared`)).text, 'good 1.10.0', 'routes come from the latest version');
    assert.equal((await get(`${t.url}/rpc/good`)).text, 'good 1.10.0', 'latest is the highest semver, not a pre-release');
    assert.equal((await get(`${t.url}/rpc/good@latest`)).text, 'good 1.10.0');
    assert.equal((await get(`${t.url}/rpc/good@1.9.0`)).text, 'good 1.9.0');
    assert.equal((await get(`${t.url}/rpc/good@2.0.0-beta.1`)).text, 'good 2.0.0-beta.1');
  });

  it('a TypeScript entry with its own node_modules dependency is bundled and runs', async () => {
    const res = await get(`${t.url}/rpc/with-dep`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, 'DEP! linux 1');
  });

  it('reports each broken function with file, field and expectation', () => {
    const expectations: Array<[string, string, RegExp]> = [
      ['bad-json@1.0.0', 'FEZZ_ERR_MANIFEST_INVALID', /fezz\.json: not valid JSON/],
      ['typo@1.0.0', 'FEZZ_ERR_MANIFEST_INVALID', /field "limits": Unrecognized key: "timeoutMS"/],
      ['wrong-dir@1.0.0', 'FEZZ_ERR_MANIFEST_DIR_NAME', /directory name must be "other@1\.0\.0".*got "wrong-dir@1\.0\.0"/],
      ['missing-entry@1.0.0', 'FEZZ_ERR_ENTRY_MISSING', /field "entry": file "nope\.ts" does not exist/],
      ['escape@1.0.0', 'FEZZ_ERR_ENTRY_OUTSIDE', /field "entry".*must stay inside/],
      ['syntax@1.0.0', 'FEZZ_ERR_BUILD_FAILED', /index\.ts:1:\d+: /],
      ['late-claim@1.0.0', 'FEZZ_ERR_ROUTE_CONFLICT', /GET \/shared of late-claim@1\.0\.0 is already claimed by good@1\.10\.0/],
      ['reserved@1.0.0', 'FEZZ_ERR_ROUTE_RESERVED', /\/admin\/x of reserved@1\.0\.0 is reserved/],
    ];
    for (const [dir, code, message] of expectations) {
      const p = problem(dir);
      assert.ok(p, `${dir} is reported`);
      assert.equal(p.code, code, dir);
      assert.match(p.message, message, dir);
      assert.ok(t.logs.some((l) => l.level === 50 && typeof l.msg === 'string' && l.msg.includes(p.message)), `${dir} is logged`);
    }
    assert.equal(t.host.problems.length, expectations.length, JSON.stringify(t.host.problems, null, 1));
  });

  it('broken functions are not served', async () => {
    for (const id of ['bad-json', 'typo', 'other', 'missing-entry', 'syntax', 'late-claim', 'reserved']) {
      assert.equal((await get(`${t.url}/rpc/${id}`)).status, 404, id);
    }
  });

  it('a module that throws on import gets 500 (start failed), logged, and the host goes on', async () => {
    const res = await get(`${t.url}/rpc/import-throws`);
    assert.equal(res.status, 500);
    assert.equal(JSON.parse(res.text).code, 'FEZZ_ERR_INSTANCE_START_FAILED');
    assert.ok(t.logs.some((l) => l.msg === 'function failed to start' && JSON.stringify(l).includes('top-level failure on purpose')));
    assert.equal((await get(`${t.url}/rpc/good`)).status, 200);
  });

  it('a route naming a missing handler fails to start with a message naming it', async () => {
    const res = await get(`${t.url}/no-handler`);
    assert.equal(res.status, 500);
    assert.ok(t.logs.some((l) => l.msg === 'function failed to start' && /no handler missing/.test(JSON.stringify(l))));
  });
});
