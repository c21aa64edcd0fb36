// Fuzzing the admin listener (issue 10, item 7 "Admin input", "Done when"): random and
// mutated manifests, deploy uploads, ABI pushes and odd raw requests against a real host.
// After every case: no admin answer is a 5xx, nothing was written outside the functions
// directory, the healthy function still answers 200, and the functions directory holds
// only what was deployed (no `.fezz-staging` leftovers).
//
// Deterministic by default; FEZZ_FUZZ_SEED=<n> picks another seed and FEZZ_FUZZ_RUNS=<x>
// scales the number of runs (a failure prints the seed and the shrunk case).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { get, sleep, startHost, type TestHost } from '../helpers/host.js';

const SEED = Number(process.env.FEZZ_FUZZ_SEED ?? 20_240_610);
const SCALE = Number(process.env.FEZZ_FUZZ_RUNS ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE));
/** Ids the fuzz never deploys or deletes: the functions that must keep serving. */
const BASE = ['abi-plug@1.0.0', 'healthy@1.0.0'];
/** Stands for the id of a real pending ABI request, filled in when the case runs. */
const REAL = '<<pending-id>>';

const b64 = (s: string | Uint8Array): string => Buffer.from(s).toString('base64');

// ---- the layout: <root>/a/b/c/d/functions, sentinels at every level ----

let root: string;
let fnDir: string;
let cacheDir: string;
let t: TestHost;
let initialTree: string[];
/** Where absolute-path uploads would land if they escaped (all inside <root>, or /tmp). */
let absTargets: string[];

/** Every path under `dir` except the functions directory, with its type and size. */
async function tree(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((x, y) => x.name.localeCompare(y.name))) {
    const p = path.join(rel, e.name);
    if (path.join(dir, p) === fnDir) { out.push(`${p}/ (functions)`); continue; }
    const st = await lstat(path.join(dir, p));
    out.push(`${p} ${e.isDirectory() ? 'dir' : `${st.size}`}`);
    if (e.isDirectory()) out.push(...await tree(dir, p));
  }
  return out;
}

/** Answers seen, by `<endpoint> <status>`: printed as a diagnostic to show what the cases reached. */
const seenStatuses = new Map<string, number>();

/** Admin request; fails the case on any 5xx. */
async function admin(method: string, p: string, body?: string, what = ''): Promise<{ status: number; text: string }> {
  const res = await fetch(`${t.host.adminUrl}${p}`, {
    method, body, headers: { authorization: `Bearer ${t.host.token}`, 'content-type': 'application/json' },
  });
  const text = await res.text();
  const tally = `${method} ${p.replace(/\?.*/, '').replace(/^\/admin\/functions\/.*/, '/admin/functions/…')} ${res.status}`;
  seenStatuses.set(tally, (seenStatuses.get(tally) ?? 0) + 1);
  assert.ok(res.status < 500, `${method} ${p} ${what} answered ${res.status}: ${text.slice(0, 500)}`);
  return { status: res.status, text };
}

/** The invariants checked after every case. */
async function checkInvariants(deployed: ReadonlySet<string>): Promise<void> {
  assert.deepEqual(await tree(root), initialTree, 'nothing was written outside the functions directory');
  for (const p of absTargets) await assert.rejects(lstat(p), `${p} was not created`);
  const top = (await readdir(fnDir)).filter((n) => n !== '.fezz-trash').sort();
  assert.deepEqual(top, [...BASE, ...deployed].sort(), 'the functions directory holds the deployed versions only');
  assert.deepEqual(await readdir(path.join(fnDir, '.fezz-trash')).catch(() => []), [], 'the trash is empty at rest');
  const h = await get(`${t.url}/healthy`);
  assert.equal(h.status, 200, `the healthy function still serves: ${h.text}`);
  assert.equal((await get(`${t.url}/rpc/healthy@1.0.0`)).text, 'healthy');
}

