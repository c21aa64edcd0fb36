/**
 * What `fezz build` and `fezz deploy` do to a function directory before it leaves the
 * developer's machine: read and validate its `fezz.json`, bundle a JS/TS entry with esbuild
 * (the options of ./bundle.ts, so the host sees the same code), and pack the files the
 * admin API's `POST /admin/deploy` takes.
 *
 * A JS/TS function is uploaded as two files: its manifest with `entry` pointing at the
 * bundle, and the bundle (dependencies included, so no node_modules), which carries its
 * source map inline (sources relative to the function directory, no sourcesContent:
 * ./source-map.ts), so the host that bundles it again still maps stacks to
 * `index.ts:line:col`. A process or native
 * plugin is uploaded as its directory's files, with the modes of executable ones.
 */
import { lstat, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as esbuild from 'esbuild';
import { fezzError } from '../errors.js';
import { MANIFEST_FILE } from '../manifest/load.js';
import { bundledCode, bundleOptions, describeBuildErrors } from './bundle.js';
import { STANDARD_MAP_COMMENT } from './source-map.js';
import { manifestSchema, type Manifest, type RuntimeKind } from '../manifest/schema.js';
import { DEV_VARS_FILE } from '../secrets/dev-vars.js';

/** The largest deploy request body the admin API takes (it answers 413 past it). */
export const DEPLOY_MAX_BYTES = 64 * 1024 * 1024;

/** Where `fezz build` writes by default, relative to the function directory. */
export const DEFAULT_BUNDLE_PATH = path.join('.fezz', 'bundle.mjs');

/** Directory entries never uploaded for process/native plugins (dotfiles are skipped too; the entry is always sent). */
export const SKIPPED_NAMES: ReadonlySet<string> = new Set(['node_modules', '.git', 'target', '__pycache__']);

/** The body of `POST /admin/deploy`. */
export interface DeployPackage {
  /** Relative path (forward slashes) -> base64 content. Always includes `fezz.json`. */
  files: Record<string, string>;
  /** Relative path -> file mode (e.g. 0o755 = 493), for the files that must stay executable. */
  modes?: Record<string, number>;
}

/** A function directory with a valid manifest and an entry that exists inside it. */
export interface FunctionSource {
  /** Absolute directory. */
  dir: string;
  /** Absolute path of `fezz.json`. */
  manifestPath: string;
  /** The manifest path as shown in messages (relative to the working directory). */
  shown: string;
  /** The manifest exactly as written (no defaults filled), for re-writing. */
  raw: Record<string, unknown>;
  /** The validated manifest, defaults filled. */
  manifest: Manifest;
  /** `id@version` */
  key: string;
  /** Absolute path of the entry file. */
  entryPath: string;
}

/** Runtimes whose entry is a JS/TS module that gets bundled. */
export function isJsRuntime(runtime: RuntimeKind): boolean {
  return runtime === 'isolate' || runtime === 'inline';
}

/**
 * Read and validate `<dir>/fezz.json`. Unlike the host's loader, the directory name need
 * not be `<id>@<version>` (a deploy names the target directory from the manifest).
 * @throws FezzError FEZZ_ERR_MANIFEST_INVALID (one field problem per line),
 *   FEZZ_ERR_ENTRY_OUTSIDE, FEZZ_ERR_ENTRY_MISSING.
 */
export async function readFunctionSource(dir: string, displayRoot = process.cwd()): Promise<FunctionSource> {
  const absDir = path.resolve(dir);
  const manifestPath = path.join(absDir, MANIFEST_FILE);
  const shown = displayPath(manifestPath, displayRoot);
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file (is this a function directory?)' : `cannot read the manifest (${code ?? err})`;
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, why], err);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, `not valid JSON: ${(err as Error).message}`], err);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `field "${issue.path.length ? issue.path.join('.') : '(root)'}": ${issue.message}`);
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, lines.length === 1 ? lines[0] : `${lines.length} problems:${lines.map((l) => `\n  ${l}`).join('')}`], parsed.error);
  }
  const manifest = parsed.data;
  const entryPath = path.resolve(absDir, manifest.entry);
  const rel = path.relative(absDir, entryPath);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw fezzError('FEZZ_ERR_ENTRY_OUTSIDE', [shown, JSON.stringify(manifest.entry)]);
  try {
    if (!(await stat(entryPath)).isFile()) throw new Error('not a file');
  } catch {
    throw fezzError('FEZZ_ERR_ENTRY_MISSING', [shown, JSON.stringify(manifest.entry)]);
  }
  return { dir: absDir, manifestPath, shown, raw: raw as Record<string, unknown>, manifest, key: `${manifest.id}@${manifest.version}`, entryPath };
}

