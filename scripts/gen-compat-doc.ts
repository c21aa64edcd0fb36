// Writes docs/compatibility.md from what the compatibility probe reports: the function
// test/fixtures/compat-probe (which uses each Workers/Deno API for real) run in a real host,
// plus requests checked over HTTP against that host. test/unit/compat-doc.test.ts runs the same
// probe and fails when the committed doc differs from what it reports.
//
//   npm run gen:compat-doc                          this Node's column (other columns kept)
//   npm run gen:compat-doc -- --node /path/to/node  also that Node's column (repeatable)
//   node --import tsx scripts/gen-compat-doc.ts --json   this Node's report as JSON (stdout)
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { createHost } from '../src/index.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The committed doc. */
export const COMPAT_DOC = path.join(ROOT, 'docs', 'compatibility.md');
const PROBE_DIR = path.join(ROOT, 'test', 'fixtures', 'compat-probe');

/** One row: an API or a behaviour, and what this Node's host showed. */
export interface ProbeRow {
  id: string;
  group: 'web' | 'workers' | 'deno' | 'modules' | 'http';
  /** Markdown. */
  api: string;
  note: string | null;
  ok: boolean;
  /** Shown after "yes", e.g. which implementation. */
  detail: string | null;
}

/** What one run of the probe found, on one Node major. */
export interface ProbeReport {
  /** Node major version the host ran on, e.g. 20. */
  node: number;
  rows: ProbeRow[];
  /**
   * Rows whose `ok` differs from the thread tier's in the inline runtime and in the sandbox
   * tier (ids), or a reason that tier could not be probed.
   */
  tierMismatches: { inline: string[]; sandbox: string[] };
}

interface RawResponse { status: number; statusText: string; headers: http.IncomingHttpHeaders; body: Buffer }

/** One request on a fresh connection; rejects with the socket error (e.g. ECONNRESET). */
function request(base: string, reqPath: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: reqPath, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, statusText: res.statusMessage!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

type Probe = (base: string) => Promise<boolean | string>;

/** The requests-and-responses rows: checked from outside, against the host running the probe. */
const HTTP_CHECKS: Array<{ id: string; api: string; note?: string; run: Probe }> = [
  { id: 'http-url', api: '`request.url`: absolute, from the `Host` header, the path and the query', run: async (base) => {
    const r = await request(base, '/probe/request?x=1', { headers: { host: 'probe.example:8443' } });
    return (JSON.parse(r.body.toString()) as { url: string }).url === 'http://probe.example:8443/probe/request?x=1';
  } },
  { id: 'http-client-ip', api: '`cf-connecting-ip`, `x-real-ip`: the client\'s address, set by the host', note: 'a client\'s own values are dropped; behind proxies see `trustProxy` (`FEZZ_TRUST_PROXY`), which also gives `request.url` the scheme of `x-forwarded-proto`', run: async (base) => {
    const r = await request(base, '/probe/request', { headers: { 'cf-connecting-ip': '203.0.113.1', 'x-real-ip': '203.0.113.2' } });
    const h = (JSON.parse(r.body.toString()) as { headers: Record<string, string> }).headers;
    return h['cf-connecting-ip'] === '127.0.0.1' && h['x-real-ip'] === '127.0.0.1';
  } },
  { id: 'http-status-text', api: 'A custom `statusText` on the status line', run: async (base) => {
    const r = await request(base, '/probe/status-text');
    return r.status === 418 && r.statusText === 'Short And Stout';
  } },
  { id: 'http-response-error', api: '`Response.error()`: the client\'s connection is reset', note: 'counted as status 0 in `fezz_requests_total`', run: async (base) => {
    try {
      await request(base, '/probe/error');
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ECONNRESET';
    }
  } },
  { id: 'http-gzip', api: 'A body the function compressed itself (`content-encoding: gzip`) goes out as is', run: async (base) => {
    const r = await request(base, '/probe/gzip', { headers: { 'accept-encoding': 'gzip' } });
    return r.headers['content-encoding'] === 'gzip' && gunzipSync(r.body).toString() === 'gzip passed through, '.repeat(20);
  } },
  { id: 'http-stream', api: 'A `ReadableStream` response body is streamed (chunked, as it is produced)', run: async (base) => {
    const r = await request(base, '/probe/stream');
    return r.headers['transfer-encoding'] === 'chunked' && r.body.toString() === 'one two three';
  } },
  { id: 'http-request-stream', api: '`request.body` as a stream (a 2 MiB chunked upload)', run: async (base) => {
    const r = await request(base, '/probe/echo-stream', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: Buffer.alloc(2 * 1024 * 1024, 120) });
    return (JSON.parse(r.body.toString()) as { bytes: number }).bytes === 2 * 1024 * 1024;
  } },
  { id: 'http-wildcard-base', api: 'A route `/x/*` also matches `/x/`', run: async (base) => {
    const r = await request(base, '/probe/');
    return r.status === 200 && r.body.toString() === 'wildcard base';
  } },
  { id: 'http-options', api: '`OPTIONS` reaches the function (its own CORS code answers preflights)', note: 'a route without an `OPTIONS` method goes to the function\'s `fetch`', run: async (base) => {
    const r = await request(base, '/probe/anything', { method: 'OPTIONS', headers: { origin: 'https://a.example', 'access-control-request-method': 'POST' } });
    return r.status === 204 && r.headers['x-probe'] === 'options';
  } },
  { id: 'http-head', api: '`HEAD` runs the `GET` handler; the body is dropped', run: async (base) => {
    const r = await request(base, '/probe/thing', { method: 'HEAD' });
    return r.status === 200 && r.headers['x-probe'] === 'get' && r.body.length === 0;
  } },
];