/** Deploy `body` (once, or twice at the same time); then delete what was deployed. */
async function deployCase(body: string, twice: boolean): Promise<void> {
  const answers = await Promise.all((twice ? [1, 2] : [1]).map(() => admin('POST', '/admin/deploy', body, body.slice(0, 300))));
  const deployed = new Set<string>();
  for (const a of answers) {
    if (a.status !== 201) continue;
    const { key } = JSON.parse(a.text) as { key: string };
    assert.ok(!BASE.includes(key), `the fuzz replaced ${key}`);
    deployed.add(key);
  }
  await checkInvariants(deployed);
  for (const key of deployed) {
    const at = key.indexOf('@');
    const del = await admin('DELETE', `/admin/functions/${encodeURIComponent(key.slice(0, at))}/${encodeURIComponent(key.slice(at + 1))}`);
    assert.equal(del.status, 200, del.text);
  }
  await checkInvariants(new Set());
}

// ---- generators ----

/** Any JSON value of the wrong shape, plus a few classics. */
const odd: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(1e308, -1, 0, 2 ** 53 + 2, 1.5, '', 'x'.repeat(5000), null, true, [], {}, '__proto__'),
);
const weighted = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>, goodWeight = 4): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: goodWeight, arbitrary: good }, { weight: 1, arbitrary: bad });

/**
 * Good values of a record, then one mutation: a field replaced by a bad value, a field
 * dropped, or an unknown field added. Most cases then fail exactly one check, deep inside.
 */
function mutated(good: fc.Arbitrary<Record<string, unknown>>, bad: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> {
  type Edit = (m: Record<string, unknown>) => Record<string, unknown>;
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    { weight: 4, arbitrary: fc.oneof(...Object.entries(bad).map(([k, arb]) => arb.map((v): Edit => (m) => ({ ...m, [k]: v })))) },
    { weight: 1, arbitrary: fc.constantFrom(...Object.keys(bad)).map((k): Edit => (m) => Object.fromEntries(Object.entries(m).filter(([n]) => n !== k))) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('extra', 'Id', '__proto__', 'constructor'), odd).map(([k, v]): Edit => (m) => ({ ...m, [k]: v })) },
  );
  return fc.tuple(good, edit).map(([m, f]) => f(m));
}