export interface BuiltBundle {
  /** The bundled ES module, ending with its source map (a standard inline `//# sourceMappingURL=data:` comment). */
  code: Uint8Array;
  /** Wall time of the esbuild run, in ms. */
  ms: number;
  /** How many input files went into it. */
  inputs: number;
  /** esbuild warnings, `file:line:col: text`. */
  warnings: string[];
}

/**
 * Bundle the entry of a JS/TS function: platform node, ESM, target node20, dependencies
 * inlined, with a `require` for CommonJS dependencies — the options of ./bundle.ts.
 * `outFile` is where the bundle will be (default: the function directory, where a deploy
 * package puts it): its map's sources are relative to that file's directory.
 * @throws FezzError FEZZ_ERR_BUILD_FAILED with esbuild's messages.
 */
export async function bundleFunction(source: FunctionSource, outFile = path.join(source.dir, bundleFileName(source.manifest.entry))): Promise<BuiltBundle> {
  const started = performance.now();
  let result: esbuild.BuildResult<{ write: false; metafile: true }>;
  try {
    result = await esbuild.build(bundleOptions(source.entryPath, '__fezzDeployCreateRequire', outFile));
  } catch (err) {
    const text = describeBuildErrors(err);
    throw fezzError('FEZZ_ERR_BUILD_FAILED', [source.shown, path.relative(source.dir, source.entryPath), text], err);
  }
  return {
    code: bundledCode(result, path.dirname(outFile), STANDARD_MAP_COMMENT),
    ms: performance.now() - started,
    inputs: Object.keys(result.metafile.inputs).length,
    warnings: result.warnings.map(formatMessage),
  };
}

/** `fezz build`: bundle into `outFile` (default `<dir>/.fezz/bundle.mjs`). */
export async function buildToFile(source: FunctionSource, outFile?: string): Promise<BuiltBundle & { file: string }> {
  const file = path.resolve(outFile ?? path.join(source.dir, DEFAULT_BUNDLE_PATH));
  const built = await bundleFunction(source, file);
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, built.code);
  await rename(tmp, file);
  return { ...built, file };
}

/** The bundle's name inside a deploy package: the entry's base name with `.mjs` (`src/index.ts` -> `index.mjs`). */
export function bundleFileName(entry: string): string {
  const base = path.basename(entry).replace(/\.(m|c)?(t|j)sx?$/i, '');
  return `${base || 'index'}.mjs`;
}

/** One file of a deploy package, for printing. */
export interface PackedFile {
  path: string;
  bytes: number;
  mode?: number;
}

export interface DeployPlan {
  key: string;
  runtime: RuntimeKind;
  body: DeployPackage;
  files: PackedFile[];
  /** Size of the JSON request body in bytes. */
  requestBytes: number;
  /** Set for JS/TS runtimes. */
  bundle?: BuiltBundle;
  /** Things worth telling the user (skipped entries, bundle warnings). */
  notes: string[];
}

/**
 * Build the `POST /admin/deploy` body for a function directory.
 * @throws FezzError FEZZ_ERR_BUILD_FAILED when bundling fails.
 */