const GROUPS: Array<[ProbeRow['group'], string, string]> = [
  ['web', 'Web APIs', 'Workers and Deno both have these.'],
  ['workers', 'Workers-only APIs', ''],
  ['deno', 'Deno-only APIs', ''],
  ['modules', 'The function contract and module imports', ''],
  ['http', 'Requests and responses', 'Checked over HTTP against the host that runs the probe.'],
];

/**
 * Start a host on test/fixtures/compat-probe (port 0, loopback), run the probe in the thread
 * tier, the inline runtime and the sandbox tier, check the requests and responses over HTTP,
 * and stop the host.
 * @throws when the host cannot start or the probe function does not load.
 */
export async function probeReport(): Promise<ProbeReport> {
  const lines: string[] = [];
  const host = await createHost({
    dir: PROBE_DIR, port: 0, adminPort: 0, logLevel: 'warn', cacheDir: path.join(os.tmpdir(), 'fezz-test-cache'),
    logDestination: new Writable({ write(chunk: Buffer, _e, cb) { lines.push(chunk.toString()); cb(); } }),
  });
  try {
    const { url } = await host.listen();
    const problems = host.problems.filter((p) => !p.file.includes('compat-probe-sandbox'));
    if (problems.length > 0) throw new Error(`the compatibility probe did not load: ${JSON.stringify(problems)}`);
    const apis = async (p: string): Promise<ProbeRow[] | string> => {
      const r = await request(url, p);
      if (r.status !== 200) return `${p}: HTTP ${r.status} ${r.body.toString().slice(0, 200)}`;
      return (JSON.parse(r.body.toString()) as { checks: ProbeRow[] }).checks;
    };
    const thread = await apis('/probe/apis');
    if (typeof thread === 'string') throw new Error(`the compatibility probe failed: ${thread}\n${lines.join('')}`);
    const rows = thread;
    // ctx.waitUntil: the probe's promise ran after its response.
    const waited = rows.find((r) => r.id === 'wait-until');
    if (waited !== undefined) {
      let n = 0;
      for (let i = 0; i < 50 && n === 0; i++) {
        n = (JSON.parse((await request(url, '/probe/wait-until')).body.toString()) as { waitedUntil: number }).waitedUntil;
        if (n === 0) await new Promise((r) => setTimeout(r, 10));
      }
      waited.ok = waited.ok && n > 0;
    }
    for (const c of HTTP_CHECKS) {
      let value: boolean | string;
      try { value = await c.run(url); } catch { value = false; }
      rows.push({ id: c.id, group: 'http', api: c.api, note: c.note ?? null, ok: value !== false, detail: typeof value === 'string' ? value : null });
    }
    const mismatches = async (p: string): Promise<string[]> => {
      const other = await apis(p);
      if (typeof other === 'string') return [other];
      const okOf = new Map(other.map((r) => [r.id, r.ok]));
      return thread.filter((r) => r.group !== 'http' && okOf.get(r.id) !== r.ok).map((r) => r.id);
    };
    const sandboxProblem = host.problems.find((p) => p.file.includes('compat-probe-sandbox'));
    return {
      node: Number(process.versions.node.split('.')[0]),
      rows,
      tierMismatches: {
        inline: await mismatches('/rpc/compat-probe-inline/apis'),
        sandbox: sandboxProblem !== undefined ? [`the sandbox tier could not load the probe: ${sandboxProblem.message}`] : await mismatches('/rpc/compat-probe-sandbox/apis'),
      },
    };
  } finally {
    await host.close(2000);
  }
}

