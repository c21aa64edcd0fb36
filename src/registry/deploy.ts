/**
 * Deploying and deleting function versions through the admin API. An uploaded package is
 * checked first (shape, paths stay inside the function directory, base64, the id and version
 * in its fezz.json) without touching the disk; then its version is claimed, so that one
 * deploy or delete of a version runs at a time (another gets 409 at once); then its files are
 * written to a staging directory inside the functions directory and later moved into place
 * with a rename — so the watcher and the registry never see a half-written version. The
 * staging directory is removed afterwards whatever happened.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, readlink, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { fezzError, type FezzError } from '../errors.js';
import { describeIssues, ID_PATTERN, VERSION_PATTERN } from '../manifest/schema.js';
import { MANIFEST_FILE } from '../manifest/load.js';
import { KeyLock } from './key-lock.js';

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
/** Longest file name most file systems take, in bytes (the `<id>@<version>` directory is one). */
const MAX_NAME_BYTES = 255;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/**
 * Error codes of a failed write that are the host's fault (disk full, read-only or
 * unwritable functions directory, out of handles), not the package's: they stay 500s.
 */
const HOST_FAULTS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EMFILE', 'ENFILE', 'ENOMEM', 'EACCES', 'EPERM']);

/** Version directories (`<functionsDir>/<id>@<version>`, absolute) a deploy or delete works on now. */
const versionLocks = new KeyLock();

const bad = (why: string, cause?: unknown): FezzError => fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', why], cause);

/**
 * Claim the version directory `<functionsDir>/<key>` for one deploy or delete.
 * @returns the function that gives the claim up (idempotent).
 * @throws FezzError FEZZ_ERR_DEPLOY_IN_PROGRESS (409) while another deploy or delete of it runs.
 */
function claimVersion(functionsDir: string, key: string): () => void {
  const release = versionLocks.tryAcquire(path.resolve(functionsDir, key));
  if (release === null) throw fezzError('FEZZ_ERR_DEPLOY_IN_PROGRESS', [key]);
  return release;
}

/** One file of a checked package. */
export interface PackageFile {
  /** The name as uploaded (errors quote it). */
  name: string;
  /** Normalised path relative to the function directory, e.g. `lib/a.js`. */
  rel: string;
  data: Buffer;
  /** Its mode from `modes` (e.g. 0o755), if any. */
  mode: number | undefined;
}

/**
 * Check a `POST /admin/deploy` body without writing anything.
 * @returns the key `<id>@<version>` (from its fezz.json) and the files.
 * @throws FezzError FEZZ_ERR_ABI_BAD_BODY (400): bad shape, no or over 10,000 files, a path
 *   that escapes the directory or names a directory, two names for one path, a file that is
 *   also another's directory (`a` and `a/b`), bad base64, no fezz.json, a fezz.json that is
 *   not a JSON object with a valid id and version, an `<id>@<version>` over 255 bytes.
 */
export function checkPackage(body: unknown): { key: string; files: PackageFile[] } {
  const parsed = deployPackageSchema.safeParse(body);
  if (!parsed.success) throw bad(describeIssues(parsed.error));
  const pkg = parsed.data;
  const names = Object.keys(pkg.files);
  if (names.length === 0 || names.length > MAX_FILES) throw bad(`expected 1 to ${MAX_FILES} files, received ${names.length}`);
  const byRel = new Map<string, PackageFile>();
  for (const name of names) {
    const rel = safeRelative(name);
    const same = byRel.get(rel);
    if (same !== undefined) throw bad(`files ${JSON.stringify(same.name)} and ${JSON.stringify(name)} are the same path`);
    const b64 = pkg.files[name]!;
    if (!BASE64.test(b64)) throw bad(`file ${JSON.stringify(name)}: not valid base64`);
    const mode = Object.hasOwn(pkg.modes, name) ? pkg.modes[name] : undefined;
    byRel.set(rel, { name, rel, data: Buffer.from(b64, 'base64'), mode });
  }
  for (const f of byRel.values()) {
    for (let i = f.rel.indexOf('/'); i !== -1; i = f.rel.indexOf('/', i + 1)) {
      const parent = byRel.get(f.rel.slice(0, i));
      if (parent !== undefined) throw bad(`file ${JSON.stringify(parent.name)} is also the directory of ${JSON.stringify(f.name)}`);
    }
  }
  const manifestFile = byRel.get(MANIFEST_FILE);
  if (manifestFile === undefined) throw bad(`the package has no ${MANIFEST_FILE} at its root`);
  let manifest: unknown;
  try {
    manifest = JSON.parse(manifestFile.data.toString('utf8'));
  } catch (err) {
    throw bad(`${MANIFEST_FILE} is not valid JSON (${(err as Error).message})`);
  }
  const { id, version } = (typeof manifest === 'object' && manifest !== null ? manifest : {}) as { id?: unknown; version?: unknown };
  if (typeof id !== 'string' || !ID_PATTERN.test(id) || typeof version !== 'string' || !VERSION_PATTERN.test(version)) {
    throw bad(`${MANIFEST_FILE}: must be an object whose fields "id" and "version" are a valid id and a semver version`);
  }
  const key = `${id}@${version}`;
  if (Buffer.byteLength(key) > MAX_NAME_BYTES) throw bad(`${MANIFEST_FILE}: "id" and "version" make a directory name over ${MAX_NAME_BYTES} bytes`);
  return { key, files: [...byRel.values()] };
}