const goodRoute = fc.record({
  method: fc.constantFrom('GET', 'POST', '*', 'DELETE'),
  path: fc.constantFrom('/fz', '/fz/:p', '/fz/*', '/fz/a/:b'),
  handler: fc.constantFrom('h', 'fetch'),
}, { requiredKeys: ['path'] });
const badRoute = mutated(goodRoute, {
  method: fc.oneof(fc.constantFrom('get', 'FOO', '', 7), odd),
  path: fc.oneof(fc.constantFrom('fz', '/rpc/x', '/healthz', '/admin/x', '/:a/:a', '/a//b', '/%', '/*/*', '/healthy', '/fz/:p(^\\d+)', '/fz/(', '/', '/fz/::x', '/fz/:', ''), odd),
  handler: fc.oneof(fc.constantFrom('1x', 'constructor', '__proto__', 'default', 'a-b'), odd),
});
const badNumber = fc.oneof(fc.constantFrom(-1, 0, 1.5, 1e308, 2 ** 31, 2 ** 53 + 2, '5', null), odd);
const goodLimits = fc.record({
  timeoutMs: fc.integer({ min: 1000, max: 10_000 }), memoryMb: fc.constantFrom(64, 128), concurrency: fc.integer({ min: 1, max: 64 }),
  maxQueue: fc.integer({ min: 0, max: 100 }), maxBodyBytes: fc.integer({ min: 0, max: 1_000_000 }),
}, { requiredKeys: [] });
const goodInstances = fc.record({ min: fc.constantFrom(0, 1), max: fc.constantFrom(1, 2) }, { requiredKeys: [] });
/** Entry files every generated upload carries, so any good `entry` exists. */
const ENTRY_FILES = ['index.js', 'index.ts', 'sub/index.js'];
const goodManifest = fc.record({
  id: fc.constantFrom('fz-a', 'fz-b', '0', 'a-'),
  version: fc.constantFrom('1.0.0', '2.0.0', 'latest', '1.0.0-rc.1+b.2'),
  entry: fc.constantFrom(...ENTRY_FILES, './index.js', 'sub/../index.js'),
  runtime: fc.constantFrom('isolate', 'inline'),
  routes: fc.array(goodRoute, { maxLength: 2 }),
  env: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
  limits: goodLimits,
  instances: goodInstances,
  idleTtlSeconds: fc.constantFrom(300, 0.5),
}, { requiredKeys: ['id', 'version', 'entry'] });
const manifestArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: goodManifest },
  { weight: 8, arbitrary: mutated(goodManifest, {
    // 'healthy' and 'abi-plug' are never generated: the fuzz must not replace them.
    id: fc.oneof(fc.constantFrom('A', '-a', '', 'a_b', '../x', 'a/b', 'fz a', 'é', '.fezz-staging', 'node_modules', 'x'.repeat(300)), odd),
    version: fc.oneof(fc.constantFrom('01.0.0', '1.0', 'v1.0.0', '../1', '1.0.0/..', ' 1.0.0', '1.0.0\n', '', `1.0.0-${'x'.repeat(300)}`), odd),
    entry: fc.oneof(fc.constantFrom('../index.js', '../../x.js', '/etc/passwd', '/abs.js', 'sub', '', 'missing.js', 'index.js\0', 'fezz.json', '..', '.', 'C:\\x.js'), odd),
    runtime: fc.oneof(fc.constantFrom('process', 'native', 'wasm', 'ISOLATE'), odd),
    routes: fc.oneof(fc.array(fc.oneof(goodRoute, badRoute), { minLength: 1, maxLength: 3 }), odd),
    env: fc.oneof(fc.dictionary(fc.string({ maxLength: 4 }), odd, { minKeys: 1, maxKeys: 2 }), odd),
    limits: fc.oneof(mutated(goodLimits, { timeoutMs: badNumber, memoryMb: fc.oneof(fc.constantFrom(8, 7, 16_385), badNumber), concurrency: badNumber, maxQueue: badNumber, maxBodyBytes: badNumber }), odd),
    instances: fc.oneof(mutated(goodInstances, { min: fc.constantFrom(-1, 3, 257, 1.5, '1', null), max: fc.constantFrom(0, 257, 1e9, 1.5) }), odd),
    idleTtlSeconds: fc.oneof(fc.constantFrom(0, -1, 1e308, 7 * 24 * 3600 + 1, '5'), odd),
  }) },
  { weight: 1, arbitrary: odd },
);

/** Module sources: good, failing at load or start, or not a module at all. */
const sourceArb: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('export function h() { return new Response("h"); }\nexport default { fetch: () => new Response("fz") };\n') },
  { weight: 2, arbitrary: fc.constantFrom(
    'throw new Error("fuzz: top-level throw");\n',
    'export default {',
    'export const x = 1;\n',
    'export default 42;\n',
    'import x from "../../../../outside.js";\nexport default { fetch: () => new Response(String(x)) };\n',
    'const n: number = 1;\nexport default { fetch: (): Response => new Response(String(n)) };\n',
    '',
  ) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
);

/** Deploy bodies with generated manifests and (mostly) good files. */
const manifestUploadArb = fc.record({
  manifest: manifestArb,
  source: sourceArb,
  modes: fc.option(fc.dictionary(fc.constantFrom(...ENTRY_FILES, 'fezz.json', 'nope'), fc.constantFrom(0, 0o644, 0o755, 0o777), { maxKeys: 2 }), { freq: 4 }),
  twice: fc.boolean(),
}).map(({ manifest, source, modes, twice }) => {
  const files: Record<string, string> = { 'fezz.json': b64(JSON.stringify(manifest) ?? 'undefined') };
  for (const f of ENTRY_FILES) files[f] = b64(source);
  return { body: JSON.stringify(modes === null ? { files } : { files, modes }), twice };
});

