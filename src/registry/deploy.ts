/**
 * Deploying a function version through the admin API: the uploaded files are checked
 * (paths stay inside the function directory, sizes), written to a staging directory
 * inside the functions directory, and later moved into place with a rename — so the
 * watcher and the registry never see a half-written version.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { fezzError } from '../errors.js';
import { describeIssues, ID_PATTERN, VERSION_PATTERN } from '../manifest/schema.js';
import { MANIFEST_FILE } from '../manifest/load.js';

/** `POST /admin/deploy` body: a function directory's files, base64, keyed by relative path. */
export const deployPackageSchema = z.strictObject({
  files: z.record(z.string(), z.string()),
  /** File modes, e.g. `{ "server": 493 }` (0o755) for a process plugin's executable. */
  modes: z.record(z.string(), z.number().int().min(0).max(0o777)).default({}),
});
export type DeployPackage = z.output<typeof deployPackageSchema>;

/** Staging and trash live inside the functions directory (same file system: rename is atomic). */
export const STAGING_DIR = '.fezz-staging';
export const TRASH_DIR = '.fezz-trash';
const MAX_FILES = 10_000;

/**
 * Check a package and write it to `<functionsDir>/.fezz-staging/<random>/<id>@<version>/`.
 * @returns the key and the staged directory.
 * @throws FezzError FEZZ_ERR_ABI_BAD_BODY (shape, base64, unsafe path, no fezz.json,
 *   manifest without a valid id/version).
 */
export async function stagePackage(functionsDir: string, body: unknown): Promise<{ key: string; staged: string; root: string }> {
  const parsed = deployPackageSchema.safeParse(body);
  if (!parsed.success) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', describeIssues(parsed.error)]);
  const pkg = parsed.data;
  const names = Object.keys(pkg.files);
  if (names.length === 0 || names.length > MAX_FILES) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `expected 1 to ${MAX_FILES} files, received ${names.length}`]);
  const files = new Map<string, Buffer>();
  for (const name of names) {
    const rel = safeRelative(name);
    const b64 = pkg.files[name]!;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `file ${JSON.stringify(name)}: not valid base64`]);
    files.set(rel, Buffer.from(b64, 'base64'));
  }
  const manifestBytes = files.get(MANIFEST_FILE);
  if (manifestBytes === undefined) throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `the package has no ${MANIFEST_FILE} at its root`]);
  let manifest: { id?: unknown; version?: unknown };
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8'));
  } catch (err) {
    throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `${MANIFEST_FILE} is not valid JSON (${(err as Error).message})`]);
  }
  if (typeof manifest.id !== 'string' || !ID_PATTERN.test(manifest.id) || typeof manifest.version !== 'string' || !VERSION_PATTERN.test(manifest.version)) {
    throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `${MANIFEST_FILE}: fields "id" and "version" must be a valid id and a semver version`]);
  }
  const key = `${manifest.id}@${manifest.version}`;
  const root = path.join(functionsDir, STAGING_DIR, randomBytes(8).toString('hex'));
  const staged = path.join(root, key);
  for (const [rel, data] of files) {
    const file = path.join(staged, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, data);
    const mode = pkg.modes[Object.keys(pkg.files).find((n) => safeRelative(n) === rel)!];
    if (mode !== undefined) await chmod(file, mode);
  }
  return { key, staged, root };
}

/** A relative path that stays inside its directory. @throws FezzError FEZZ_ERR_ABI_BAD_BODY */
export function safeRelative(name: string): string {
  const norm = path.posix.normalize(name.replace(/\\/g, '/'));
  if (name === '' || name.includes('\0') || path.posix.isAbsolute(norm) || norm === '..' || norm.startsWith('../') || norm === '.' ||
      norm.split('/').some((seg) => seg === '.git')) {
    throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `path ${JSON.stringify(name)} escapes the function directory or is not allowed`]);
  }
  return norm;
}

/**
 * Move `staged` to `<functionsDir>/<key>`, replacing what is there (the old directory goes
 * to the trash first). Returns the trash path to remove once the old version drained, or null.
 */
export async function promote(functionsDir: string, staged: string, key: string): Promise<string | null> {
  const target = path.join(functionsDir, key);
  const trash = path.join(functionsDir, TRASH_DIR, `${key}-${randomBytes(6).toString('hex')}`);
  await mkdir(path.dirname(trash), { recursive: true });
  let moved: string | null = null;
  try {
    await rename(target, trash);
    moved = trash;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await rename(staged, target);
  return moved;
}

/** Move `<functionsDir>/<key>` to the trash. @returns the trash path, or null if there was no such directory. */
export async function retire(functionsDir: string, key: string): Promise<string | null> {
  const trash = path.join(functionsDir, TRASH_DIR, `${key}-${randomBytes(6).toString('hex')}`);
  await mkdir(path.dirname(trash), { recursive: true });
  try {
    await rename(path.join(functionsDir, key), trash);
    return trash;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export async function removeQuietly(dir: string | null): Promise<void> {
  if (dir !== null) await rm(dir, { recursive: true, force: true });
}
