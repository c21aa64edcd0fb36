/**
 * Bundles a JS/TS function entry with esbuild into one ES module, so TypeScript entries and
 * entries with their own npm dependencies load in a worker with no loader and no
 * node_modules lookup. Bundles are cached by content: an index per entry records the hash
 * of every input file esbuild read, and the bundle is reused while all of them still hash
 * the same; the bundle itself is stored under the hash of its own bytes.
 *
 * Every bundle ends with its source map inline, sources relative to the function's directory
 * and no sourcesContent (./source-map.ts says why), so the runtimes can make stacks name the
 * function's own files (`index.ts:9:11`) rather than the bundle.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isBuiltin } from 'node:module';
import * as esbuild from 'esbuild';
import { fezzError } from '../errors.js';
import { MANIFEST_FILE } from '../manifest/load.js';
import { FEZZ_MAP_COMMENT, inlineSourceMap } from './source-map.js';

/** Bump when the build options below (or the index's shape) change, so old cache entries are not reused. */
const BUILD_FORMAT = 4;

export interface BundleResult {
  /** Absolute path of the bundled `.mjs`. */
  file: string;
  /** file:// URL of the same, for `import()`. */
  url: string;
  /** Whether the cache answered (no esbuild run). */
  cached: boolean;
  /**
   * Node built-in modules the code imports by name (import, dynamic import of a string,
   * require of a string), without the `node:` prefix, sorted: e.g. `['crypto', 'fs']`.
   * What the manifest's `permissions` are checked against (manifest/permissions.ts).
   */
  builtins: string[];
}

interface CacheIndex {
  format: number;
  esbuild: string;
  inputs: Record<string, string>;
  output: string;
  builtins: string[];
}

const sha = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/*
 * esbuild runs as a child service process (about 12 MB RSS). Builds happen at load and
 * reload only, so stop the service once no build has run for a second; the next build
 * starts it again.
 */
let activeBuilds = 0;
let stopTimer: NodeJS.Timeout | null = null;
const IDLE_STOP_MS = 1000;

async function runBuild<T>(build: () => Promise<T>): Promise<T> {
  activeBuilds++;
  if (stopTimer !== null) { clearTimeout(stopTimer); stopTimer = null; }
  try {
    return await build();
  } finally {
    if (--activeBuilds === 0) {
      stopTimer = setTimeout(() => { stopTimer = null; if (activeBuilds === 0) void esbuild.stop(); }, IDLE_STOP_MS);
      stopTimer.unref();
    }
  }
}

/** esbuild namespace of the modules the rules generate. */
const MODULE_RULE_NS = 'fezz-module-rule';
/** Marks the resolve of a module rule's own import (so the rule does not wrap it again). */
const RAW_BYTES = Symbol('fezz.rawBytes');

/**
 * Module rules like wrangler's defaults, so Workers code that imports its assets builds
 * unchanged: `.txt`, `.html` and `.sql` import as a string (wrangler's Text rule, esbuild's
 * `text` loader), `.bin` as an `ArrayBuffer` (Data), `.wasm` and `.wasm?module` as a compiled
 * `WebAssembly.Module` (CompiledWasm), ready for `new WebAssembly.Instance(mod, imports)`.
 * The bytes are inlined in the bundle (base64) and compiled once, when the function's module
 * loads; a file that is not valid WebAssembly fails that load with a CompileError.
 */
const moduleRules: esbuild.Plugin = {
  name: 'fezz-module-rules',
  setup(build) {
    // A generated module's path is relative to the working directory (the entry's): esbuild
    // names every module in a comment of the bundle (`// fezz-module-rule:<path>`) and in the
    // source map, and an absolute path there would carry the builder's directories into a
    // deployed bundle.
    const workDir = build.initialOptions.absWorkingDir ?? process.cwd();
    build.onResolve({ filter: /\.(?:wasm(?:\?module)?|bin)$/ }, async (args) => {
      // The rule's own import of the bytes (and the lookup just below): esbuild's binary loader.
      if (args.pluginData === RAW_BYTES || args.namespace === MODULE_RULE_NS) return undefined;
      const wanted = args.path.endsWith('?module') ? args.path.slice(0, -'?module'.length) : args.path;
      const r = await build.resolve(wanted, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: RAW_BYTES });
      if (r.errors.length > 0) return { errors: r.errors };
      return { path: path.relative(workDir, r.path).split(path.sep).join('/'), namespace: MODULE_RULE_NS };
    });
    build.onLoad({ filter: /.*/, namespace: MODULE_RULE_NS }, (args) => {
      const file = path.resolve(workDir, args.path);
      const bytes = `import bytes from ${JSON.stringify(file)};`;
      const value = file.endsWith('.wasm') ? 'new WebAssembly.Module(bytes)' : 'bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)';
      return { contents: `${bytes}\nexport default ${value};\n`, loader: 'js', resolveDir: path.dirname(file) };
    });
  },
};

/**
 * The esbuild options every fezz bundle uses (the host's load-time bundle and `fezz build`/
 * `fezz deploy`): one ES module for Node 20 with its dependencies inlined. `requireName` is
 * the import the `require` shim for CommonJS dependencies is made with; bundles meant to be
 * bundled again (deploy packages) use a different one, since esbuild renames a module's
 * `require` but not an import that would collide with the outer banner's.
 * The source map comes out as a second output file (see {@link bundledCode}); its sources are
 * relative to the directory of `outfile` (nothing is written there: `write` is false).
 */