/** File names: good ones, traversal, absolute, NUL, long, look-alikes, directory-ish. */
const fileNameArb = (): fc.Arbitrary<string> => fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('a.js', 'lib/b.js', 'x/y/z.txt', 'node_modules/p/index.js', 'é.txt', 'a b', '.hidden') },
  { weight: 3, arbitrary: fc.tuple(fc.integer({ min: 1, max: 7 }), fc.constantFrom('escape', 'd/escape', 'sentinel/keep.txt', 'fezz.json')).map(([n, f]) => '../'.repeat(n) + f) },
  { weight: 2, arbitrary: fc.constantFrom('ABS_ROOT', 'ABS_FN', 'ABS_TMP', '/etc/fezz-fuzz', 'C:\\fezz-fuzz', '\\\\srv\\x', '..\\..\\escape', 'a/../../escape', './../escape', 'a/./../../../escape') },
  { weight: 2, arbitrary: fc.constantFrom('a\0b', '\0', '', '.', '..', './', 'a/', 'a//b', './a.js', 'a.js/', '.git/config', 'x/.git', 'fezz.json/x', '%2e%2e/x', '%00') },
  { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'n'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 1200 }).map((n) => 'd/'.repeat(n) + 'f') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
);
const contentArb = weighted(fc.uint8Array({ maxLength: 32 }).map(b64), fc.constantFrom('!!!', '====', 'a', 'YQ', 'YQ===', 'é', ' YQ==', 'YQ==\n', '-_-_'), 4);

/** Deploy bodies with random file maps (and sometimes no valid body at all). */
const fileUploadArb = fc.oneof(
  { weight: 8, arbitrary: fc.record({
    manifest: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(JSON.stringify({ id: 'fz-up', version: '1.0.0', entry: 'index.js' })) }, { weight: 1, arbitrary: manifestArb.map((m) => JSON.stringify(m) ?? '') }, { weight: 1, arbitrary: fc.string() }),
    manifestName: weighted(fc.constant('fezz.json'), fc.constantFrom('./fezz.json', 'FEZZ.json', 'sub/fezz.json', 'fezz.json/')),
    withIndex: fc.boolean(),
    extra: fc.array(fc.tuple(fileNameArb(), contentArb), { maxLength: 4 }),
    modes: fc.option(fc.array(fc.tuple(fc.oneof(fileNameArb(), fc.constant('index.js')), weighted(fc.constantFrom(0, 0o755, 0o777), fc.constantFrom(-1, 512, 1.5, '493', null))), { maxLength: 2 }), { freq: 3 }),
    unknownField: fc.option(odd, { freq: 6 }),
    twice: fc.boolean(),
  }).map(({ manifest, manifestName, withIndex, extra, modes, unknownField, twice }) => {
    const files: Record<string, unknown> = { [manifestName as string]: b64(manifest) };
    if (withIndex) files['index.js'] = b64('export default { fetch: () => new Response("up") };\n');
    for (const [name, content] of extra) files[absName(name)] = content;
    const body: Record<string, unknown> = { files };
    if (modes !== null) body.modes = Object.fromEntries(modes.map(([n, m]) => [absName(n), m]));
    if (unknownField !== null) body.unknown = unknownField;
    return { body: JSON.stringify(body), twice };
  }) },
  { weight: 1, arbitrary: fc.oneof(odd.map((v) => JSON.stringify(v) ?? ''), fc.string(), fc.constantFrom('', '{', '{"files":5}', '{"files":{}}', '{"files":{"fezz.json":null}}', '[[[[[[[[[[', '{"files":{"fezz.json":"e30="},"modes":{"fezz.json":1e400}}')).map((body) => ({ body, twice: false })) },
);

