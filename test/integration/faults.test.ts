// Panic safety (seed 003): every fault fails only its own request, with the documented
// status, and both the faulty function and its neighbour answer 200 right after.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, get, startHost, type TestHost } from '../helpers/host.js';

describe('faults in an isolate', () => {
  let t: TestHost;
  before(async () => { t = await startHost(path.join(FIXTURES, 'faults')); });
  after(async () => { await t.close(); });

  async function healthyAfter(): Promise<void> {
    const ok = await get(`${t.url}/rpc/faulty/ok`);
    assert.equal(ok.status, 200, `faulty should recover, got ${ok.status} ${ok.text}`);
    assert.equal(JSON.parse(ok.text).ok, true);
    const n = await get(`${t.url}/rpc/neighbour`);
    assert.equal(n.status, 200);
    assert.equal(n.text, 'neighbour ok');
  }

  const cases: Array<[string, number, string]> = [
    ['/throw', 500, 'FEZZ_ERR_HANDLER_THREW'],
    ['/reject', 500, 'FEZZ_ERR_HANDLER_THREW'],
    ['/not-a-response', 500, 'FEZZ_ERR_HANDLER_BAD_RESPONSE'],
    ['/bad-header', 500, 'FEZZ_ERR_HANDLER_BAD_RESPONSE'],
    ['/exit', 500, 'FEZZ_ERR_INSTANCE_CRASHED'],
    ['/oom', 500, 'FEZZ_ERR_INSTANCE_OUT_OF_MEMORY'],
    ['/buffers', 500, 'FEZZ_ERR_INSTANCE_OUT_OF_MEMORY'],
    ['/slow', 504, 'FEZZ_ERR_HANDLER_TIMEOUT'],
    ['/loop', 504, 'FEZZ_ERR_HANDLER_TIMEOUT'],
  ];
  for (const [fault, status, code] of cases) {
    it(`${fault} -> ${status} ${code}, then the function and a neighbour answer 200`, async () => {
      await get(`${t.url}/rpc/faulty/ok`); // make sure an instance is warm first
      const res = await get(`${t.url}/rpc/faulty${fault}`);
      assert.equal(res.status, status, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.code, code);
      assert.equal(body.statusCode, status);
      assert.ok(res.headers.get('x-request-id'), 'error responses carry x-request-id');
      assert.doesNotMatch(res.text, /at .*index\.js|\n\s+at /, 'no stack in the body outside dev mode');
      await healthyAfter();
    });
  }

  it('an instance that crashed is replaced (a new thread serves)', async () => {
    const before = JSON.parse((await get(`${t.url}/rpc/faulty/ok`)).text).threadId;
    assert.equal((await get(`${t.url}/rpc/faulty/exit`)).status, 500);
    const afterCrash = JSON.parse((await get(`${t.url}/rpc/faulty/ok`)).text);
    assert.notEqual(afterCrash.threadId, before);
    assert.equal(afterCrash.served, 1, 'module state starts fresh in the new instance');
  });

  it('a sync loop gets the instance terminated and logged', async () => {
    assert.equal((await get(`${t.url}/rpc/faulty/loop`)).status, 504);
    const deadline = Date.now() + 3000;
    while (!t.logs.some((l) => /unresponsive/.test(l.msg)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(t.logs.some((l) => /unresponsive/.test(l.msg)), 'unresponsive instance is logged');
    const stats = t.host.functions().find((f) => f.key === 'faulty@1.0.0')!.stats;
    assert.ok(stats.crashes >= 1 && stats.timeouts >= 1);
  });

  it('the handler stack goes to the log, not the body', async () => {
    await get(`${t.url}/rpc/faulty/throw`);
    const line = t.logs.find((l) => l.msg === 'handler failed' && JSON.stringify(l).includes('thrown on purpose'));
    assert.ok(line, 'log has the error');
    assert.match(JSON.stringify(line), /index\.js|\.mjs/);
  });
});

describe('faults in dev mode', () => {
  it('a 500 body carries the stack', async () => {
    const t = await startHost(path.join(FIXTURES, 'faults'), { dev: true });
    try {
      const res = await get(`${t.url}/rpc/faulty/throw`);
      assert.equal(res.status, 500);
      assert.match(JSON.parse(res.text).message, /thrown on purpose[\s\S]*\n\s+at /);
    } finally { await t.close(); }
  });
});
