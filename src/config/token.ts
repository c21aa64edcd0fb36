/**
 * The admin bearer token: where it comes from and where it is kept. The token lets its holder
 * deploy, delete and read every function, so it must never sit where a function can read it:
 * not in the host's command line (`/proc/<pid>/cmdline`), not in its environment
 * (`process.env`, `process.report`), not in a log line. It lives in a file readable by the
 * host's user only (mode 0600), which `fezz serve` creates when none is given and the CLI
 * reads; `FEZZ_TOKEN` is still accepted and removed from `process.env` at start.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fezzError } from '../errors.js';

/** Shortest token accepted, in characters. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * Where `fezz serve` keeps its admin token when none is given, and where the CLI looks for
 * it: `$FEZZ_TOKEN_FILE`, else `$XDG_RUNTIME_DIR/fezz/admin-token`, else `~/.fezz/admin-token`.
 */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FEZZ_TOKEN_FILE) return path.resolve(env.FEZZ_TOKEN_FILE);
  const base = env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'fezz') : path.join(os.homedir(), '.fezz');
  return path.join(base, 'admin-token');
}

/**
 * Read the token in `file`. The file must be a regular file that neither its group nor
 * others can read or write (chmod 600): a token anyone can read is no secret.
 * @returns the token, or null when the file does not exist.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID (a symlink, a directory, a mode wider than 0600,
 *   a token shorter than 16 characters or with spaces).
 */
export function readTokenFile(file: string): string | null {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['tokenFile', 'a readable file', `${file} (${(err as NodeJS.ErrnoException).code})`], err);
  }
  if (!st.isFile()) throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['tokenFile', 'a regular file (not a symlink or directory)', file]);
  if ((st.mode & 0o077) !== 0) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['tokenFile', 'a file only its owner can read (chmod 600 it)', `${file} with mode ${(st.mode & 0o777).toString(8)}`]);
  }
  const token = readFileSync(file, 'utf8').trim();
  checkToken(token, `the token in ${file}`);
  return token;
}

/**
 * The token in `file`, or a new random one (32 bytes, hex) written there with mode 0600 (its
 * directory created with 0700) when the file does not exist.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID as {@link readTokenFile}, or when the file cannot be written.
 */
export function loadOrCreateTokenFile(file: string): { token: string; created: boolean } {
  const existing = readTokenFile(file);
  if (existing !== null) return { token: existing, created: false };
  const token = randomBytes(32).toString('hex');
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another host created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { token: readTokenFile(file)!, created: false };
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['tokenFile', 'a writable path', `${file} (${(err as NodeJS.ErrnoException).code})`], err);
  }
  return { token, created: true };
}

/** @throws FezzError FEZZ_ERR_CONFIG_INVALID when `token` is too short or has white space. */
export function checkToken(token: unknown, what = 'token'): asserts token is string {
  if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['token', `a string of at least ${MIN_TOKEN_LENGTH} characters without spaces`, `${what}: ${typeof token === 'string' ? `${token.length} characters` : typeof token}`]);
  }
}
