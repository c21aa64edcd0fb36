/**
 * The `fezz` command line without a host: help, flag errors, `fezz new`, `fezz build` and
 * the deploy package (`fezz deploy --dry-run`, packageForDeploy). Each CLI run is a child
 * process: the build when it is current, else the TypeScript sources through tsx (helpers/cli.ts).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadFunctionDir } from '../../src/manifest/load.js';
import { manifestSchema } from '../../src/manifest/schema.js';
import { bundleEntry } from '../../src/build/bundle.js';
import { bundleFileName, packageForDeploy, readFunctionSource } from '../../src/build/deploy-bundle.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const EXAMPLES = path.join(ROOT, 'examples', 'functions');

interface Run { code: number | null; stdout: string; stderr: string }

const NO_TOKEN_FILE = path.join(os.tmpdir(), `fezz-test-no-token-${process.pid}`, 'admin-token');

/** Run a command with no FEZZ_* variables from the outer environment. */
function runProcess(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FEZZ_') && !k.startsWith('NODE_TEST')) env[k] = v;
  // Never the user's real token file (~/.fezz/admin-token): one that does not exist.
  env.FEZZ_TOKEN_FILE = NO_TOKEN_FILE;
  Object.assign(env, opts.env);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const fezz = (args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> =>
  runProcess(process.execPath, [...CLI, ...args], opts);

const lines = (s: string): string[] => s.split('\n').filter((l) => l.trim() !== '');

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-cli-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('fezz --help', { concurrency: 4 }, () => {
  it('lists every command', async () => {
    const r = await fezz(['--help']);
    assert.equal(r.code, 0);
    for (const cmd of ['serve', 'new', 'build', 'deploy', 'list', 'logs']) {
      assert.match(r.stdout, new RegExp(`^  ${cmd}\\b`, 'm'), `${cmd} in\n${r.stdout}`);
    }
  });

  const expected: Record<string, string[]> = {
    new: ['<name>', '--dir', 'FEZZ_DIR', '"./functions"', '--version', '"0.1.0"', 'Example'],
    build: ['<dir>', '--out', '.fezz/bundle.mjs', 'Example'],
    deploy: ['<dir>', '--host-url', 'FEZZ_HOST', 'http://127.0.0.1:3001', '--token', 'FEZZ_TOKEN', '--token-file', 'FEZZ_TOKEN_FILE', '--dry-run', '--replace', 'Example'],
    list: ['--host-url', 'FEZZ_HOST', '--token', 'FEZZ_TOKEN', '--token-file', 'FEZZ_TOKEN_FILE', '--json', 'Example'],
    logs: ['<id>', '--host-url', 'FEZZ_HOST', '--token', 'FEZZ_TOKEN', '--token-file', 'FEZZ_TOKEN_FILE', '--no-follow', '--since', 'default: 100', '--json', 'Example'],
  };
  for (const [cmd, words] of Object.entries(expected)) {
    it(`fezz ${cmd} --help documents every option, its env var and default`, async () => {
      const r = await fezz([cmd, '--help']);
      assert.equal(r.code, 0);
      for (const w of words) assert.ok(r.stdout.includes(w), `${w} in fezz ${cmd} --help:\n${r.stdout}`);
    });
  }
});

describe('bad flags and arguments', { concurrency: 4 }, () => {
  for (const args of [['new', 'x', '--bogus'], ['build', '.', '--bogus'], ['deploy', '.', '--bogus'], ['list', '--bogus'], ['logs', 'x', '--bogus']]) {
    it(`fezz ${args.join(' ')} fails with a one-line error`, async () => {
      const r = await fezz(args);
      assert.notEqual(r.code, 0);
      const err = lines(r.stderr);
      assert.equal(err[0], "error: unknown option '--bogus'");
      assert.ok(err.length <= 2, r.stderr);
      assert.ok(err.slice(1).every((l) => l.startsWith('(run ')), r.stderr);
      assert.equal(r.stdout, '');
    });
  }

  it('a bad --since value and a missing argument are one-line errors', async () => {
    const since = await fezz(['logs', 'x', '--since', 'abc']);
    assert.notEqual(since.code, 0);
    assert.match(lines(since.stderr)[0]!, /^error: option '-s, --since <n>' argument 'abc' is invalid\. expected a non-negative integer$/);
    const missing = await fezz(['build']);
    assert.notEqual(missing.code, 0);
    assert.equal(lines(missing.stderr)[0], "error: missing required argument 'dir'");
  });

  it('an admin command without a token says how to get one', async () => {
    const r = await fezz(['list']);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [`fezz: no admin token: pass --token-file, set FEZZ_TOKEN_FILE or FEZZ_TOKEN (no token file at ${NO_TOKEN_FILE}; \`fezz serve\` creates it)`]);
  });

  it('a bad --host-url is a one-line error', async () => {
    const r = await fezz(['list', '--token', 't', '--host-url', 'ftp://x']);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), ['fezz: invalid admin URL "ftp://x": expected http:// or https://']);
  });
});