export async function packageForDeploy(source: FunctionSource): Promise<DeployPlan> {
  const files: Record<string, Uint8Array> = {};
  const modes: Record<string, number> = {};
  const notes: string[] = [];
  let bundle: BuiltBundle | undefined;
  // `.dev.vars` holds local secrets for `fezz dev`: it never leaves the machine. A JS function
  // uploads only its manifest and bundle; a plugin's dotfiles are skipped (below), and an
  // entry named .dev.vars is refused rather than sent.
  const devVars = await stat(path.join(source.dir, DEV_VARS_FILE)).then(() => true, () => false);
  if (devVars) notes.push(`not uploaded: ${DEV_VARS_FILE} (local secrets for fezz dev; give the host its own with fezz secret put ${source.manifest.id} <NAME>)`);
  if (path.basename(source.entryPath) === DEV_VARS_FILE) {
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [source.shown, `field "entry": ${DEV_VARS_FILE} holds local secrets and is never uploaded`]);
  }
  if (isJsRuntime(source.manifest.runtime)) {
    bundle = await bundleFunction(source);
    const name = bundleFileName(source.manifest.entry);
    files[MANIFEST_FILE] = Buffer.from(JSON.stringify({ ...source.raw, entry: name }, null, 2) + '\n');
    files[name] = bundle.code;
    for (const w of bundle.warnings) notes.push(`esbuild warning: ${w}`);
  } else {
    const skipped: string[] = [];
    await collect(source.dir, '', files, modes, skipped);
    // The entry is sent even when it sits under a skipped directory (e.g. target/release/app).
    const entryRel = toPosix(path.relative(source.dir, source.entryPath));
    if (files[entryRel] === undefined) {
      files[entryRel] = await readFile(source.entryPath);
      const st = await stat(source.entryPath);
      if ((st.mode & 0o111) !== 0) modes[entryRel] = st.mode & 0o777;
    }
    if (skipped.length) notes.push(`not uploaded: ${skipped.join(', ')}`);
  }
  const body: DeployPackage = { files: {} };
  for (const [rel, data] of Object.entries(files)) body.files[rel] = Buffer.from(data).toString('base64');
  if (Object.keys(modes).length) body.modes = modes;
  const listed = Object.entries(files).map(([p, data]) => ({ path: p, bytes: data.byteLength, ...(modes[p] !== undefined ? { mode: modes[p] } : {}) }));
  listed.sort((a, b) => a.path.localeCompare(b.path));
  return {
    key: source.key,
    runtime: source.manifest.runtime,
    body,
    files: listed,
    requestBytes: Buffer.byteLength(JSON.stringify(body)),
    ...(bundle ? { bundle } : {}),
    notes,
  };
}

async function collect(root: string, rel: string, files: Record<string, Uint8Array>, modes: Record<string, number>, skipped: string[]): Promise<void> {
  const entries = await readdir(path.join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const childRel = rel ? `${rel}/${e.name}` : e.name;
    if (e.name.startsWith('.') || SKIPPED_NAMES.has(e.name)) {
      if (childRel !== DEV_VARS_FILE) skipped.push(childRel); // the top .dev.vars has its own note
      continue;
    }
    const abs = path.join(root, childRel);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      // Follow links to files; a link to a directory could loop, so it is left out.
      const st = await stat(abs).catch(() => null);
      isDir = false;
      isFile = st?.isFile() ?? false;
      if (!isFile) { skipped.push(childRel); continue; }
    }
    if (isDir) {
      await collect(root, childRel, files, modes, skipped);
    } else if (isFile) {
      files[childRel] = await readFile(abs);
      const st = await lstat(abs).then((s) => (s.isSymbolicLink() ? stat(abs) : s));
      if ((st.mode & 0o111) !== 0) modes[childRel] = st.mode & 0o777;
    }
  }
}

const toPosix = (p: string): string => p.split(path.sep).join('/');

/** `p` relative to `root` when it is inside it, else absolute. */
export function displayPath(p: string, root = process.cwd()): string {
  const rel = path.relative(root, p);
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? path.resolve(p) : rel;
}

function formatMessage(m: esbuild.Message): string {
  return (m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '') + m.text;
}