/** A package written to staging by {@link stagePackage}, its version claimed. */
export interface StagedPackage {
  /** `<id>@<version>` */
  key: string;
  /** `<functionsDir>/.fezz-staging/<random>/<key>/`: the files, ready for {@link promote}. */
  staged: string;
  /** `<functionsDir>/.fezz-staging/<random>/` */
  root: string;
  /**
   * Call once done, on every path (after promote, or on failure): removes the staging
   * directory (and `.fezz-staging` when no other deploy uses it), then gives up the claim.
   */
  dispose(): Promise<void>;
}

/**
 * Check a package ({@link checkPackage}), claim its version, then write it to
 * `<functionsDir>/.fezz-staging/<random>/<id>@<version>/`. Nothing is written before the
 * check and the claim; when this throws, nothing is left behind and the claim is given up.
 * @throws FezzError FEZZ_ERR_ABI_BAD_BODY (400: a bad package, or a file the file system
 *   refuses, e.g. a name over 255 bytes), FEZZ_ERR_DEPLOY_IN_PROGRESS (409: a deploy or
 *   delete of the same version runs). File system errors that are the host's fault (disk
 *   full, read-only) are rethrown as they are.
 */
export async function stagePackage(functionsDir: string, body: unknown): Promise<StagedPackage> {
  const { key, files } = checkPackage(body);
  const release = claimVersion(functionsDir, key);
  let root: string | null = null;
  const dispose = async (): Promise<void> => {
    try {
      if (root !== null) await removeStaging(root);
    } finally {
      release();
    }
  };
  try {
    root = await makeStagingRoot(functionsDir);
    const staged = path.join(root, key);
    for (const f of files) await writeStagedFile(staged, f);
    return { key, staged, root, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** Make a fresh `<functionsDir>/.fezz-staging/<random>/`. */
async function makeStagingRoot(functionsDir: string): Promise<string> {
  const parent = path.join(functionsDir, STAGING_DIR);
  for (let attempt = 1; ; attempt++) {
    await mkdir(parent, { recursive: true });
    const root = path.join(parent, randomBytes(8).toString('hex'));
    try {
      await mkdir(root);
      return root;
    } catch (err) {
      // Another deploy removed the (then empty) parent in between: make it again.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 5) throw err;
    }
  }
}

/** Remove a staging root, and `.fezz-staging` with it once empty (no other deploy stages). */
async function removeStaging(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
  try {
    await rmdir(path.dirname(root));
  } catch {
    // ENOTEMPTY: another deploy is staging, it removes the parent when done. ENOENT: gone.
  }
}

/** Write one file under `staged`. @throws FezzError FEZZ_ERR_ABI_BAD_BODY naming the file */
async function writeStagedFile(staged: string, f: PackageFile): Promise<void> {
  const file = path.join(staged, f.rel);
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, f.data, { flag: 'wx' }); // never through something already there
    if (f.mode !== undefined) await chmod(file, f.mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && HOST_FAULTS.has(code)) throw err;
    throw bad(`file ${JSON.stringify(f.name)} cannot be written (${code ?? (err as Error).message})`, err);
  }
}

/**
 * A relative path that stays inside its directory and names a file, normalised
 * (`./a//b` -> `a/b`). @throws FezzError FEZZ_ERR_ABI_BAD_BODY
 */
export function safeRelative(name: string): string {
  const norm = path.posix.normalize(name.replace(/\\/g, '/'));
  if (name === '' || name.includes('\0') || path.posix.isAbsolute(norm) || norm === '..' || norm.startsWith('../') || norm === '.' ||
      norm.endsWith('/') || norm.split('/').some((seg) => seg === '.git')) {
    throw bad(`path ${JSON.stringify(name)} escapes the function directory, names a directory, or is not allowed`);
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

/** A version taken out of the functions directory by {@link retire}. */
export interface RetiredVersion {
  /** `<id>@<version>` */
  key: string;
  /** Where its directory went: remove it ({@link removeQuietly}) once the version drained. */
  trash: string;
  /** Give up the claim on the version (idempotent); call once the host has reloaded. */
  release(): void;
}

/**
 * Take version `<id>@<version>` out of the functions directory (admin API DELETE): check
 * `id` and `version`, claim the version, then move exactly the directory
 * `<functionsDir>/<id>@<version>` to the trash (a file or symlink of that name is left alone).
 * @param isKnown whether the host knows the version: serves it, or reports a problem in its
 *   directory. Asked once the claim is taken.
 * @throws FezzError FEZZ_ERR_BAD_REQUEST (400: id or version malformed),
 *   FEZZ_ERR_DEPLOY_IN_PROGRESS (409: a deploy or delete of it runs),
 *   FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND (404: not known, or no such directory).
 */
export async function retire(functionsDir: string, id: string, version: string, isKnown: () => boolean): Promise<RetiredVersion> {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw fezzError('FEZZ_ERR_BAD_REQUEST', [`function id ${JSON.stringify(id)} must match [a-z0-9][a-z0-9-]*`]);
  }
  if (typeof version !== 'string' || !VERSION_PATTERN.test(version)) {
    throw fezzError('FEZZ_ERR_BAD_REQUEST', [`version ${JSON.stringify(version)} must be semver (e.g. "1.2.0") or "latest"`]);
  }
  const key = `${id}@${version}`;
  const release = claimVersion(functionsDir, key);
  try {
    const dir = path.join(functionsDir, key);
    if (!isKnown() || !(await isDirectory(dir))) throw fezzError('FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND', [key]);
    const trash = path.join(functionsDir, TRASH_DIR, `${key}-${randomBytes(6).toString('hex')}`);
    await mkdir(path.dirname(trash), { recursive: true });
    try {
      await rename(dir, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw fezzError('FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND', [key], err);
      throw err;
    }
    return { key, trash, release };
  } catch (err) {
    release();
    throw err;
  }
}

/** Largest directory {@link directoryDigest} reads, in bytes of file content. */
const DIGEST_MAX_BYTES = 256 * 1024 * 1024;

/**
 * Compare the version directory in place (`<functionsDir>/<id>@<version>`) with the staged
 * copy of a package, as both are written on disk: `absent` (no such directory), `same`
 * (an identical re-deploy: idempotent) or `different` (409 unless replaced). Content is
 * every entry's relative path, kind, permission bits and bytes, and a symlink's target; a
 * directory over 10,000 entries or 256 MiB counts as different.
 */
export async function compareVersionDir(existing: string, staged: string): Promise<'absent' | 'same' | 'different'> {
  if (!(await isDirectory(existing))) return 'absent';
  const [a, b] = await Promise.all([directoryDigest(existing), directoryDigest(staged)]);
  return a !== null && a === b ? 'same' : 'different';
}

/**
 * sha256 (hex) over a directory's entries in sorted order (see {@link compareVersionDir}),
 * or null when it is not a directory, is too large, or changed while read.
 */
async function directoryDigest(dir: string): Promise<string | null> {
  if (!(await isDirectory(dir))) return null;
  const hash = createHash('sha256');
  let entries = 0;
  let bytes = 0;
  const walk = async (rel: string): Promise<boolean> => {
    const names = (await readdir(path.join(dir, rel))).sort();
    for (const name of names) {
      if (++entries > MAX_FILES) return false;
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = path.join(dir, childRel);
      const st = await lstat(abs);
      const mode = (st.mode & 0o777).toString(8);
      if (st.isSymbolicLink()) {
        hash.update(`L\0${childRel}\0${await readlink(abs)}\0`);
      } else if (st.isDirectory()) {
        hash.update(`D\0${childRel}\0${mode}\0`);
        if (!(await walk(childRel))) return false;
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > DIGEST_MAX_BYTES) return false;
        const data = await readFile(abs);
        hash.update(`F\0${childRel}\0${mode}\0${data.byteLength}\0`).update(data);
      } else {
        hash.update(`O\0${childRel}\0`);
      }
    }
    return true;
  };
  try {
    return (await walk('')) ? hash.digest('hex') : null;
  } catch (err) {
    // Changed or removed while read, or unreadable: not comparable (counts as different).
    if (['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
    throw err;
  }
}

/** Whether `p` is a directory itself (not a file, not a symlink to one). */
async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Remove `dir` and everything in it; nothing when `dir` is null or gone. */
export async function removeQuietly(dir: string | null): Promise<void> {
  if (dir !== null) await rm(dir, { recursive: true, force: true });
}