export function bundleOptions(entryPath: string, requireName = '__fezzCreateRequire', outfile = path.join(path.dirname(entryPath), 'fezz-bundle.mjs')): esbuild.BuildOptions & { write: false; metafile: true } {
  return {
    entryPoints: [entryPath],
    outfile,
    sourcemap: 'external',
    sourcesContent: false,
    bundle: true,
    write: false,
    metafile: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    absWorkingDir: path.dirname(entryPath),
    // wrangler's default module rules (see moduleRules).
    loader: { '.txt': 'text', '.html': 'text', '.sql': 'text', '.bin': 'binary', '.wasm': 'binary' },
    plugins: [moduleRules],
    banner: { js: `import { createRequire as ${requireName} } from 'node:module'; const require = ${requireName}(import.meta.url);` },
  };
}

/**
 * The bundle of a build made with {@link bundleOptions}: the code with its source map inline
 * after `comment` (source-map.ts: FEZZ_MAP_COMMENT for the host's own bundles,
 * STANDARD_MAP_COMMENT for bundles other tools read), sources relative to `baseDir`.
 */
export function bundledCode(result: esbuild.BuildResult<{ write: false }>, baseDir: string, comment: string): Uint8Array {
  const js = result.outputFiles.find((f) => !f.path.endsWith('.map'))!;
  const map = result.outputFiles.find((f) => f.path.endsWith('.map'));
  return map === undefined ? js.contents : inlineSourceMap(js.contents, map.text, baseDir, comment);
}

/**
 * The function directory of an entry: the nearest directory up from it (the entry's own
 * first) that holds a `fezz.json`, else the entry's directory. Source map paths are relative
 * to it, so `src/index.ts` shows as `src/index.ts`, not `index.ts`.
 */
export async function functionDirOf(entryPath: string): Promise<string> {
  const start = path.dirname(entryPath);
  for (let dir = start, i = 0; i < 16; i++) {
    if (await stat(path.join(dir, MANIFEST_FILE)).then((s) => s.isFile(), () => false)) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return start;
}

/** esbuild's errors as `file:line:col: text`, joined. */
export function describeBuildErrors(err: unknown): string {
  const errors = (err as { errors?: esbuild.Message[] }).errors ?? [];
  return errors.length
    ? errors.map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '') + m.text).join('; ')
    : String((err as Error).message ?? err);
}

/**
 * Bundle `entryPath` (absolute) into `cacheDir`.
 * @param label names the function in errors, e.g. `functions/todos@1.0.0/fezz.json`.
 * @throws FezzError FEZZ_ERR_BUILD_FAILED with esbuild's messages (file:line: text).
 */
export async function bundleEntry(entryPath: string, cacheDir: string, label: string): Promise<BundleResult> {
  const indexFile = path.join(cacheDir, 'index', sha(entryPath).slice(0, 32) + '.json');
  const hit = await readIndex(indexFile);
  if (hit !== null) {
    const file = path.join(cacheDir, hit.output);
    return { file, url: pathToFileURL(file).href, cached: true, builtins: hit.builtins };
  }
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  const fnDir = await functionDirOf(entryPath);
  try {
    result = await runBuild(() => esbuild.build(bundleOptions(entryPath, undefined, path.join(fnDir, 'fezz-bundle.mjs'))));
  } catch (err) {
    const text = describeBuildErrors(err);
    throw fezzError('FEZZ_ERR_BUILD_FAILED', [label, path.basename(entryPath), text], err);
  }
  const code = bundledCode(result, fnDir, FEZZ_MAP_COMMENT);
  const output = sha(code).slice(0, 32) + '.mjs';
  const file = path.join(cacheDir, output);
  await mkdir(path.dirname(indexFile), { recursive: true });
  await writeAtomic(file, code);
  const inputs: Record<string, string> = {};
  const base = path.dirname(entryPath);
  for (const rel of Object.keys(result.metafile.inputs)) {
    // A module rule's wrapper (`fezz-module-rule:<path>`) is generated: its file is an input of its own.
    if (rel.startsWith(`${MODULE_RULE_NS}:`)) continue;
    const abs = path.resolve(base, rel);
    inputs[abs] = sha(await readFile(abs));
  }
  const builtins = builtinImports(result.metafile);
  await writeAtomic(indexFile, JSON.stringify({ format: BUILD_FORMAT, esbuild: esbuild.version, inputs, output, builtins } satisfies CacheIndex));
  return { file, url: pathToFileURL(file).href, cached: false, builtins };
}

/** The Node built-ins a bundle's inputs import by name (externals esbuild left as imports). */
function builtinImports(metafile: esbuild.Metafile): string[] {
  const out = new Set<string>();
  for (const input of Object.values(metafile.inputs)) {
    for (const imp of input.imports) {
      if (imp.external !== true) continue;
      const name = imp.path.startsWith('node:') ? imp.path.slice(5) : imp.path;
      if (isBuiltin(name) || isBuiltin(imp.path)) out.add(name);
    }
  }
  return [...out].sort();
}

async function readIndex(indexFile: string): Promise<CacheIndex | null> {
  try {
    const index = JSON.parse(await readFile(indexFile, 'utf8')) as CacheIndex;
    if (index.format !== BUILD_FORMAT || index.esbuild !== esbuild.version) return null;
    await stat(path.join(path.dirname(indexFile), '..', index.output));
    for (const [file, hash] of Object.entries(index.inputs)) {
      if (sha(await readFile(file)) !== hash) return null;
    }
    return index;
  } catch {
    return null;
  }
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
