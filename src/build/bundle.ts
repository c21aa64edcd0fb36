/**
 * Bundles a JS/TS function entry with esbuild into one ES module, so TypeScript entries and
 * entries with their own npm dependencies load in a worker with no loader and no
 * node_modules lookup. Bundles are cached by content: an index per entry records the hash
 * of every input file esbuild read, and the bundle is reused while all of them still hash
 * the same; the bundle itself is stored under the hash of its own bytes.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isBuiltin } from 'node:module';
import * as esbuild from 'esbuild';
import { fezzError } from '../errors.js';

/** Bump when the build options below (or the index's shape) change, so old cache entries are not reused. */
const BUILD_FORMAT = 2;

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

/**
 * The esbuild options every fezz bundle uses (the host's load-time bundle and `fezz build`/
 * `fezz deploy`): one ES module for Node 20 with its dependencies inlined. `requireName` is
 * the import the `require` shim for CommonJS dependencies is made with; bundles meant to be
 * bundled again (deploy packages) use a different one, since esbuild renames a module's
 * `require` but not an import that would collide with the outer banner's.
 */
export function bundleOptions(entryPath: string, requireName = '__fezzCreateRequire'): esbuild.BuildOptions & { write: false; metafile: true } {
  return {
    entryPoints: [entryPath],
    bundle: true,
    write: false,
    metafile: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    absWorkingDir: path.dirname(entryPath),
    banner: { js: `import { createRequire as ${requireName} } from 'node:module'; const require = ${requireName}(import.meta.url);` },
  };
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
  try {
    result = await runBuild(() => esbuild.build(bundleOptions(entryPath)));
  } catch (err) {
    const text = describeBuildErrors(err);
    throw fezzError('FEZZ_ERR_BUILD_FAILED', [label, path.basename(entryPath), text], err);
  }
  const code = result.outputFiles[0]!.contents;
  const output = sha(code).slice(0, 32) + '.mjs';
  const file = path.join(cacheDir, output);
  await mkdir(path.dirname(indexFile), { recursive: true });
  await writeAtomic(file, code);
  const inputs: Record<string, string> = {};
  const base = path.dirname(entryPath);
  for (const rel of Object.keys(result.metafile.inputs)) {
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
