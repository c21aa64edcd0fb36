/**
 * Reads one function directory `<dir>/<id>@<version>/fezz.json` into a
 * {@link ResolvedFunction}: validated manifest, checked directory name and entry file.
 * Errors name the file, the field and what was expected (DESIGN.md "The manifest").
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fezzError } from '../errors.js';
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
 * Load and validate the function in `dir`.
 * @throws FezzError FEZZ_ERR_MANIFEST_INVALID (unreadable, bad JSON, schema),
 *   FEZZ_ERR_MANIFEST_DIR_NAME, FEZZ_ERR_ENTRY_OUTSIDE, FEZZ_ERR_ENTRY_MISSING.
 */
export async function loadFunctionDir(dir: string, displayRoot = process.cwd()): Promise<ResolvedFunction> {
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const shown = path.relative(displayRoot, manifestPath) || manifestPath;
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch (err) {
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
  return { key, id: manifest.id, version: manifest.version, dir: path.resolve(dir), manifestPath, entryPath, manifest };
}