/** `ABS_*` placeholders become absolute paths under the fuzz root (checked not to appear). */
function absName(name: string): string {
  if (name === 'ABS_ROOT') return absTargets[0]!;
  if (name === 'ABS_FN') return absTargets[1]!;
  if (name === 'ABS_TMP') return absTargets[2]!;
  return name;
}

// ---- ABI cases ----

/** Header names and values a plugin should not push, or that the host must handle with care. */
const headerName = fc.oneof(fc.constantFrom('content-length', 'transfer-encoding', 'connection', 'x-request-id', 'Host', 'bad name', 'x\r\ny', '', 'é', 'upgrade', 'date', 'x-a'), fc.string({ maxLength: 8 }));
const headerValue = fc.oneof(fc.constantFrom('5', '0', '-1', 'chunked', 'close', 'a\r\nb: c', 'é', '\u0000', 'x'.repeat(9000), '\u2028', 'keep-alive, upgrade', 'v'), fc.string({ maxLength: 16 }));
const goodResponseInfo = fc.record({
  status: fc.constantFrom(200, 201, 204, 304, 404, 500, 599),
  headers: fc.dictionary(fc.constantFrom('x-a', 'content-type', 'set-cookie', 'cache-control'), fc.oneof(fc.constantFrom('v', '', 'text/plain', 'a=b'), fc.array(fc.constantFrom('v', 'a=b'), { maxLength: 2 })), { maxKeys: 2 }),
  body: fc.string({ maxLength: 40 }),
  bodyEncoding: fc.constant('utf8'),
}, { requiredKeys: [] });
const responseInfoArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: goodResponseInfo },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => ({ status: 200, body: b64(b), bodyEncoding: 'base64' })) },
  { weight: 6, arbitrary: mutated(goodResponseInfo, {
    status: fc.oneof(fc.integer({ min: -5, max: 1000 }), odd),
    headers: fc.oneof(fc.dictionary(headerName, fc.oneof(headerValue, fc.array(headerValue, { maxLength: 3 }), odd), { minKeys: 1, maxKeys: 3 }), odd),
    body: fc.oneof(fc.constantFrom('x'.repeat(100_000), '\u0000', '\ud800'), odd),
    bodyEncoding: fc.oneof(fc.constantFrom('hex', 'UTF8', '', 'base64'), odd),
  }) },
);
const requestIdArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(REAL) },
  { weight: 2, arbitrary: fc.constantFrom('', '0', '-1', '1', '00001', '9223372036854775807', '9223372036854775808', '1e3', ' 1', '1 ', '１', '0x10', '9'.repeat(40), '1%00', '1&request_id=2') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);
const bodyIdArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 3, arbitrary: requestIdArb }, { weight: 1, arbitrary: odd });
const abiArb = fc.oneof(
  fc.record({ endpoint: fc.constant('push-response-info'), id: requestIdArb, body: fc.oneof({ weight: 4, arbitrary: responseInfoArb.map((r) => JSON.stringify(r)) }, { weight: 1, arbitrary: fc.oneof(odd.map((v) => JSON.stringify(v) ?? ''), fc.string(), fc.constantFrom('', '{', '\u0000', '[['.repeat(50_000))) }) }),
  fc.record({ endpoint: fc.constant('push-error-info'), id: requestIdArb, body: fc.oneof(fc.record({ message: weighted(fc.string({ maxLength: 20 }), odd) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)), odd.map((v) => JSON.stringify(v) ?? ''), fc.string()) }),
  fc.record({ endpoint: fc.constant('get-request-info'), id: requestIdArb, body: fc.constant('') }),
  fc.record({ endpoint: fc.constant('get-request-info/batch'), id: fc.constant(null), body: weighted(fc.record({ ids: weighted(fc.array(bodyIdArb, { maxLength: 4 }), odd) }, { requiredKeys: [] }), odd, 3).map((v) => JSON.stringify(v) ?? '') }),
  fc.record({ endpoint: fc.constant('push-response-info/batch'), id: fc.constant(null), body: weighted(fc.record({ responses: weighted(fc.array(fc.oneof(
    fc.record({ id: bodyIdArb, response: weighted(responseInfoArb, odd, 3) }, { requiredKeys: [] }),
    fc.record({ id: bodyIdArb, error: weighted(fc.record({ message: fc.string({ maxLength: 10 }) }), odd, 3) }, { requiredKeys: [] }),
    odd,
  ), { maxLength: 4 }), odd, 4) }, { requiredKeys: [] }), odd, 4).map((v) => JSON.stringify(v) ?? '') }),
);

