// Issue 13, item 3 "Deploys to a fleet": `fezz deploy --to s3://bucket/prefix` writes an
// immutable bundle and compare-and-swaps state.json in an S3-compatible store (s3rver behind
// a proxy that adds the conditional PUTs s3rver lacks); hosts following the store (as
// `fezz serve --source` will: test/helpers/fleet-host.ts) install it through their own deploy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseS3Url, objectKey } from '../../src/fleet/s3-url.js';
import { S3Store, type PutCondition, type PutResult } from '../../src/fleet/s3-store.js';
import { collectGarbage, deployToFleet, readState, removeFromFleet, updateState } from '../../src/fleet/fleet-deploy.js';
import { bundleName, sha256Hex } from '../../src/fleet/state.js';
import { S3RVER_CREDENTIALS, startLocalS3, type LocalS3 } from '../helpers/s3-conditional.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const SOURCE = 's3://fleet/prod';

describe('s3:// locations', () => {
  it('parses bucket and prefix, canonically', () => {
    assert.deepEqual(parseS3Url('s3://fleet/prod'), { bucket: 'fleet', prefix: 'prod', url: 's3://fleet/prod' });
    assert.deepEqual(parseS3Url('s3://my.bucket-1/a/b/'), { bucket: 'my.bucket-1', prefix: 'a/b', url: 's3://my.bucket-1/a/b' });
    assert.deepEqual(parseS3Url('s3://fleet'), { bucket: 'fleet', prefix: '', url: 's3://fleet' });
    assert.deepEqual(parseS3Url('s3://fleet/'), { bucket: 'fleet', prefix: '', url: 's3://fleet' });
    assert.equal(objectKey(parseS3Url('s3://fleet/a/b'), 'state.json'), 'a/b/state.json');
    assert.equal(objectKey(parseS3Url('s3://fleet'), 'state.json'), 'state.json');
  });

  it('refuses what is not a plain s3://bucket/prefix, saying why', () => {
    for (const [text, why] of [
      ['https://fleet/prod', /must start with s3:\/\//],
      ['fleet/prod', /must start with s3:\/\//],
      ['s3://Fleet/prod', /not a valid bucket name/],
      ['s3://ab/prod', /not a valid bucket name/],
      ['s3://-fleet/prod', /not a valid bucket name/],
      ['s3://a..b/prod', /not a valid bucket name/],
      ['s3://10.0.0.1/prod', /not a valid bucket name/],
      ['s3://key:secret@fleet/prod', /credentials/],
      ['s3://fleet:9000/prod', /port/],
      ['s3://fleet/prod?x=1', /query or fragment/],
      ['s3://fleet/prod#x', /query or fragment/],
      ['s3://fleet/a//b', /empty segment/],
      ['s3://fleet/a/../b', /"\.\." segment/],
      ['s3://fleet/./b', /"\." segment/],
      ['s3://fleet/a b', /character outside/],
      ['s3://fleet/a%2Fb', /character outside/],
      [`s3://fleet/${'x'.repeat(513)}`, /over 512 bytes/],
      ['', /must start with s3:\/\//],
    ] as const) {
      assert.throws(() => parseS3Url(text), (err: Error & { code?: string; statusCode?: number }) => {
        assert.equal(err.code, 'FEZZ_ERR_FLEET_URL_INVALID', text);
        assert.equal(err.statusCode, 400);
        assert.match(err.message, why, text);
        return true;
      });
    }
  });
});

interface Run { code: number | null; stdout: string; stderr: string; endedAt: number; endedAtWall: number }

interface FleetHost {
  url: string;
  lines: Array<Record<string, unknown>>;
  /** Milliseconds from spawn to the ready line (initial sync included). */
  startMs: number;
  stop(): Promise<void>;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
/** A deploy package (the POST /admin/deploy body) without the CLI: fezz.json + index.js. */
const pkg = (id: string, version: string, code: string, extra: Record<string, unknown> = {}): Buffer =>
  Buffer.from(JSON.stringify({ files: { 'fezz.json': b64(JSON.stringify({ id, version, entry: 'index.js', ...extra })), 'index.js': b64(code) } }));
const answers = (body: string): string => `export default { fetch: () => new Response(${JSON.stringify(body)}) };\n`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function text(url: string): Promise<string> {
  try {
    const res = await fetch(url);
    const body = await res.text();
    return res.status === 200 ? body : `HTTP ${res.status}`;
  } catch (err) {
    return `unreachable: ${(err as Error).message}`;
  }
}

/** Poll until `get()` returns `want`; the time it took, in ms. */
async function until(get: () => Promise<string>, want: string, timeoutMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  let last = '';
  while (performance.now() - t0 < timeoutMs) {
    last = await get();
    if (last === want) return performance.now() - t0;
    await sleep(20);
  }
  assert.fail(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms (want ${JSON.stringify(want)})`);
}

describe('fleet deploys through an S3-compatible store', { timeout: 120_000 }, () => {
  let s3: LocalS3;
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  let store: S3Store;
  const hosts: FleetHost[] = [];
  const children = new Set<ChildProcess>();

  function fezz(args: string[], cwd: string): Promise<Run> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [...CLI, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c; });
      child.stderr.on('data', (c: Buffer) => { stderr += c; });
      child.on('close', (code) => { children.delete(child); resolve({ code, stdout, stderr, endedAt: performance.now(), endedAtWall: Date.now() }); });
    });
  }

  async function startFleetHost(name: string): Promise<FleetHost> {
    const dir = path.join(tmp, name);
    await mkdir(dir, { recursive: true });
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', TSX, path.join(ROOT, 'test/helpers/fleet-host.ts'), dir, SOURCE], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const lines: Array<Record<string, unknown>> = [];
    let out = '';
    let err = '';
    const exited = new Promise<void>((r) => child.on('exit', () => { children.delete(child); r(); }));
    child.stderr.on('data', (c: Buffer) => { err += c; });
    const ready = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no ready line after 30 s: ${err}`)), 30_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c;
        let nl: number;
        while ((nl = out.indexOf('\n')) >= 0) {
          const line = out.slice(0, nl);
          out = out.slice(nl + 1);
          try { lines.push(JSON.parse(line) as Record<string, unknown>); } catch { lines.push({ msg: line }); }
          const last = lines[lines.length - 1]!;
          if (last.msg === 'fleet host ready') { clearTimeout(timer); resolve(String(last.url)); }
        }
      });
      void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited: ${err}`)); });
    });
    const url = await ready;
    const host: FleetHost = {
      url, lines, startMs: performance.now() - t0,
      stop: async () => { child.kill('SIGTERM'); await Promise.race([exited, sleep(5000)]); if (children.has(child)) child.kill('SIGKILL'); },
    };
    hosts.push(host);
    return host;
  }

  async function writeFunction(id: string, version: string, body: string): Promise<string> {
    const dir = path.join(tmp, 'src', `${id}@${version}-${Math.random().toString(36).slice(2, 8)}`);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'fezz.json'), JSON.stringify({ id, version, entry: 'index.ts' }));
    await writeFile(path.join(dir, 'index.ts'), `const body: string = ${JSON.stringify(body)};\nexport default { fetch: (): Response => new Response(body) };\n`);
    return dir;
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-fleet-'));
    s3 = await startLocalS3(['fleet']);
    env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('NODE_TEST') && !k.startsWith('FEZZ_')) env[k] = v;
    Object.assign(env, { AWS_ENDPOINT_URL: s3.url, AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' });
    store = new S3Store(parseS3Url(SOURCE), { endpoint: s3.url, credentials: { ...S3RVER_CREDENTIALS } }, {});
    await Promise.all(['a', 'b', 'c'].map((n) => startFleetHost(`host-${n}`)));
  });

  after(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
    for (const c of children) c.kill('SIGKILL');
    store?.close();
    await s3?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  it('deploy --to reaches all three hosts within 3 s; a fourth host started afterwards serves it on its first request', async () => {
    const fn = await writeFunction('site', '1.0.0', 'site v1');
    const started = performance.now();
    const r = await fezz(['deploy', fn, '--to', SOURCE], tmp);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deployed site@1\.0\.0 to s3:\/\/fleet\/prod \(revision 1, bundle [0-9a-f]{12}\)\n$/);
    const [a, b, c] = hosts;
    const reach = await Promise.all([a!, b!, c!].map((h, i) => until(() => text(`${h.url}/rpc/site`), 'site v1', 10_000, `host ${i}`)));
    // Measured from the CLI's exit (state.json written): the time a change takes to reach the fleet.
    const slowest = Math.max(...reach);
    // Where the time went on each host, from the CLI's exit: the poll that saw the change, the probe start, the swap.
    const steps = [a!, b!, c!].map((h) => h.lines.filter((l) => typeof l.time === 'string' && Date.parse(l.time) >= r.endedAtWall - 50 && /site@1\.0\.0|reloaded|applied/.test(JSON.stringify(l)))
      .map((l) => `${l.msg} +${Date.parse(String(l.time)) - r.endedAtWall}`).join(', '));
    console.log(`fleet: deploy --to took ${Math.round(r.endedAt - started)} ms (bundle + upload + CAS); all three hosts served it ${Math.round(slowest)} ms after the CLI exited (${reach.map((x) => Math.round(x)).join(', ')}); on the hosts: ${steps.join(' | ')}`);
    assert.ok(slowest < 3000, `all three hosts must serve it within 3 s of the deploy, took ${Math.round(slowest)} ms`);

    // A fourth host: its initial sync runs before its port opens, so its very first request is served.
    const d = await startFleetHost('host-d');
    const first = await fetch(`${d.url}/rpc/site`);
    assert.equal(first.status, 200);
    assert.equal(await first.text(), 'site v1');
    console.log(`fleet: a fourth host started (initial sync included) in ${Math.round(d.startMs)} ms`);
    assert.ok(d.lines.some((l) => l.msg === 'installed from the fleet' && l.fn === 'site@1.0.0'), 'the fourth host logged the install');

    // The same content again changes nothing, anywhere.
    const again = await fezz(['deploy', fn, '--to', SOURCE], tmp);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /site@1\.0\.0 is already deployed to s3:\/\/fleet\/prod with the same content: nothing changed/);
    assert.equal((await readState(store)).state.revision, 1);
  });

  it('two concurrent deploy --to of one key with different content: one succeeds, the other exits 1 with the conflict; --replace replaces it everywhere', async () => {
    const [one, two] = await Promise.all([writeFunction('race', '2.0.0', 'race one'), writeFunction('race', '2.0.0', 'race two')]);
    const runs = await Promise.all([fezz(['deploy', one, '--to', SOURCE], tmp), fezz(['deploy', two, '--to', SOURCE], tmp)]);
    const ok = runs.filter((r) => r.code === 0);
    const refused = runs.filter((r) => r.code !== 0);
    assert.equal(ok.length, 1, runs.map((r) => `${r.code}: ${r.stdout}${r.stderr}`).join('\n'));
    assert.equal(refused.length, 1);
    assert.equal(refused[0]!.code, 1);
    assert.match(refused[0]!.stderr, /fezz: FEZZ_ERR_VERSION_EXISTS: race@2\.0\.0 is already deployed to s3:\/\/fleet\/prod with other content: .*--replace/);
    const winner = runs[0]!.code === 0 ? 'race one' : 'race two';
    for (const h of hosts) await until(() => text(`${h.url}/rpc/race`), winner, 20_000, 'the winner serves');

    const three = await writeFunction('race', '2.0.0', 'race three');
    const refusedAgain = await fezz(['deploy', three, '--to', SOURCE], tmp);
    assert.equal(refusedAgain.code, 1);
    assert.match(refusedAgain.stderr, /FEZZ_ERR_VERSION_EXISTS/);
    const replaced = await fezz(['deploy', three, '--to', SOURCE, '--replace'], tmp);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stdout, /^replaced race@2\.0\.0 to s3:\/\/fleet\/prod/);
    for (const h of hosts) await until(() => text(`${h.url}/rpc/race`), 'race three', 20_000, 'the replacement serves');
    // The other functions were not touched.
    for (const h of hosts) assert.equal(await text(`${h.url}/rpc/site`), 'site v1');
  });

  it('racing deploys of one key never both succeed: the loser\'s compare-and-swap fails (412), it re-reads and gets the 409', async () => {
    const before = s3.stats.preconditionFailed;
    for (let round = 0; round < 3; round++) {
      const key = `cas${round}@1.0.0`;
      const bundles = Array.from({ length: 4 }, (_, i) => pkg(`cas${round}`, '1.0.0', answers(`cas ${round} ${i}`)));
      const results = await Promise.allSettled(bundles.map((bundle) => deployToFleet({ store, key, bundle, replace: false })));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason)))));
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'FEZZ_ERR_VERSION_EXISTS', String(r.reason));
      const { state } = await readState(store);
      assert.equal(state.functions[key]!.sha256, sha256Hex(bundles[won[0]!]!), 'state.json names the winner\'s bundle');
    }
    assert.ok(s3.stats.preconditionFailed > before, 'at least one compare-and-swap lost the race (the retry path ran)');
    // Lost races of unrelated keys are retried, not refused: all succeed.
    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => deployToFleet({ store, key: `many${i}@1.0.0`, bundle: pkg(`many${i}`, '1.0.0', answers(`many ${i}`)), replace: false })));
    assert.deepEqual(results.map((r) => r.outcome), ['deployed', 'deployed', 'deployed', 'deployed']);
    const { state } = await readState(store);
    for (let i = 0; i < 4; i++) assert.ok(state.functions[`many${i}@1.0.0`] !== undefined);
  });

  it('a tampered bundle is refused and logged with its key and reason; the rest of the change applies; removal from state.json removes a version', async () => {
    const good = pkg('good', '1.0.0', answers('good'));
    const genuine = pkg('bad', '1.0.0', answers('genuine'));
    const tampered = pkg('bad', '1.0.0', answers('tampered'));
    const badSha = sha256Hex(genuine);
    // The tampered bytes sit at the genuine bundle's name.
    assert.equal((await store.put(bundleName(badSha), tampered, { ifNoneMatch: '*' })).status, 'ok');
    assert.equal((await store.put(bundleName(sha256Hex(good)), good, { ifNoneMatch: '*' })).status, 'ok');
    await updateState(store, (s) => ({ ...s, revision: s.revision + 1, functions: { ...s.functions,
      'bad@1.0.0': { sha256: badSha, deployedAt: new Date().toISOString() },
      'good@1.0.0': { sha256: sha256Hex(good), deployedAt: new Date().toISOString() } } }));
    for (const h of hosts) await until(() => text(`${h.url}/rpc/good`), 'good', 20_000, 'the good half of the change applies');
    for (const h of hosts) {
      assert.equal(await text(`${h.url}/rpc/bad`), 'HTTP 404', 'the tampered bundle is not served');
      const logged = h.lines.find((l) => l.msg === 'cannot install a version from the fleet; retried with back-off and when the desired state changes' && l.fn === 'bad@1.0.0');
      assert.ok(logged, 'the refusal is logged');
      assert.equal(logged.sha256, badSha);
      assert.equal(logged.code, 'FEZZ_ERR_FLEET_BUNDLE_INVALID');
      assert.match(String(logged.reason), /hash to [0-9a-f]{64}, not to its name/);
    }
    // Out of state.json -> out of every host that installed it from there.
    assert.equal(await removeFromFleet(store, 'good@1.0.0'), true);
    for (const h of hosts) await until(() => text(`${h.url}/rpc/good`), 'HTTP 404', 20_000, 'removed');
    assert.ok(hosts[0]!.lines.some((l) => l.msg === 'removed: the fleet no longer names it' && l.fn === 'good@1.0.0'));
    assert.equal(await removeFromFleet(store, 'good@1.0.0'), false);
  });

  it('AWS credentials reach no function: isolate and inline functions installed from the fleet see no AWS keys', async () => {
    const probe = 'export default { fetch: () => Response.json({ keys: Object.keys(process.env).filter((k) => k.startsWith("AWS_")).sort(), secret: Object.values(process.env).includes("S3RVER") }) };\n';
    await deployToFleet({ store, key: 'envprobe@1.0.0', bundle: pkg('envprobe', '1.0.0', probe), replace: false });
    await deployToFleet({ store, key: 'envprobe-inline@1.0.0', bundle: pkg('envprobe-inline', '1.0.0', probe, { runtime: 'inline' }), replace: false });
    const h = hosts[0]!;
    for (const fn of ['envprobe', 'envprobe-inline']) {
      await until(async () => (await text(`${h.url}/rpc/${fn}`)).startsWith('{') ? 'up' : JSON.stringify(h.lines.filter((l) => l.fn === `${fn}@1.0.0`)), 'up', 20_000, `${fn} is installed`);
    }
    const isolate = JSON.parse(await text(`${h.url}/rpc/envprobe`)) as { keys: string[]; secret: boolean };
    assert.deepEqual(isolate, { keys: [], secret: false }, 'an isolate sees none of the host\'s AWS_* variables');
    // Inline functions share the host's process: the keys were taken out of its environment
    // before any function loaded (the endpoint and region, not secrets, stay).
    const inline = JSON.parse(await text(`${h.url}/rpc/envprobe-inline`)) as { keys: string[]; secret: boolean };
    assert.deepEqual(inline, { keys: ['AWS_ENDPOINT_URL', 'AWS_REGION'], secret: false });
    // The credentials are in no log line either.
    assert.ok(!hosts.some((x) => JSON.stringify(x.lines).includes('S3RVER')), 'no log line holds the credentials');
  });

  it('fezz delete --from takes a version out of the fleet (hosts remove it); fezz gc deletes unreferenced bundles past --min-age, keeps the rest', async () => {
    const fn = await writeFunction('gcx', '1.0.0', 'gcx v1');
    const deployed = await fezz(['deploy', fn, '--to', SOURCE], tmp);
    assert.equal(deployed.code, 0, deployed.stderr);
    for (const h of hosts) await until(() => text(`${h.url}/rpc/gcx`), 'gcx v1', 20_000, 'gcx is served');
    const gcxBundle = bundleName((await readState(store)).state.functions['gcx@1.0.0']!.sha256);

    const del = await fezz(['delete', 'gcx@1.0.0', '--from', SOURCE], tmp);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, `deleted gcx@1.0.0 from ${SOURCE}\n`);
    assert.equal((await readState(store)).state.functions['gcx@1.0.0'], undefined);
    for (const h of hosts) await until(() => text(`${h.url}/rpc/gcx`), 'HTTP 404', 20_000, 'gcx is removed');
    const again = await fezz(['delete', 'gcx@1.0.0', '--from', SOURCE], tmp);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /gcx@1\.0\.0 is not in s3:\/\/fleet\/prod/);
    // Without a version and without a terminal: nothing without --yes.
    const all = await fezz(['delete', 'site', '--from', SOURCE], tmp);
    assert.equal(all.code, 1);
    assert.match(all.stderr, /without confirmation: pass --yes/);

    const listed = async (): Promise<string[]> => (await store.list('bundles/')).map((o) => o.name).sort();
    const before = await listed();
    assert.ok(before.includes(gcxBundle), 'the removed version\'s bundle is still there');
    // Everything unreferenced is younger than an hour: kept.
    const young = await fezz(['gc', '--from', SOURCE], tmp);
    assert.equal(young.code, 0, young.stderr);
    assert.match(young.stdout, /^0 unreferenced bundle\(s\) deleted \(0 bytes\); \d+ in use; [1-9]\d* unreferenced but younger than 1h, kept\n$/);
    const dry = await fezz(['gc', '--from', SOURCE, '--min-age', '0', '--dry-run'], tmp);
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(dry.stdout.includes(`would delete ${SOURCE}/${gcxBundle}\n`), dry.stdout);
    assert.deepEqual(await listed(), before, '--dry-run deletes nothing');
    const bad = await fezz(['gc', '--from', SOURCE, '--min-age', 'soon'], tmp);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid duration "soon"/);

    const gc = await fezz(['gc', '--from', SOURCE, '--min-age', '0'], tmp);
    assert.equal(gc.code, 0, gc.stderr);
    const { state } = await readState(store);
    const inUse = [...new Set(Object.values(state.functions).map((e) => bundleName(e.sha256)))].sort();
    assert.deepEqual(await listed(), inUse, 'only the bundles state.json names are left');
    assert.match(gc.stdout, new RegExp(`deleted ${SOURCE}/${gcxBundle}\\n`));
    // The hosts serve on, and a new host still starts from what is left.
    for (const h of hosts) assert.equal(await text(`${h.url}/rpc/site`), 'site v1');
  });

  it('a deploy that reuses a bundle a gc deleted meanwhile puts it back and bumps the revision', async () => {
    // A gc that ran between the deploy's check of the bundle and its write of state.json.
    class RacingStore extends S3Store {
      deleteFirst: string | null = null;
      override async put(name: string, body: Buffer, condition: PutCondition, contentType?: string): Promise<PutResult> {
        if (name === 'state.json' && this.deleteFirst !== null) { await this.delete(this.deleteFirst); this.deleteFirst = null; }
        return super.put(name, body, condition, contentType);
      }
    }
    const racing = new RacingStore(parseS3Url(SOURCE), { endpoint: s3.url, credentials: { ...S3RVER_CREDENTIALS } }, {});
    try {
      const bundle = pkg('reuse', '1.0.0', answers('reuse'));
      const name = bundleName(sha256Hex(bundle));
      assert.equal((await racing.put(name, bundle, { ifNoneMatch: '*' })).status, 'ok', 'an old, unreferenced bundle');
      racing.deleteFirst = name;
      const r = await deployToFleet({ store: racing, key: 'reuse@1.0.0', bundle, replace: false });
      assert.equal(r.outcome, 'deployed');
      assert.equal(racing.deleteFirst, null, 'the gc ran in between');
      assert.equal(await racing.exists(name), true, 'the bundle was put back');
      const { state } = await readState(racing);
      assert.equal(state.revision, r.revision);
      assert.equal(state.functions['reuse@1.0.0']!.sha256, sha256Hex(bundle));
      for (const h of hosts) await until(() => text(`${h.url}/rpc/reuse`), 'reuse', 20_000, 'reuse is served');
    } finally {
      racing.close();
    }
  });

  it('a bundle missing when the hosts sync is tried again with back-off: once it is there they install it, state.json unchanged', async () => {
    const bundle = pkg('late', '1.0.0', answers('late'));
    const sha = sha256Hex(bundle);
    await updateState(store, (s) => ({ ...s, revision: s.revision + 1, functions: { ...s.functions, 'late@1.0.0': { sha256: sha, deployedAt: new Date().toISOString() } } }));
    const revision = (await readState(store)).state.revision;
    for (const h of hosts) {
      await until(async () => (h.lines.some((l) => l.fn === 'late@1.0.0' && l.code === 'FEZZ_ERR_FLEET_BUNDLE_INVALID') ? 'refused' : 'not yet'), 'refused', 20_000, 'the missing bundle is refused');
    }
    assert.equal((await store.put(bundleName(sha), bundle, { ifNoneMatch: '*' })).status, 'ok');
    for (const h of hosts) await until(() => text(`${h.url}/rpc/late`), 'late', 20_000, 'installed on a retry');
    assert.equal((await readState(store)).state.revision, revision, 'no change of state.json was needed');
    // Logged once as an error; the retries that failed for the same reason only at debug.
    for (const h of hosts) {
      const errors = h.lines.filter((l) => l.fn === 'late@1.0.0' && l.msg === 'cannot install a version from the fleet; retried with back-off and when the desired state changes');
      assert.equal(errors.length, 1, JSON.stringify(errors));
    }
  });

  it('the local record and the functions directory hold what the fleet names', async () => {
    const { state } = await readState(store);
    const named = Object.keys(state.functions).filter((k) => k !== 'bad@1.0.0').sort();
    for (const name of ['host-a', 'host-b', 'host-c', 'host-d']) {
      const dir = path.join(tmp, name);
      const record = async (): Promise<{ source: string; installed: Record<string, string> }> => JSON.parse(await readFile(path.join(dir, '.fezz-source.json'), 'utf8'));
      // The last change may still be being applied on this host (the record follows the swap).
      await until(async () => JSON.stringify({ dir: (await readdir(dir)).filter((n) => !n.startsWith('.')).sort(), record: Object.keys((await record()).installed).sort() }),
        JSON.stringify({ dir: named, record: named }), 20_000, name);
      const r = await record();
      assert.equal(r.source, SOURCE);
      for (const key of named) assert.equal(r.installed[key], state.functions[key]!.sha256);
    }
  });
});