/** Rows where the inline runtime differs from the thread tier by design (it runs on the host's thread, in its realm). */
export const INLINE_DIFFERS: readonly string[] = ['process-env'];

/** Per Node major, per row id: `[ok, detail]`. */
export type Columns = Record<string, Record<string, [boolean, string | null]>>;

const DATA_MARK = '<!-- probe results (read back by npm run gen:compat-doc):';

/** The columns recorded in a doc (its trailing data comment), or none. */
export function columnsOf(doc: string): Columns {
  const at = doc.indexOf(DATA_MARK);
  if (at === -1) return {};
  const end = doc.indexOf('-->', at);
  return JSON.parse(doc.slice(at + DATA_MARK.length, end)) as Columns;
}

/** The column of one report. */
export function columnOf(report: ProbeReport): Record<string, [boolean, string | null]> {
  const out: Record<string, [boolean, string | null]> = {};
  for (const r of report.rows) out[r.id] = [r.ok, r.detail];
  return out;
}

function cell(v: [boolean, string | null] | undefined): string {
  if (v === undefined) return '? (not probed)';
  return v[0] ? (v[1] === null ? 'yes' : `yes: ${v[1]}`) : 'no';
}

/**
 * docs/compatibility.md: the rows of `report` (this Node's run: the APIs, groups and notes),
 * with one column per Node major in `columns` (this Node's own column taken from `report`).
 */
export function renderCompatDoc(report: ProbeReport, columns: Columns): string {
  const all: Columns = { ...columns, [report.node]: columnOf(report) };
  const majors = Object.keys(all).map(Number).sort((a, b) => a - b);
  const out = [
    '# Compatibility: Workers and Deno APIs in fezz',
    '',
    'What a fezz function has of the Cloudflare Workers and Deno runtimes. Every row is found by a',
    'probe, not written by hand: the function `test/fixtures/compat-probe` uses each API for real',
    '(a round trip, a signature, an instance) inside a real host, and the requests and responses',
    'are checked over HTTP against that host. The probe gives the same answers in the thread tier',
    '(shown), the sandbox tier and the inline runtime, except `process.env`, which an inline',
    'function shares with the host; the test checks that too.',
    '',
    'Generated by `npm run gen:compat-doc` (add `-- --node <path>` to fill in another Node\'s',
    'column); `test/unit/compat-doc.test.ts` fails when this file differs from what the probe',
    'reports on the Node it runs on (CI runs it on Node 20, Node 24 and Node 26).',
  ];
  for (const [group, title, intro] of GROUPS) {
    const rows = report.rows.filter((r) => r.group === group);
    if (rows.length === 0) continue;
    out.push('', `## ${title}`, '');
    if (intro !== '') out.push(intro, '');
    out.push(`| API | ${majors.map((m) => `Node ${m}`).join(' | ')} | notes |`, `| --- | ${majors.map(() => '---').join(' | ')} | --- |`);
    for (const r of rows) out.push(`| ${r.api} | ${majors.map((m) => cell(all[m]![r.id])).join(' | ')} | ${r.note ?? ''} |`);
  }
  out.push('', `${DATA_MARK} ${JSON.stringify(all)} -->`, '');
  return out.join('\n');
}

/** The committed doc, or '' when there is none yet. */
export function committedDoc(): string {
  try { return readFileSync(COMPAT_DOC, 'utf8'); } catch { return ''; }
}

/** Run the probe under another Node binary (this script with `--json`) and return its report. */
function reportUnder(node: string): ProbeReport {
  const r = spawnSync(node, ['--import', 'tsx', fileURLToPath(import.meta.url), '--json'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${node}: the probe failed (exit ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeReport;
}

async function main(argv: string[]): Promise<void> {
  const report = await probeReport();
  if (argv.includes('--json')) { process.stdout.write(JSON.stringify(report)); return; }
  const columns = columnsOf(committedDoc());
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--node') continue;
    const other = reportUnder(argv[++i]!);
    columns[other.node] = columnOf(other);
    console.log(`Node ${other.node}: probed (${argv[i]})`);
  }
  const mismatched = [...report.tierMismatches.inline.filter((id) => !INLINE_DIFFERS.includes(id)), ...report.tierMismatches.sandbox];
  if (mismatched.length > 0) console.warn(`warning: tiers differ from the thread tier: ${JSON.stringify(report.tierMismatches)}`);
  writeFileSync(COMPAT_DOC, renderCompatDoc(report, columns));
  console.log(`wrote ${path.relative(process.cwd(), COMPAT_DOC)} (Node ${report.node} probed; columns: ${[...new Set([...Object.keys(columns), String(report.node)])].join(', ')})`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => { console.error(err); process.exitCode = 1; });
}