describe('fezz new', { concurrency: 4 }, () => {
  it('scaffolds a function whose manifest validates, whose test passes and which type-checks', async () => {
    const dir = path.join(tmp, 'new1');
    await mkdir(dir);
    const r = await fezz(['new', 'greet'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    const fnDir = path.join(dir, 'functions', 'greet@0.1.0');
    for (const f of ['fezz.json', 'index.ts', 'index.test.ts', 'fezz.d.ts', 'tsconfig.json']) {
      assert.ok(r.stdout.includes(f), `${f} listed`);
      assert.ok((await stat(path.join(fnDir, f))).isFile(), `${f} written`);
    }
    assert.match(r.stdout, /^created functions\/greet@0\.1\.0\/$/m);
    assert.match(r.stdout, /fezz serve --dir functions/);
    assert.match(r.stdout, /fezz deploy functions\/greet@0\.1\.0/);
    assert.match(r.stdout, /curl localhost:3000\/greet/);

    // The host's own loader accepts it: schema, directory name, entry.
    const fn = await loadFunctionDir(fnDir);
    assert.equal(fn.key, 'greet@0.1.0');
    assert.deepEqual(fn.manifest.routes.map((x) => `${x.method} ${x.path}`), ['GET /greet', 'GET /greet/:who']);
    assert.ok(manifestSchema.safeParse(JSON.parse(await readFile(path.join(fnDir, 'fezz.json'), 'utf8'))).success);

    // Its unit test passes, run as the scaffold says.
    const t = await runProcess(process.execPath, ['--import', TSX, '--test', path.join(fnDir, 'index.test.ts')], { cwd: dir });
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.match(t.stdout, /^(# |ℹ )pass 3$/m); // TAP (Node 20) or spec (Node 24) reporter

    // It type-checks on its own (strict), with the repository's @types/node.
    const tsc = await runProcess(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', fnDir, '--typeRoots', path.join(ROOT, 'node_modules', '@types')]);
    assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);
  });

  it('takes <name>@<version> and --dir, and refuses to overwrite', async () => {
    const dir = path.join(tmp, 'new2');
    const r = await fezz(['new', 'a-1@2.0.0', '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    const manifest = JSON.parse(await readFile(path.join(dir, 'a-1@2.0.0', 'fezz.json'), 'utf8'));
    assert.equal(manifest.version, '2.0.0');
    await writeFile(path.join(dir, 'a-1@2.0.0', 'index.ts'), '// mine\n');
    const again = await fezz(['new', 'a-1@2.0.0', '--dir', dir]);
    assert.equal(again.code, 1);
    assert.equal(lines(again.stderr).length, 1);
    assert.match(again.stderr, /^fezz: .*a-1@2\.0\.0 already exists; not overwriting it/);
    assert.equal(await readFile(path.join(dir, 'a-1@2.0.0', 'index.ts'), 'utf8'), '// mine\n');
  });

  it('rejects a bad name or version with one line and exit 1', async () => {
    for (const [args, text] of [
      [['new', 'Bad_Name'], 'fezz: invalid function name "Bad_Name": must match [a-z0-9][a-z0-9-]* (lower-case letters, digits and dashes)'],
      [['new', '-x'], null],
      [['new', 'ok@v1'], 'fezz: invalid version "v1": must be semver, e.g. 0.1.0'],
    ] as Array<[string[], string | null]>) {
      const r = await fezz([...args, '--dir', path.join(tmp, 'never')]);
      assert.notEqual(r.code, 0, args.join(' '));
      if (text !== null) assert.deepEqual(lines(r.stderr), [text]);
    }
    await assert.rejects(stat(path.join(tmp, 'never')));
  });

  // commander reads --version after a subcommand as the program's own -V/--version unless
  // the program calls .enablePositionalOptions() (src/cli/bin.ts).
  it('takes --version', async () => {
    const dir = path.join(tmp, 'new3');
    const r = await fezz(['new', 'v', '--version', '3.1.4', '--dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await stat(path.join(dir, 'v@3.1.4', 'fezz.json'))).isFile());
  });
});

describe('fezz build', { concurrency: 4 }, () => {
  it('bundles a scaffolded function into .fezz/bundle.mjs that runs', async () => {
    const dir = path.join(tmp, 'build1');
    assert.equal((await fezz(['new', 'b', '--dir', dir])).code, 0);
    const fnDir = path.join(dir, 'b@0.1.0');
    const r = await fezz(['build', fnDir]);
    assert.equal(r.code, 0, r.stderr);
    const out = path.join(fnDir, '.fezz', 'bundle.mjs');
    assert.match(r.stdout, /^built .*b@0\.1\.0\/\.fezz\/bundle\.mjs \(\d+(\.\d)? k?B, 1 input file\) in [\d.]+ ms\n$/);
    const mod = await import(pathToFileURL(out).href) as { default: { fetch(r: Request, e: unknown, c: unknown): Response } };
    const res = mod.default.fetch(new Request('http://x/b'), { GREETING: 'Yo' }, { requestId: '1', params: {}, waitUntil() {}, passThroughOnException() {} });
    assert.equal(((await res.json()) as { message: string }).message, 'Yo, world!');
  });

  it('bundles npm dependencies and honours --out', async () => {
    const out = path.join(tmp, 'build2', 'dep.mjs');
    const r = await fezz(['build', path.join(FIXTURES, 'mixed', 'with-dep@1.0.0'), '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const mod = await import(pathToFileURL(out).href) as { default: { fetch(): Response } };
    assert.equal(await mod.default.fetch().text(), `DEP! ${process.platform} 1`);
  });

  it('has nothing to bundle for a process plugin', async () => {
    const r = await fezz(['build', path.join(EXAMPLES, 'echo-python@1.0.0')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'echo-python@1.0.0: nothing to bundle (runtime "process" runs main.py as is)\n');
  });

  it('reports a syntax error, a bad manifest and a missing directory in one line', async () => {
    const syntax = await fezz(['build', path.join(FIXTURES, 'mixed', 'syntax@1.0.0')]);
    assert.equal(syntax.code, 1);
    assert.equal(lines(syntax.stderr).length, 1);
    assert.match(syntax.stderr, /^fezz: FEZZ_ERR_BUILD_FAILED: .*syntax@1\.0\.0\/fezz\.json: bundling index\.ts failed: index\.ts:\d+:\d+: /);
    const typo = await fezz(['build', path.join(FIXTURES, 'mixed', 'typo@1.0.0')]);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /^fezz: FEZZ_ERR_MANIFEST_INVALID: .*typo@1\.0\.0\/fezz\.json: field "limits": Unrecognized key: "timeoutMS"\n$/);
    const none = await fezz(['build', path.join(tmp, 'nope')]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^fezz: FEZZ_ERR_MANIFEST_INVALID: .*nope\/fezz\.json: no such file \(is this a function directory\?\)\n$/);
  });
});

describe('the deploy package', { concurrency: 4 }, () => {
  it('a JS/TS function: its manifest pointing at the bundle, and the bundle', async () => {
    const source = await readFunctionSource(path.join(FIXTURES, 'mixed', 'with-dep@1.0.0'));
    const plan = await packageForDeploy(source);
    assert.equal(plan.key, 'with-dep@1.0.0');
    assert.deepEqual(Object.keys(plan.body.files).sort(), ['fezz.json', 'index.mjs']);
    assert.equal(plan.body.modes, undefined);
    const manifest = JSON.parse(Buffer.from(plan.body.files['fezz.json']!, 'base64').toString('utf8'));
    assert.deepEqual(manifest, { id: 'with-dep', version: '1.0.0', entry: 'index.mjs' });

    // The host bundles the uploaded entry again (src/build/bundle.ts): that must still run.
    const dir = path.join(tmp, 'pkg1', 'with-dep@1.0.0');
    await mkdir(dir, { recursive: true });
    for (const [name, b64] of Object.entries(plan.body.files)) await writeFile(path.join(dir, name), Buffer.from(b64, 'base64'));
    const rebundled = await bundleEntry(path.join(dir, 'index.mjs'), path.join(tmp, 'pkg1-cache'), 'test');
    const mod = await import(rebundled.url) as { default: { fetch(): Response } };
    assert.equal(await mod.default.fetch().text(), `DEP! ${process.platform} 1`);
  });

  it('names the bundle after the entry', () => {
    assert.equal(bundleFileName('index.ts'), 'index.mjs');
    assert.equal(bundleFileName('src/app.tsx'), 'app.mjs');
    assert.equal(bundleFileName('main.mjs'), 'main.mjs');
    assert.equal(bundleFileName('worker.cjs'), 'worker.mjs');
  });

  it('a process plugin: its files as they are, with modes; no node_modules, .git, target or dotfiles (but the entry)', async () => {
    const dir = path.join(tmp, 'pkg2', 'plug@1.0.0');
    await mkdir(path.join(dir, 'lib'), { recursive: true });
    await mkdir(path.join(dir, 'node_modules', 'x'), { recursive: true });
    await mkdir(path.join(dir, '.git'), { recursive: true });
    await mkdir(path.join(dir, 'target', 'release'), { recursive: true });
    await writeFile(path.join(dir, 'fezz.json'), JSON.stringify({ id: 'plug', version: '1.0.0', entry: 'target/release/plug', runtime: 'process' }));
    await writeFile(path.join(dir, 'target', 'release', 'plug'), '#!/bin/sh\n');
    await chmod(path.join(dir, 'target', 'release', 'plug'), 0o755);
    await writeFile(path.join(dir, 'target', 'release', 'plug.d'), 'deps');
    await writeFile(path.join(dir, 'lib', 'helper.sh'), 'echo\n');
    await chmod(path.join(dir, 'lib', 'helper.sh'), 0o750);
    await writeFile(path.join(dir, 'lib', 'data.txt'), 'data');
    await writeFile(path.join(dir, 'node_modules', 'x', 'i.js'), '');
    await writeFile(path.join(dir, '.git', 'HEAD'), '');
    await writeFile(path.join(dir, '.env'), 'SECRET=1');

    const plan = await packageForDeploy(await readFunctionSource(dir));
    assert.deepEqual(Object.keys(plan.body.files).sort(), ['fezz.json', 'lib/data.txt', 'lib/helper.sh', 'target/release/plug']);
    assert.deepEqual(plan.body.modes, { 'lib/helper.sh': 0o750, 'target/release/plug': 0o755 });
    assert.equal(Buffer.from(plan.body.files['lib/data.txt']!, 'base64').toString(), 'data');
    assert.deepEqual(plan.notes, ['not uploaded: .env, .git, node_modules, target']);

    const r = await fezz(['deploy', dir, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^plug@1\.0\.0 \(process\): 4 files, request \d+ B\n/);
    assert.match(r.stdout, /^ {2}target\/release\/plug {2}10 B {2}mode 755$/m);
    assert.match(r.stderr, /not uploaded: \.env, \.git, node_modules, target/);
  });

  it('fezz deploy prints every field error of a bad manifest before uploading anything', async () => {
    const dir = path.join(tmp, 'pkg3');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'fezz.json'), JSON.stringify({ id: 'Bad', version: 'one', entry: 'i.ts', extra: 1 }));
    const r = await fezz(['deploy', dir, '--token', 'x', '--host-url', 'http://127.0.0.1:9']);
    assert.equal(r.code, 1);
    const err = lines(r.stderr);
    assert.match(err[0]!, /^fezz: FEZZ_ERR_MANIFEST_INVALID: .*pkg3\/fezz\.json: 3 problems:$/);
    assert.ok(err.includes('  field "id": must match [a-z0-9][a-z0-9-]*'), r.stderr);
    assert.ok(err.some((l) => l.startsWith('  field "version": must be semver')), r.stderr);
    assert.ok(err.includes('  field "(root)": Unrecognized key: "extra"'), r.stderr);
    assert.ok(!r.stderr.includes('cannot reach'), 'no upload attempted');
  });

  it('a JS example with its own dependencies packs into two files', async () => {
    const r = await fezz(['deploy', path.join(EXAMPLES, 'hono-app@1.0.0'), '-n']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hono-app@1\.0\.0 \(isolate\): 2 files/);
    assert.match(r.stdout, /^ {2}index\.mjs {2}\d+\.\d kB$/m);
    assert.match(r.stderr, /^bundled src\/index\.ts \(\d+\.\d kB, \d+ input files\) in [\d.]+ ms$/m);
  });
});