/** Start a request to the ABI plugin and learn its pending id (the plugin prints it). */
async function pendingRequest(): Promise<{ id: string; answer: Promise<{ status: number } | Error> }> {
  const seen = new Set(t.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('pending ')).map((l) => l.msg));
  const answer = fetch(`${t.url}/rpc/abi-plug/x`).then(async (r) => { await r.arrayBuffer(); return { status: r.status }; }, (err: Error) => err);
  const deadline = Date.now() + 5000;
  for (;;) {
    const line = t.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('pending ') && !seen.has(l.msg));
    if (line !== undefined) return { id: line.msg.slice('pending '.length), answer };
    assert.ok(Date.now() < deadline, 'the ABI plugin got the request');
    await sleep(2);
  }
}

async function abiCase(c: { endpoint: string; id: string | null; body: string }): Promise<void> {
  const needsReal = c.id === REAL || c.body.includes(JSON.stringify(REAL));
  const pending = needsReal ? await pendingRequest() : null;
  const real = pending?.id ?? '1';
  const query = c.id === null ? '' : `?request_id=${c.id === REAL ? real : encodeURIComponent(c.id)}`;
  const body = c.body.split(JSON.stringify(REAL)).join(JSON.stringify(real));
  const method = c.endpoint === 'get-request-info' ? 'GET' : 'POST';
  await admin(method, `/admin/${c.endpoint}${query}`, method === 'GET' ? undefined : body, body.slice(0, 300));
  if (pending !== null) {
    // Answer it if the case did not, so the client does not wait for its deadline.
    await admin('POST', `/admin/push-error-info?request_id=${pending.id}`, '{"message":"fuzz cleanup"}');
    const answer = await pending.answer;
    assert.ok(!(answer instanceof Error), `the plugin's client got an HTTP answer (${String(answer)})`);
  }
  await checkInvariants(new Set());
}

// ---- odd raw requests ----

const segmentArb = fc.oneof(
  fc.constantFrom('admin', 'functions', 'deploy', 'reload', 'stats', 'logs', 'metrics', 'get-request-info', 'push-response-info', 'push-error-info', 'batch', 'fz-a', '1.0.0'),
  fc.constantFrom('%ZZ', '%E0%A4%A', '%', '%2F', '%2e%2e', '%00', '%C0%AF', '..', '.', '', 'é', '%FF%FE', '*'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 6 }).map(encodeURIComponent),
);
/** Admin endpoints, with `:s` parameters to fill from odd segments. */
const ROUTE_TEMPLATES = [['GET', '/admin/functions/:s'], ['DELETE', '/admin/functions/:s/:s'], ['POST', '/admin/deploy'], ['POST', '/admin/reload'],
  ['GET', '/admin/stats'], ['GET', '/admin/logs'], ['GET', '/metrics'], ['GET', '/admin/get-request-info'], ['POST', '/admin/push-response-info'],
  ['POST', '/admin/push-error-info'], ['POST', '/admin/get-request-info/batch'], ['POST', '/admin/push-response-info/batch']] as const;
