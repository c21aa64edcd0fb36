// Bad input to the admin listener is a 4xx, never a 500, and never touches more than the
// one version directory it names (issue 10, item 7 "Admin input"): bad percent-encoding,
// DELETE with a malformed or look-alike id, deploy file names the file system refuses,
// concurrent deploys and deletes of one version, and manifests that are not objects.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';

interface Answer { status: number; body: { code?: string; message?: string; key?: string; status?: string } }

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const manifest = (id: string, version: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ id, version, entry: 'index.js', ...extra });
const source = (body: string, startDelayMs = 0): string =>
  (startDelayMs > 0 ? `await new Promise((r) => setTimeout(r, ${startDelayMs}));\n` : '') +
  `export default { fetch: () => new Response(${JSON.stringify(body)}) };\n`;

describe('admin input', () => {
  let t: TestHost;
  let dir: string;
  let outside: string;

  const admin = async (method: string, p: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${t.host.adminUrl}${p}`, {
      method,
      headers: { authorization: `Bearer ${t.host.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? {} : JSON.parse(text) };
  };
  const deploy = (files: Record<string, string>, modes?: Record<string, number>): Promise<Answer> =>
    admin('POST', '/admin/deploy', modes === undefined ? { files } : { files, modes });
  const listing = async (): Promise<string[]> => (await readdir(dir)).sort();

  before(async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'fezz-admin-input-'));
    dir = path.join(root, 'functions');
    outside = path.join(root, 'outside');
    await mkdir(outside);
    await mkdir(path.join(dir, 'ok@1.0.0'), { recursive: true });
    await writeFile(path.join(dir, 'ok@1.0.0', 'fezz.json'), manifest('ok', '1.0.0', { routes: [{ method: 'GET', path: '/ok' }] }));
    await writeFile(path.join(dir, 'ok@1.0.0', 'index.js'), source('ok'));
    // A broken version: a problem whose path contains "a@1.0.0" and "once@1.0.0".
    for (const broken of ['ba@1.0.0', 'xonce@1.0.0']) {
      await mkdir(path.join(dir, broken));
      await writeFile(path.join(dir, broken, 'fezz.json'), '{ not json');
    }
    // A plain file with a version's name: no version, nothing DELETE may touch.
    await writeFile(path.join(dir, 'a@1.0.0'), 'not a function directory\n');
    t = await startHost(dir);
  });
  after(async () => {
    await t.close();
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  it('bad percent-encoding in an admin path is a 400 naming the segment', async () => {
    for (const [method, p, segment] of [
      ['DELETE', '/admin/functions/%E0%A4%A/1.0.0', '%E0%A4%A'],
      ['GET', '/admin/functions/%ZZ', '%ZZ'],
      ['DELETE', '/admin/functions/ok/1.0.0%C0', '1.0.0%C0'],
    ] as const) {
      const r = await admin(method, p);
      assert.equal(r.status, 400, `${method} ${p}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'FEZZ_ERR_BAD_REQUEST');
      assert.ok(r.body.message!.includes(segment), r.body.message);
    }
    assert.equal((await get(`${t.url}/ok`)).status, 200);
  });

  it('a request target that is not a URL is a 400', async () => {
    const s = net.connect(Number(new URL(t.host.adminUrl).port), '127.0.0.1');
    s.write(`GET http://[bad/admin/functions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${t.host.token}\r\nconnection: close\r\n\r\n`);
    let out = '';
    s.on('data', (d: Buffer) => { out += d.toString(); });
    await new Promise((r) => s.on('close', r));
    assert.match(out, /^HTTP\/1\.1 400 /);
    assert.match(out, /FEZZ_ERR_BAD_REQUEST/);
  });

  it('a client that goes away mid-body is not an internal error', async () => {
    const s = net.connect(Number(new URL(t.host.adminUrl).port), '127.0.0.1');
    s.write(`POST /admin/deploy HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${t.host.token}\r\ncontent-length: 100\r\n\r\n{"files":`);
    await sleep(100);
    s.destroy();
    await sleep(200);
    assert.deepEqual(t.logs.filter((l) => l.msg === 'admin request failed'), []);
  });

  it('DELETE with a malformed id or version is a 400 and touches nothing', async () => {
    const before = await listing();
    for (const p of ['..%2F..%2Foutside%2Fx/1.0.0', 'ok/1.0.0%2F..', 'OK/1.0.0', 'ok/1.0', 'ok/%2E%2E%2F', '-ok/1.0.0', 'ok/1.0.0@x']) {
      const r = await admin('DELETE', `/admin/functions/${p}`);
      assert.equal(r.status, 400, `${p}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'FEZZ_ERR_BAD_REQUEST');
    }
    assert.deepEqual(await listing(), before);
    assert.deepEqual(await readdir(outside), []);
    assert.equal((await get(`${t.url}/ok`)).status, 200);
  });

  it('DELETE acts on the exact version directory only: not a file of that name, not a look-alike problem', async () => {
    // "ba@1.0.0" is a problem whose path contains "a@1.0.0"; "a@1.0.0" is a file.
    const r = await admin('DELETE', '/admin/functions/a/1.0.0');
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(r.body.code, 'FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND');
    assert.ok((await stat(path.join(dir, 'a@1.0.0'))).isFile(), 'the file is still there');
    // The problem directory itself can be deleted.
    const broken = await admin('DELETE', '/admin/functions/ba/1.0.0');
    assert.equal(broken.status, 200, JSON.stringify(broken.body));
    assert.ok(!(await listing()).includes('ba@1.0.0'));
  });

  it('a deploy not served after the reload names its own problem, not a look-alike', async () => {
    // Starts once (the deploy's probe), then fails (the reload); "xonce@1.0.0" is another problem.
    // The starts are counted by a loopback server: a function reads no file outside its grants.
    let starts = 0;
    const counter = http.createServer((_req, res) => { res.end(String(++starts)); });
    await new Promise<void>((r) => counter.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(counter.address() as net.AddressInfo).port}/`;
    const code = `if ((await (await fetch(${JSON.stringify(url)})).text()) !== '1') throw new Error('second start on purpose');\n` + source('once');
    try {
      const r = await deploy({ 'fezz.json': b64(manifest('once', '1.0.0', { permissions: { outbound: ['127.0.0.1'] } })), 'index.js': b64(code) });
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.equal(r.body.code, 'FEZZ_ERR_DEPLOY_REJECTED');
      assert.match(r.body.message!, /second start on purpose/);
    } finally {
      counter.close();
    }
  });

  it('a file name the file system refuses is a 400 naming the file, and leaves the directory as it was', async () => {
    const good = { 'fezz.json': b64(manifest('names', '1.0.0')), 'index.js': b64(source('names')) };
    const cases: Array<[Record<string, string>, string]> = [
      [{ ...good, ['x'.repeat(300)]: b64('long') }, 'x'.repeat(300)],
      [{ ...good, [`d/${'y'.repeat(256)}/z.js`]: b64('long dir') }, 'y'.repeat(256)],
      [{ ...good, a: b64('file'), 'a/b': b64('and dir') }, '"a"'],
      [{ ...good, 'lib/': b64('a directory') }, 'lib/'],
      [{ ...good, 'index.js/x': b64('below a file') }, 'index.js'],
    ];
    for (const [files, named] of cases) {
      const before = await listing();
      const r = await deploy(files);
      assert.equal(r.status, 400, `${Object.keys(files).join(', ').slice(0, 80)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'FEZZ_ERR_ABI_BAD_BODY');
      assert.ok(r.body.message!.includes(named), r.body.message);
      assert.deepEqual(await listing(), before, 'no .fezz-staging leftovers');
    }
    assert.equal((await get(`${t.url}/rpc/names`)).status, 404);
  });

  it('an id@version too long for a directory name is a 400, and leaves the directory as it was', async () => {
    const before = await listing();
    const r = await deploy({ 'fezz.json': b64(manifest('x'.repeat(300), '1.0.0')), 'index.js': b64(source('x')) });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.code, 'FEZZ_ERR_ABI_BAD_BODY');
    assert.match(r.body.message!, /over 255 bytes/);
    assert.deepEqual(await listing(), before);
  });

  it('two names for one path are a 400, not a silent pick', async () => {
    const r = await deploy({ 'fezz.json': b64(manifest('dup', '1.0.0')), 'index.js': b64(source('one')), './index.js': b64(source('two')) });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.body.message!, /same path/);
  });

  it('a fezz.json that is not an object is a 400', async () => {
    for (const m of ['null', '[]', '"x"', '5', 'true']) {
      const r = await deploy({ 'fezz.json': b64(m), 'index.js': b64(source('x')) });
      assert.equal(r.status, 400, `${m}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'FEZZ_ERR_ABI_BAD_BODY');
    }
  });

  it('files named like Object.prototype members deploy (modes are looked up as own keys)', async () => {
    const r = await deploy({
      'fezz.json': b64(manifest('proto', '1.0.0')), 'index.js': b64(source('proto')),
      constructor: b64('c'), toString: b64('t'), hasOwnProperty: b64('h'),
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal((await get(`${t.url}/rpc/proto`)).text, 'proto');
  });

  it('concurrent deploys of one version: one serves, the others get 409 at once', async () => {
    const files = { 'fezz.json': b64(manifest('same', '1.0.0')), 'index.js': b64(source('same', 300)) };
    const answers = await Promise.all(Array.from({ length: 5 }, () => deploy(files)));
    const statuses = answers.map((a) => a.status).sort();
    assert.ok(statuses.every((s) => s === 201 || s === 409), JSON.stringify(answers));
    assert.ok(statuses.includes(201), JSON.stringify(answers));
    assert.ok(statuses.includes(409), JSON.stringify(answers));
    for (const a of answers.filter((x) => x.status === 409)) assert.equal(a.body.code, 'FEZZ_ERR_DEPLOY_IN_PROGRESS');
    assert.equal((await get(`${t.url}/rpc/same@1.0.0`)).text, 'same');
    assert.ok(!(await listing()).includes('.fezz-staging'));
  });

  it('a delete while a deploy of that version runs is a 409; other versions deploy meanwhile', async () => {
    // Replaces the same@1.0.0 of the test above (other content: replaced explicitly, else 409).
    const slow = admin('POST', '/admin/deploy?replace=1', { files: { 'fezz.json': b64(manifest('same', '1.0.0')), 'index.js': b64(source('same v2', 800)) } });
    try {
      await sleep(200); // the slow deploy is staged and starting its probe
      const del = await admin('DELETE', '/admin/functions/same/1.0.0');
      assert.equal(del.status, 409, JSON.stringify(del.body));
      assert.equal(del.body.code, 'FEZZ_ERR_DEPLOY_IN_PROGRESS');
      const other = await deploy({ 'fezz.json': b64(manifest('other', '1.0.0')), 'index.js': b64(source('other')) });
      assert.equal(other.status, 201, 'another version deploys while the slow one runs');
    } finally {
      await slow.catch(() => undefined); // never leave it running into the next test or the clean-up
    }
    const done = await slow;
    assert.equal(done.status, 201, JSON.stringify(done.body));
    assert.equal((await get(`${t.url}/rpc/same@1.0.0`)).text, 'same v2');
    const after = await admin('DELETE', '/admin/functions/same/1.0.0');
    assert.equal(after.status, 200, JSON.stringify(after.body));
  });
});
