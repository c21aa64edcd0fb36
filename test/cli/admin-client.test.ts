/**
 * `fezz list`, `fezz deploy` and `fezz logs` against a stand-in admin listener that speaks
 * the admin API contract (docs/admin-api.md): what goes on the wire, and what the user sees
 * for answers, errors and an unreachable host. The same commands against a real
 * `fezz serve` are covered by the host's own tests.
 */
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdminClient, CliError, DEFAULT_HOST_URL, normaliseHostUrl, type FunctionsList, type LogLine } from '../../src/cli/admin-client.js';
import { scaffoldFunction } from '../../src/cli/commands/new.js';
import { formatLogLine } from '../../src/cli/commands/logs.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const TOKEN = 'fake-admin-token-0123456789';

interface Run { code: number | null; stdout: string; stderr: string }

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Run>; out: () => string } {
  const childEnv: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) childEnv[k] = v;
  childEnv.FEZZ_TOKEN_FILE = path.join(os.tmpdir(), `fezz-test-no-token-${process.pid}`, 'admin-token'); // never the user's real one
  Object.assign(childEnv, env);
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done, out: () => stdout };
}

const fezz = (args: string[], env: Record<string, string> = {}): Promise<Run> => start(args, env).done;
const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '');

// ---- a stand-in admin listener ----

interface Seen { method: string; url: string; auth: string | undefined; contentType: string | undefined; body: string }

const LIST: FunctionsList = {
  functions: [
    {
      key: 'hello@1.0.0', id: 'hello', version: '1.0.0', runtime: 'isolate', latest: true, state: 'warm',
      routes: [{ method: 'GET', path: '/hello', handler: null }],
      stats: { instances: 1, inflight: 0, queued: 0, coldStarts: 1, evictions: 0, crashes: 0, timeouts: 0, lastError: null, requests: 12, errors: 1, clientAborts: 0, p50Ms: 0.4, p99Ms: 2.1 },
    },
    {
      key: 'echo-go@1.0.0', id: 'echo-go', version: '1.0.0', runtime: 'process', latest: true, state: 'cold', routes: [],
      stats: { instances: 0, inflight: 0, queued: 0, coldStarts: 0, evictions: 0, crashes: 0, timeouts: 0, lastError: null, requests: 0, errors: 0, clientAborts: 0, p50Ms: null, p99Ms: null },
    },
  ],
  problems: [{ file: 'functions/x@1.0.0/fezz.json', code: 'FEZZ_ERR_MANIFEST_INVALID', message: 'functions/x@1.0.0/fezz.json: field "id": must match [a-z0-9][a-z0-9-]*' }],
};

const LOG_LINES: LogLine[] = [
  { time: Date.UTC(2025, 0, 2, 3, 4, 5, 678), level: 'info', fn: 'hello@1.0.0', requestId: '111', msg: 'first' },
  { time: Date.UTC(2025, 0, 2, 3, 4, 6, 0), level: 'error', fn: 'hello@2.0.0', requestId: '222', msg: 'second', err: 'boom' },
];

const fake = {
  seen: [] as Seen[],
  deployAnswer: { status: 201, body: { key: 'greet@0.1.0', status: 'serving' } as unknown },
  /** In follow mode: whether to end the stream after the recent lines. */
  endFollow: false,
  logsClosed: 0,
  push: null as ((line: LogLine) => void) | null,
};

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url!, 'http://x');
    fake.seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, contentType: req.headers['content-type'], body: Buffer.concat(chunks).toString() });
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      json(401, { error: 'Unauthorized', code: 'FEZZ_ERR_ABI_UNAUTHORIZED', message: 'Missing or wrong bearer token', statusCode: 401 });
    } else if (req.method === 'GET' && url.pathname === '/admin/functions') {
      json(200, LIST);
    } else if (req.method === 'POST' && url.pathname === '/admin/deploy') {
      json(fake.deployAnswer.status, fake.deployAnswer.body);
    } else if (req.method === 'GET' && url.pathname === '/admin/logs') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const since = Number(url.searchParams.get('since') ?? 100);
      for (const l of LOG_LINES.slice(-since)) res.write(JSON.stringify(l) + '\n');
      if (url.searchParams.get('follow') !== '1' || fake.endFollow) { res.end(); return; }
      fake.push = (line) => res.write(JSON.stringify(line) + '\n');
      res.on('close', () => { fake.logsClosed++; fake.push = null; });
    } else {
      json(404, { error: 'Not Found', code: 'FEZZ_ERR_ADMIN_NOT_FOUND', message: `No admin endpoint ${req.method} ${url.pathname}`, statusCode: 404 });
    }
  });
});

let admin: string;
let tmp: string;
before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  admin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-admin-cli-'));
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  fake.seen = [];
  fake.deployAnswer = { status: 201, body: { key: 'greet@0.1.0', status: 'serving' } };
  fake.endFollow = false;
});