const anyMethod = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'HEAD', 'OPTIONS', 'PATCH');
const rawArb = fc.record({
  route: fc.oneof(
    // An endpoint (mostly with its own method), its parameters odd.
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...ROUTE_TEMPLATES), fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyMethod }), segmentArb, segmentArb)
      .map(([[method, tpl], other, a, b]) => ({ method: other ?? method, target: tpl.replace(':s', a).replace(':s', b) })) },
    { weight: 2, arbitrary: fc.tuple(anyMethod, fc.array(segmentArb, { minLength: 1, maxLength: 4 })).map(([method, s]) => ({ method, target: `/admin/${s.join('/')}` })) },
    { weight: 1, arbitrary: fc.tuple(anyMethod, fc.constantFrom('*', 'http://[bad/admin/functions', 'http://x/admin/functions', '//admin/functions', '/admin/functions?%ZZ=%E0', '/admin/functions#x', '/metrics?x'))
      .map(([method, target]) => ({ method, target })) },
  ),
  query: fc.array(fc.tuple(fc.constantFrom('fn', 'since', 'request_id', 'x', '', '%ZZ'), fc.oneof(fc.constantFrom('%ZZ', '-1', '1e9', 'NaN', '', '@', 'a@b@c', '9'.repeat(30)), fc.string({ maxLength: 8 }).map(encodeURIComponent))), { maxLength: 3 }),
  headers: fc.array(fc.tuple(fc.constantFrom('x-a', 'accept', 'content-type', 'x-request-id', 'cookie', 'user-agent', 'x-b', 'expect'), fc.oneof(fc.constantFrom('', 'x'.repeat(8000), 'application/json; charset=utf-16', '100-continue', 'a\tb'), fc.string({ unit: 'grapheme-ascii', maxLength: 10 }).filter((s) => !/[\r\n]/.test(s)))), { maxLength: 3 }),
  body: fc.oneof(fc.constant(''), fc.string({ maxLength: 30 }), odd.map((v) => JSON.stringify(v) ?? '')),
});

/** Send one raw HTTP/1.1 request; the status, or null when the connection closed without one. */
function rawRequest(r: { route: { method: string; target: string }; query: Array<[string, string]>; headers: Array<[string, string]>; body: string }): Promise<number | null> {
  const { method, target } = r.route;
  const sep = target.includes('?') ? '&' : '?';
  const q = r.query.length === 0 ? '' : sep + r.query.map(([k, v]) => `${k}=${v}`).join('&');
  const body = Buffer.from(r.body);
  const head = [`${method} ${target}${q} HTTP/1.1`, 'host: 127.0.0.1', `authorization: Bearer ${t.host.token}`, `content-length: ${body.length}`, 'connection: close',
    ...r.headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  return new Promise((resolve) => {
    const s = net.connect(Number(new URL(t.host.adminUrl).port), '127.0.0.1');
    let out = '';
    s.setTimeout(3000, () => s.destroy());
    s.on('data', (d: Buffer) => { out += d.toString('latin1'); });
    s.on('error', () => undefined);
    s.on('close', () => {
      // The final status: after any interim `100 Continue`.
      const statuses = [...out.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1])).filter((n) => n >= 200);
      resolve(statuses[0] ?? null);
    });
    // No half-close: Node takes a client's FIN as an abort. `connection: close` ends it.
    s.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]));
  });
}

// ---- the test ----

