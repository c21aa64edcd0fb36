// Plugins get their own ABI token, never the admin token (DESIGN.md "Security model";
// docs/abi.md "Tokens"). A real host serves two process plugins (test/fixtures/abi-tokens/):
// `prober` reports what its FEZZ_TOKEN can do on the admin listener, `holder` never answers
// and logs each request id it gets, so the test can hand prober another function's id
// while that request is still pending.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, sleep, startHost, type TestHost } from '../helpers/host.js';

interface Answer { status: number; body: unknown }
type Probe = Record<'ownFetch' | 'unknownFetch' | 'unknownPush' | 'otherFetch' | 'otherPushMalformed' | 'otherPushErrorMalformed' | 'otherPush' | 'otherPushError' | 'batchFetch' | 'batchPush', Answer> & { admin: Record<string, Answer> };

/** The 404 body of an id that is not pending (what another function's id must look like). */
const unknownIdBody = (id: string) => ({ error: 'Not Found', code: 'FEZZ_ERR_ABI_UNKNOWN_ID', message: `No pending request ${id} (unknown, answered or expired)`, statusCode: 404 });

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** prober's report with `other` (another function's id): all 403s, and `other` exactly like an unknown id. */
async function assertScoped(t: TestHost, other: string): Promise<void> {
  const res = await fetch(`${t.url}/rpc/prober/probe?other=${other}`);
  assert.equal(res.status, 200, 'prober fetched and answered its own request with its token');
  const p = (await res.json()) as Probe;

  const forbidden = { error: 'Forbidden', code: 'FEZZ_ERR_ABI_FORBIDDEN', message: "This token may only fetch and answer its own function's requests", statusCode: 403 };
  assert.equal(Object.keys(p.admin).length, 11);
  for (const [route, a] of Object.entries(p.admin)) assert.deepEqual(a, { status: 403, body: forbidden }, route);

  assert.equal(p.ownFetch.status, 200);
  assert.equal((p.ownFetch.body as { path: string }).path, '/probe');
  assert.deepEqual(p.unknownFetch, { status: 404, body: unknownIdBody('1') });
  assert.deepEqual(p.unknownPush, { status: 404, body: unknownIdBody('1') });
  // Another function's id looks exactly like an unknown one, whatever the call.
  for (const k of ['otherFetch', 'otherPushMalformed', 'otherPushErrorMalformed', 'otherPush', 'otherPushError'] as const) {
    assert.deepEqual(p[k], { status: 404, body: unknownIdBody(other) }, k);
  }
  assert.equal(p.batchFetch.status, 200);
  const [mine, theirs, unknown] = (p.batchFetch.body as { requests: Array<Record<string, unknown>> }).requests;
  assert.equal(mine!.path, '/probe');
  assert.deepEqual(theirs, { id: other, ...unknownIdBody(other) });
  assert.deepEqual(unknown, { id: '1', ...unknownIdBody('1') });
  assert.equal(p.batchPush.status, 200);
  assert.deepEqual((p.batchPush.body as { results: unknown[] }).results, [
    { id: other, ...unknownIdBody(other), ok: false },
    { id: other, ...unknownIdBody(other), ok: false },
    { id: other, ...unknownIdBody(other), ok: false },
    { id: '1', ...unknownIdBody('1'), ok: false },
  ]);
}

describe('plugin ABI tokens', () => {
  let t: TestHost;
  let dir: string;
  const admin = (p: string, init: RequestInit = {}, token = t.host.token) =>
    fetch(`${t.host.adminUrl}${p}`, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string> | undefined) } });
  const envOf = async (): Promise<Record<string, string>> => {
    const res = await fetch(`${t.url}/rpc/prober/env`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { env: Record<string, string> }).env;
  };
  /** The status a token gets on get-request-info of an id nobody has: 404 while it works, 401 once revoked. */
  const tokenStatus = async (token: string) => (await admin('/admin/get-request-info?request_id=1', {}, token)).status;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-abi-tokens-'));
    await cp(path.join(FIXTURES, 'abi-tokens'), dir, { recursive: true }); // the delete test removes a directory
    t = await startHost(dir);
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a plugin gets its own random token, not the admin token', async () => {
    const env = await envOf();
    assert.match(env.FEZZ_TOKEN ?? '', /^[0-9a-f]{64}$/);
    assert.notEqual(env.FEZZ_TOKEN, t.host.token);
    for (const [k, v] of Object.entries(env)) assert.ok(!v.includes(t.host.token), `${k} holds the admin token`);
    assert.equal(env.FEZZ_HOST, t.host.adminUrl);
  });

  it('reaches only its own requests; every other admin route is 403', async () => {
    // holder keeps a request pending; its id reaches the test through the host log.
    const held = fetch(`${t.url}/rpc/holder/wait`);
    const other = await until('holder to log its request id', () => {
      const line = t.logs.find((l) => l.fn === 'holder@1.0.0' && l.stream === 'stderr' && l.msg.startsWith('holding '));
      return line?.msg.slice('holding '.length);
    });
    assert.match(other, /^\d+$/);

    await assertScoped(t, other);

    // holder's client is still waiting, untouched: the admin token can still answer it.
    const fetched = await admin(`/admin/get-request-info?request_id=${other}`);
    assert.equal(fetched.status, 200);
    assert.equal(((await fetched.json()) as { path: string }).path, '/wait');
    const pushed = await admin(`/admin/push-response-info?request_id=${other}`, { method: 'POST', body: JSON.stringify({ status: 201, body: 'from the admin token' }) });
    assert.equal(pushed.status, 200);
    const heldRes = await held;
    assert.equal(heldRes.status, 201);
    assert.equal(await heldRes.text(), 'from the admin token');
    // Answered now (a second push from the admin token is 409): still unknown to prober, never 409.
    assert.equal((await admin(`/admin/push-response-info?request_id=${other}`, { method: 'POST', body: '{}' })).status, 409);
    await assertScoped(t, other);
  });

  it('a version reloaded away loses its token; its successor gets a new one; a deleted one loses it too', async () => {
    const first = (await envOf()).FEZZ_TOKEN!;
    assert.equal(await tokenStatus(first), 404);

    // A changed manifest: same function key, a new runtime; the old one drains and stops.
    const manifest = path.join(dir, 'prober@1.0.0', 'fezz.json');
    await writeFile(manifest, JSON.stringify({ id: 'prober', version: '1.0.0', entry: 'main.mjs', runtime: 'process', env: { GEN: '2' } }));
    assert.equal((await admin('/admin/reload', { method: 'POST' })).status, 200);
    const env = await envOf();
    assert.equal(env.GEN, '2');
    const second = env.FEZZ_TOKEN!;
    assert.notEqual(second, first);
    assert.equal(await tokenStatus(second), 404);
    await until('the replaced runtime\'s token to be revoked', async () => (await tokenStatus(first)) === 401 || undefined);

    assert.equal((await admin('/admin/functions/prober/1.0.0', { method: 'DELETE' })).status, 200);
    await until('the deleted version\'s token to be revoked', async () => (await tokenStatus(second)) === 401 || undefined);
    // The admin token is unaffected.
    assert.equal(await tokenStatus(t.host.token), 404);
  });
});