describe('resolving the admin listener', () => {
  it('normalises URLs', () => {
    assert.equal(normaliseHostUrl('127.0.0.1:3001'), 'http://127.0.0.1:3001');
    assert.equal(normaliseHostUrl('https://fezz.example/'), 'https://fezz.example');
    assert.throws(() => normaliseHostUrl('ftp://x'), CliError);
  });

  it('flags win over the environment, which wins over the default', () => {
    assert.equal(AdminClient.from({ token: 't' }, {}).baseUrl, DEFAULT_HOST_URL);
    assert.equal(AdminClient.from({ token: 't' }, { FEZZ_HOST: 'http://h:1' }).baseUrl, 'http://h:1');
    assert.equal(AdminClient.from({ token: 't', hostUrl: 'http://f:2' }, { FEZZ_HOST: 'http://h:1' }).baseUrl, 'http://f:2');
    assert.throws(() => AdminClient.from({}, { FEZZ_TOKEN_FILE: '/nonexistent/fezz/admin-token' }), /no admin token: pass --token-file, set FEZZ_TOKEN_FILE or FEZZ_TOKEN/);
    assert.doesNotThrow(() => AdminClient.from({}, { FEZZ_TOKEN: 'x' }));
  });

  it('FEZZ_HOST and FEZZ_TOKEN reach the command; --token overrides FEZZ_TOKEN', async () => {
    const viaEnv = await fezz(['list'], { FEZZ_HOST: admin, FEZZ_TOKEN: TOKEN });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const viaFlag = await fezz(['list', '--token', TOKEN], { FEZZ_HOST: admin, FEZZ_TOKEN: 'wrong' });
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.ok(fake.seen.every((s) => s.auth === `Bearer ${TOKEN}`));
  });

  it('a wrong token is one line naming the code and what to check', async () => {
    const r = await fezz(['list', '--host-url', admin, '--token', 'wrong']);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [`fezz: FEZZ_ERR_ABI_UNAUTHORIZED: Missing or wrong bearer token (check --token/FEZZ_TOKEN for ${admin})`]);
  });

  it('a host that is not running is one line saying so', async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    for (const args of [['list'], ['logs', 'hello'], ['deploy', path.join(ROOT, 'examples', 'functions', 'hello@1.0.0')]]) {
      const r = await fezz([...args, '--host-url', url, '--token', TOKEN]);
      assert.equal(r.code, 1, args[0]);
      assert.deepEqual(lines(r.stderr), [`fezz: cannot reach the admin listener at ${url} (is fezz serve running? set --host-url/FEZZ_HOST)`], args[0]);
    }
  });
});

