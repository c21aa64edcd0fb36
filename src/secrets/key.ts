/**
 * The key that encrypts the secrets store (AES-256-GCM, 32 bytes), and where it comes from:
 * a key file (mode 0600, written with a random key when a secret is first stored and no file
 * exists yet, as the admin token file is) or the value of `FEZZ_SECRETS_KEY`, which
 * `fezz serve` removes from its environment before it starts anything. The key never sits in
 * the store's directory by default, so a copy of the store (a backup, a volume snapshot)
 * holds only ciphertext.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fezzError } from '../errors.js';

/** Key length in bytes (AES-256). */
export const KEY_BYTES = 32;

/**
 * Where `fezz serve` keeps secrets when `--secrets-dir` is not given: `$FEZZ_SECRETS_DIR`,
 * else `$XDG_STATE_HOME/fezz/secrets`, else `~/.fezz/secrets`. State, not runtime: unlike the
 * admin token (`$XDG_RUNTIME_DIR`, gone at reboot), secrets must survive a reboot.
 */
export function defaultSecretsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FEZZ_SECRETS_DIR) return path.resolve(env.FEZZ_SECRETS_DIR);
  return env.XDG_STATE_HOME ? path.join(env.XDG_STATE_HOME, 'fezz', 'secrets') : path.join(os.homedir(), '.fezz', 'secrets');
}

/**
 * Where `fezz serve` looks for (and creates) the secrets key when neither
 * `--secrets-key-file` nor `FEZZ_SECRETS_KEY` is given: `$FEZZ_SECRETS_KEY_FILE`, else
 * `$XDG_CONFIG_HOME/fezz/secrets.key`, else `~/.fezz/secrets.key`: beside the store's
 * directory, never inside it.
 */
export function defaultSecretsKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FEZZ_SECRETS_KEY_FILE) return path.resolve(env.FEZZ_SECRETS_KEY_FILE);
  return env.XDG_CONFIG_HOME ? path.join(env.XDG_CONFIG_HOME, 'fezz', 'secrets.key') : path.join(os.homedir(), '.fezz', 'secrets.key');
}

/**
 * Decode a key written as 64 hex digits or as base64 (standard or URL-safe, padding
 * optional) of 32 bytes; white space around it is ignored.
 * @param what names the key's source in the error (`"/etc/fezz/secrets.key"`, `"FEZZ_SECRETS_KEY"`).
 * @throws FezzError FEZZ_ERR_SECRETS_KEY when it is neither (the message never shows the text).
 */
export function parseKey(text: string, what: string): Buffer {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{42,44}={0,2}$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === KEY_BYTES) return b;
  }
  throw fezzError('FEZZ_ERR_SECRETS_KEY', [what, `expected ${KEY_BYTES} bytes written as 64 hex digits or as base64 (e.g. the output of \`openssl rand -hex 32\`), got ${t.length} characters that are neither`]);
}

/**
 * Read the key in `file`. The file must be a regular file (not a symbolic link) that neither
 * its group nor others can read or write (chmod 600 or 400).
 * @returns the key, or null when the file does not exist.
 * @throws FezzError FEZZ_ERR_SECRETS_KEY naming the file (unreadable, a link or directory,
 *   a mode wider than 0600, not a key).
 */
export function readKeyFile(file: string): Buffer | null {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fezzError('FEZZ_ERR_SECRETS_KEY', [file, `cannot read it (${(err as NodeJS.ErrnoException).code})`], err);
  }
  if (!st.isFile()) throw fezzError('FEZZ_ERR_SECRETS_KEY', [file, 'not a regular file (a symbolic link or a directory): give the key file itself']);
  if ((st.mode & 0o077) !== 0) {
    throw fezzError('FEZZ_ERR_SECRETS_KEY', [file, `its mode is ${(st.mode & 0o777).toString(8)}: only its owner may read it (chmod 600 it)`]);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fezzError('FEZZ_ERR_SECRETS_KEY', [file, `cannot read it (${(err as NodeJS.ErrnoException).code})`], err);
  }
  return parseKey(text, file);
}

/**
 * The key in `file`, or a new random one written there (hex, mode 0600; its directory made
 * with 0700) when the file does not exist. Two hosts creating it at once end up with the
 * same key (the second reads the first's).
 * @throws FezzError FEZZ_ERR_SECRETS_KEY as {@link readKeyFile}, or when it cannot be written.
 */
export function loadOrCreateKeyFile(file: string): { key: Buffer; created: boolean } {
  const existing = readKeyFile(file);
  if (existing !== null) return { key: existing, created: false };
  const key = randomBytes(KEY_BYTES);
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return { key: readKeyFile(file)!, created: false };
    throw fezzError('FEZZ_ERR_SECRETS_KEY', [file, `cannot create it (${(err as NodeJS.ErrnoException).code})`], err);
  }
  return { key, created: true };
}

/**
 * A short public name of `key` (16 hex digits of an HMAC of a fixed label): stored beside
 * the ciphertext, so a store opened with another key is told apart from a damaged one. It
 * reveals nothing usable about the key.
 */
export function keyId(key: Buffer): string {
  return createHmac('sha256', key).update('fezz secrets key id v1').digest('hex').slice(0, 16);
}
