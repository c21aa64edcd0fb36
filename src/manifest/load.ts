/**
 * Reads one function directory `<dir>/<id>@<version>/fezz.json` into a
 * {@link ResolvedFunction}: validated manifest, checked directory name and entry file.
 * Errors name the file, the field and what was expected (DESIGN.md "The manifest").
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { FezzError, fezzError } from '../errors.js';
import { describeIssues, manifestSchema, type Manifest } from './schema.js';

export const MANIFEST_FILE = 'fezz.json';

/** A function version ready for the registry: plain, serialisable data. */
export interface ResolvedFunction {
  /** `id@version`, e.g. `todos@1.2.0`. */
  key: string;
  id: string;
  version: string;
  /** Absolute directory of this version. */
  dir: string;
  /** Absolute path of `fezz.json`. */
  manifestPath: string;
  /** Absolute path of the entry file (module, executable or `.so`). */
  entryPath: string;
  manifest: Manifest;
}

/**
 * Load and validate the function in `dir`. `dir` may be a symbolic link, and its files may
 * be links (a Kubernetes ConfigMap volume shows each key as `<key> -> ..data/<key>`), but the
 * real paths of `fezz.json` and of the entry must be inside the real path of `dir`: a link to
 * `/etc/passwd` is neither a manifest nor an entry. The result keeps `dir` as given (a link
 * stays a link), so a ConfigMap update that swaps `..data` changes the content, not the key.
 * @throws FezzError FEZZ_ERR_MANIFEST_INVALID (unreadable, bad JSON, schema, a manifest that
 *   is a link out of the directory), FEZZ_ERR_MANIFEST_DIR_NAME, FEZZ_ERR_ENTRY_OUTSIDE (by
 *   its path, or a link whose target is outside), FEZZ_ERR_ENTRY_MISSING.
 */
export async function loadFunctionDir(dir: string, displayRoot = process.cwd()): Promise<ResolvedFunction> {
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const shown = path.relative(displayRoot, manifestPath) || manifestPath;
  let text: string;
  try {
    if (!await realInside(dir, manifestPath)) {
      throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, `${MANIFEST_FILE} is a symbolic link to a file outside the function directory; not read`]);
    }
    text = await readFile(manifestPath, 'utf8');
  } catch (err) {
    if (err instanceof FezzError) throw err;
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, `cannot read the manifest (${(err as NodeJS.ErrnoException).code ?? err})`], err);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, `not valid JSON: ${(err as Error).message}`], err);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) throw fezzError('FEZZ_ERR_MANIFEST_INVALID', [shown, describeIssues(parsed.error)], parsed.error);
  const manifest = parsed.data;
  const key = `${manifest.id}@${manifest.version}`;
  const dirName = path.basename(dir);
  if (dirName !== key) throw fezzError('FEZZ_ERR_MANIFEST_DIR_NAME', [shown, key, dirName]);
  const entryPath = path.resolve(dir, manifest.entry);
  const rel = path.relative(dir, entryPath);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw fezzError('FEZZ_ERR_ENTRY_OUTSIDE', [shown, JSON.stringify(manifest.entry)]);
  try {
    const st = await stat(entryPath);
    if (!st.isFile()) throw new Error('not a file');
  } catch {
    const hint = manifest.runtime === 'process' || manifest.runtime === 'native'
      ? ' (a compiled plugin: build it first, e.g. `npm run build:plugins` for the examples; see docs/abi.md)'
      : '';
    throw fezzError('FEZZ_ERR_ENTRY_MISSING', [shown, JSON.stringify(manifest.entry), hint]);
  }
  if (!await realInside(dir, entryPath).catch(() => false)) throw fezzError('FEZZ_ERR_ENTRY_OUTSIDE', [shown, JSON.stringify(manifest.entry)]);
  return { key, id: manifest.id, version: manifest.version, dir: path.resolve(dir), manifestPath, entryPath, manifest };
}

/**
 * Whether the real path of `file` (links followed) is below the real path of `dir`.
 * @throws the realpath error when either does not resolve (ENOENT for a dangling link).
 */
async function realInside(dir: string, file: string): Promise<boolean> {
  const [realDir, realFile] = await Promise.all([realpath(dir), realpath(file)]);
  const rel = path.relative(realDir, realFile);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}