describe('fezz list', () => {
  it('prints a table and the problems', async () => {
    const r = await fezz(['list', '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [
      'KEY            RUNTIME  LATEST  STATE  INSTANCES  REQUESTS  ERRORS  P99',
      'hello@1.0.0    isolate  yes     warm   1          12        1       2.1 ms',
      'echo-go@1.0.0  process  yes     cold   0          0         0       -',
      '',
      'problems (1, not served):',
      '  functions/x@1.0.0/fezz.json: FEZZ_ERR_MANIFEST_INVALID: functions/x@1.0.0/fezz.json: field "id": must match [a-z0-9][a-z0-9-]*',
      '',
    ].join('\n'));
    assert.deepEqual(fake.seen.map((s) => `${s.method} ${s.url}`), ['GET /admin/functions']);
  });

  it('--json prints the JSON as is', async () => {
    const r = await fezz(['list', '--json', '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), LIST);
  });
});

describe('fezz deploy', () => {
  let fnDir: string;
  before(async () => { fnDir = (await scaffoldFunction('greet', { dir: tmp, version: '0.1.0' })).dir; });

  it('uploads fezz.json and the bundle, and prints the key on 201', async () => {
    const r = await fezz(['deploy', fnDir, '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'deployed greet@0.1.0\n');
    assert.match(r.stderr, /^uploading greet@0\.1\.0 \(2 files, [\d.]+ k?B\) to http:\/\/127\.0\.0\.1:\d+$/m);
    assert.deepEqual(fake.seen.map((s) => `${s.method} ${s.url}`), ['GET /admin/functions', 'POST /admin/deploy']);
    const post = fake.seen[1]!;
    assert.equal(post.contentType, 'application/json');
    assert.equal(post.auth, `Bearer ${TOKEN}`);
    const body = JSON.parse(post.body) as { files: Record<string, string>; modes?: unknown };
    assert.deepEqual(Object.keys(body.files).sort(), ['fezz.json', 'index.mjs']);
    assert.equal(body.modes, undefined);
    const manifest = JSON.parse(Buffer.from(body.files['fezz.json']!, 'base64').toString());
    assert.equal(manifest.entry, 'index.mjs');
    assert.equal(manifest.id, 'greet');
    assert.deepEqual(manifest.env, { GREETING: 'Hello' });
    assert.match(Buffer.from(body.files['index.mjs']!, 'base64').toString(), /Response\.json/);
  });

  it('does not replace a version the host already serves unless --replace', async () => {
    const hello = path.join(ROOT, 'examples', 'functions', 'hello@1.0.0');
    const refused = await fezz(['deploy', hello, '--host-url', admin, '--token', TOKEN]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^fezz: hello@1\.0\.0 is already deployed on http:\/\/127\.0\.0\.1:\d+; bump "version" in .*fezz\.json, or pass --replace to replace it\n$/);
    assert.deepEqual(fake.seen.map((s) => s.method), ['GET']);
    fake.seen = [];
    fake.deployAnswer = { status: 201, body: { key: 'hello@1.0.0', status: 'serving' } };
    const replaced = await fezz(['deploy', hello, '--replace', '--host-url', admin, '--token', TOKEN]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal(replaced.stdout, 'deployed hello@1.0.0\n');
    // --replace tells the host too: it refuses other content for a version it has (409) without it.
    assert.deepEqual(fake.seen.map((s) => `${s.method} ${s.url}`), ['POST /admin/deploy?replace=1']);
  });

  it('prints the host\'s reason and exits 1 when the deploy is refused', async () => {
    fake.deployAnswer = {
      status: 422,
      body: { error: 'Unprocessable Entity', code: 'FEZZ_ERR_DEPLOY_REJECTED', message: 'greet@0.1.0 failed to start: boom', statusCode: 422 },
    };
    const r = await fezz(['deploy', fnDir, '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(lines(r.stderr).at(-1), 'fezz: FEZZ_ERR_DEPLOY_REJECTED: greet@0.1.0 failed to start: boom');
  });

  it('an answer that is not the JSON error shape still gives one line', async () => {
    fake.deployAnswer = { status: 413, body: 'too big' };
    const r = await fezz(['deploy', fnDir, '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 1);
    // The stand-in JSON-encodes the string: a JSON body without code/message.
    assert.match(lines(r.stderr).at(-1)!, /^fezz: HTTP 413: POST \/admin\/deploy answered 413 Payload Too Large: "too big"$/);
  });
});

describe('fezz logs', () => {
  it('formats a log line', () => {
    assert.equal(formatLogLine(LOG_LINES[0]!), '2025-01-02T03:04:05.678Z info  hello@1.0.0 111 first');
    assert.equal(formatLogLine({ time: 0, level: 50, msg: 'x', pid: 1, hostname: 'h' }), '1970-01-01T00:00:00.000Z error - - x');
    assert.equal(formatLogLine(LOG_LINES[1]!), '2025-01-02T03:04:06.000Z error hello@2.0.0 222 second {"err":"boom"}');
    assert.equal(
      formatLogLine({ time: 0, level: 'error', fn: 'a@1.0.0', requestId: '9', msg: 'handler failed', code: 'FEZZ_ERR_HANDLER_THREW', err: { message: 'Error: boom', stack: 'Error: boom\n    at fetch (file:///x.mjs:7:41)' } }),
      '1970-01-01T00:00:00.000Z error a@1.0.0 9 handler failed {"code":"FEZZ_ERR_HANDLER_THREW"}\n    Error: boom\n      at fetch (file:///x.mjs:7:41)',
    );
  });

  it('--no-follow prints the recent lines and exits', async () => {
    const r = await fezz(['logs', 'hello', '--no-follow', '--since', '5', '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), LOG_LINES.map(formatLogLine));
    assert.deepEqual(fake.seen.map((s) => s.url), ['/admin/logs?fn=hello&since=5']);
  });

  it('<id>@<version> asks for the id and keeps that version\'s lines; --json prints them raw', async () => {
    const r = await fezz(['logs', 'hello@2.0.0', '--no-follow', '--json', '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout).map((l) => JSON.parse(l)), [LOG_LINES[1]]);
    assert.deepEqual(fake.seen.map((s) => s.url), ['/admin/logs?fn=hello&since=100']);
  });

  it('follows new lines until Ctrl-C, then exits 0 and hangs up', async () => {
    const closedBefore = fake.logsClosed;
    const run = start(['logs', 'hello', '--host-url', admin, '--token', TOKEN]);
    const waitFor = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && lines(run.out()).length < n; i++) await new Promise((r) => setTimeout(r, 25));
    };
    await waitFor(2);
    assert.equal(fake.seen.at(-1)!.url, '/admin/logs?fn=hello&follow=1&since=100');
    fake.push!({ time: Date.UTC(2025, 0, 3), level: 'warn', fn: 'hello@1.0.0', requestId: '333', msg: 'live' });
    await waitFor(3);
    assert.equal(lines(run.out())[2], '2025-01-03T00:00:00.000Z warn  hello@1.0.0 333 live');
    run.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    for (let i = 0; i < 100 && fake.logsClosed === closedBefore; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(fake.logsClosed, closedBefore + 1);
  });

  it('says so and exits 1 when the host ends a followed stream', async () => {
    fake.endFollow = true;
    const r = await fezz(['logs', 'hello', '--host-url', admin, '--token', TOKEN]);
    assert.equal(r.code, 1);
    assert.equal(lines(r.stdout).length, 2);
    assert.deepEqual(lines(r.stderr), [`fezz: the admin listener at ${admin} ended the log stream (did the host stop?)`]);
  });
});