describe('admin listener fuzz', () => {
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fezz-fuzz-'));
    cacheDir = await mkdtemp(path.join(os.tmpdir(), 'fezz-fuzz-cache-'));
    fnDir = path.join(root, 'a', 'b', 'c', 'd', 'functions');
    await mkdir(fnDir, { recursive: true });
    for (const level of ['', 'a', 'a/b', 'a/b/c', 'a/b/c/d']) {
      await mkdir(path.join(root, level, 'sentinel'));
      await writeFile(path.join(root, level, 'sentinel', 'keep.txt'), 'keep\n');
    }
    absTargets = [path.join(root, 'abs-escape'), path.join(root, 'a', 'b', 'c', 'd', 'abs-escape'), path.join(os.tmpdir(), `fezz-fuzz-abs-${path.basename(root)}`)];
    const healthy = path.join(fnDir, 'healthy@1.0.0');
    await mkdir(healthy);
    await writeFile(path.join(healthy, 'fezz.json'), JSON.stringify({ id: 'healthy', version: '1.0.0', entry: 'index.js', routes: [{ method: 'GET', path: '/healthy' }] }));
    await writeFile(path.join(healthy, 'index.js'), 'export default { fetch: () => new Response("healthy") };\n');
    // A process plugin that prints each pending id, so the fuzz can push answers for it.
    const plug = path.join(fnDir, 'abi-plug@1.0.0');
    await mkdir(plug);
    await writeFile(path.join(plug, 'fezz.json'), JSON.stringify({ id: 'abi-plug', version: '1.0.0', entry: 'plugin.cjs', runtime: 'process', limits: { timeoutMs: 5000 }, instances: { min: 1, max: 1 } }));
    await writeFile(path.join(plug, 'plugin.cjs'), `#!${process.execPath}\nrequire('node:readline').createInterface({ input: process.stdin }).on('line', (id) => console.log('pending ' + id));\n`);
    await chmod(path.join(plug, 'plugin.cjs'), 0o755);
    t = await startHost(fnDir, { cacheDir, logLevel: 'info' });
    initialTree = await tree(root);
    await checkInvariants(new Set());
  });
  after(async () => {
    await t?.close();
    await rm(root, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  });

  const params = (numRuns: number) => ({ seed: SEED, numRuns: runs(numRuns), timeout: 30_000, includeErrorInReport: true });

  /** Print what the cases reached (answers by endpoint and status), then start counting afresh. */
  const tallies = (c: { diagnostic(msg: string): void }): void => {
    c.diagnostic(`seed ${SEED}; answers: ${[...seenStatuses].sort().map(([k, n]) => `${k} x${n}`).join(', ')}`);
    seenStatuses.clear();
  };

  it('manifests: random and mutated fezz.json values never get a 5xx', async (c) => {
    await fc.assert(fc.asyncProperty(manifestUploadArb, ({ body, twice }) => deployCase(body, twice)), params(120));
    tallies(c);
  });

  it('uploads: random file maps (traversal, absolute, NUL, long, duplicate names, modes) never get a 5xx or escape', async (c) => {
    await fc.assert(fc.asyncProperty(fileUploadArb, ({ body, twice }) => deployCase(body, twice)), params(250));
    tallies(c);
  });

  it('ABI pushes: random bodies and request ids never get a 5xx', async (c) => {
    await fc.assert(fc.asyncProperty(abiArb, abiCase), params(250));
    tallies(c);
  });

  it('odd raw requests (targets, %-encoding, query strings, headers) never get a 5xx', async (c) => {
    const raw = new Map<string, number>();
    await fc.assert(fc.asyncProperty(rawArb, async (r) => {
      const status = await rawRequest(r);
      raw.set(String(status), (raw.get(String(status)) ?? 0) + 1);
      assert.ok(status === null || status < 500, `${r.route.method} ${r.route.target} answered ${status}`);
      await checkInvariants(new Set());
    }), params(250));
    c.diagnostic(`raw answers: ${[...raw].sort().map(([k, n]) => `${k} x${n}`).join(', ')}`);
  });

  it('leaves no staging directory and serves on', async () => {
    assert.ok(!(await readdir(fnDir)).includes('.fezz-staging'));
    await checkInvariants(new Set());
    const errors = t.logs.filter((l) => l.msg === 'admin request failed');
    assert.deepEqual(errors, [], 'no admin request failed inside the host');
  });
});
