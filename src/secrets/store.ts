/**
 * The secrets store: per-function secret values (API keys, signing keys) kept by the host
 * outside the functions directory, encrypted at rest. docs/secrets.md.
 *
 * Layout: one file per function id, `<dir>/<id>.json` (mode 0600, the directory 0700),
 * written atomically (a temporary file in the same directory, fsync, rename):
 *
 * ```json
 * { "format": 1, "id": "hello", "keyId": "3f1c…",
 *   "secrets": { "API_KEY": { "nonce": "<base64>", "tag": "<base64>", "data": "<base64>", "updatedAt": "2026-12-01T10:00:00.000Z" } } }
 * ```
 *
 * Each value is AES-256-GCM with a random 96-bit nonce; the additional data binds it to its
 * function and name (a value copied under another name or function does not decrypt).
 * `keyId` names the key ({@link keyId}), so a store opened with another key is reported as
 * that, not as damage. Values are decrypted when the store opens (a wrong key stops the host
 * at start, naming the file) and kept in memory; a file changed by another process (the other
 * host processes of `--workers N`) is read again on the next {@link SecretStore.values}.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { FezzError, fezzError } from '../errors.js';
import { ID_PATTERN } from '../manifest/schema.js';
import { keyId, loadOrCreateKeyFile, parseKey, readKeyFile } from './key.js';

/** Secret names: environment variable names, not `FEZZ_*` (the host's own). */
export const SECRET_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Longest secret name, in characters. */
export const MAX_SECRET_NAME_LENGTH = 128;
/** Largest secret value, in bytes (UTF-8). */
export const MAX_SECRET_VALUE_BYTES = 64 * 1024; // 64 KiB
/** Most secrets one function id may have. */
export const MAX_SECRETS_PER_FUNCTION = 128;
/** Largest store file read, in bytes (128 values of 64 KiB in base64 fit). */
const MAX_STORE_FILE_BYTES = 16 * 1024 * 1024;
/** Longest function id with a store file (`<id>.json` and its temporary name must fit in 255 bytes). */
const MAX_ID_LENGTH = 200;
/** `<id>.json` of a function id: a store file. */
const STORE_FILE = /^([a-z0-9][a-z0-9-]*)\.json$/;
const FORMAT = 1;
const NONCE_BYTES = 12;

/** What the admin API shows of a secret: never its value. */
export interface SecretInfo {
  name: string;
  /** ISO 8601 time of the last `put`. */
  updatedAt: string;
}

/** Where the function's secret values are read from when its runtime is prepared (registry.ts). */
export interface SecretSource {
  /**
   * The secrets of function `id`, by name (empty when it has none).
   * @throws FezzError FEZZ_ERR_SECRETS_KEY / FEZZ_ERR_SECRETS_STORE when its file cannot be read or decrypted.
   */
  values(id: string): Promise<ReadonlyMap<string, string>>;
}

export interface SecretStoreOptions {
  /** The store's directory (absolute). Created (0700) when the first secret is stored. */
  dir: string;
  /**
   * The key as text (64 hex digits or base64 of 32 bytes), e.g. `FEZZ_SECRETS_KEY`'s value.
   * When set, `keyFile` is not used.
   */
  key?: string | null;
  /** The key file (used when `key` is not set): read at open; created (0600, random) by the first `put` when missing. */
  keyFile?: string | null;
  /** How `key` is named in messages. @default 'the secretsKey option' */
  keyLabel?: string;
  logger?: Logger;
}

interface StoredValue { nonce: string; tag: string; data: string; updatedAt: string }
interface StoreFile { format: number; id: string; keyId: string; secrets: Record<string, StoredValue> }
interface Entry { value: string; updatedAt: string }
interface Cached { sig: string; entries: Map<string, Entry>; view: ReadonlyMap<string, string> }

const EMPTY: ReadonlyMap<string, string> = new Map();

/**
 * @throws FezzError FEZZ_ERR_SECRET_NAME_INVALID unless `name` is an environment variable
 *   name (`[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters) that does not start with `FEZZ_`.
 */
export function checkSecretName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_SECRET_NAME_LENGTH || !SECRET_NAME_PATTERN.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 40)) + (name.length > 40 ? '…' : '') : typeof name;
    throw fezzError('FEZZ_ERR_SECRET_NAME_INVALID', [shown, `expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most ${MAX_SECRET_NAME_LENGTH} characters), e.g. API_KEY`]);
  }
  if (name.startsWith('FEZZ_')) throw fezzError('FEZZ_ERR_SECRET_NAME_INVALID', [JSON.stringify(name), 'FEZZ_* names are the host\'s own']);
}

/**
 * @throws FezzError FEZZ_ERR_BAD_REQUEST unless `id` is a function id (`[a-z0-9][a-z0-9-]*`, at most 200 characters).
 */
export function checkFunctionId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length > MAX_ID_LENGTH || !ID_PATTERN.test(id)) {
    const shown = typeof id === 'string' ? JSON.stringify(id.slice(0, 40)) : typeof id;
    throw fezzError('FEZZ_ERR_BAD_REQUEST', [`function id ${shown} must match [a-z0-9][a-z0-9-]* (at most ${MAX_ID_LENGTH} characters)`]);
  }
}

/**
 * The value of secret `name` from the bytes given: UTF-8 text of 1 byte to 64 KiB with no
 * NUL (it becomes an environment variable). Errors never show the value.
 * @throws FezzError FEZZ_ERR_SECRET_VALUE_INVALID (empty, not UTF-8, a NUL),
 *   FEZZ_ERR_SECRET_LIMIT (413: over 64 KiB).
 */
export function checkSecretValue(name: string, bytes: Uint8Array): string {
  if (bytes.byteLength === 0) throw fezzError('FEZZ_ERR_SECRET_VALUE_INVALID', [name, 'it is empty (fezz secret put reads the value from stdin)']);
  if (bytes.byteLength > MAX_SECRET_VALUE_BYTES) throw fezzError('FEZZ_ERR_SECRET_LIMIT', [name, 'this function', `the value is ${bytes.byteLength} bytes, over the limit of ${MAX_SECRET_VALUE_BYTES}`]);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw fezzError('FEZZ_ERR_SECRET_VALUE_INVALID', [name, 'it is not UTF-8 text (encode binary keys as base64 or hex)']);
  }
  if (text.includes('\0')) throw fezzError('FEZZ_ERR_SECRET_VALUE_INVALID', [name, 'it contains a NUL character, which an environment variable cannot hold']);
  return text;
}

const aad = (id: string, name: string): Buffer => Buffer.from(`fezz-secret-v1\0${id}\0${name}`, 'utf8');

function encrypt(key: Buffer, id: string, name: string, value: string, updatedAt: string): StoredValue {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad(id, name));
  const data = Buffer.concat([c.update(value, 'utf8'), c.final()]);
  return { nonce: nonce.toString('base64'), tag: c.getAuthTag().toString('base64'), data: data.toString('base64'), updatedAt };
}

/** @returns the plaintext, or null when it does not authenticate (damaged, or another key). */
function decrypt(key: Buffer, id: string, name: string, v: StoredValue): string | null {
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(v.nonce, 'base64'));
    d.setAAD(aad(id, name));
    d.setAuthTag(Buffer.from(v.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(v.data, 'base64')), d.final()]).toString('utf8');
  } catch {
    return null;
  }
}

const isStoredValue = (v: unknown): v is StoredValue => {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return typeof o.nonce === 'string' && typeof o.tag === 'string' && typeof o.data === 'string' && typeof o.updatedAt === 'string';
};

export class SecretStore implements SecretSource {
  /** The store's directory (absolute). */
  readonly dir: string;
  readonly #keyFile: string | null;
  readonly #keyLabel: string;
  readonly #logger: Logger | undefined;
  #key: Buffer | null;
  #keyId: string | null;
  readonly #cache = new Map<string, Cached>();
  /** Per function id: the tail of its chain of writes (one read-modify-write at a time). */
  readonly #locks = new Map<string, Promise<unknown>>();

  private constructor(o: SecretStoreOptions, key: Buffer | null) {
    this.dir = o.dir;
    this.#keyFile = o.keyFile ?? null;
    this.#keyLabel = o.keyLabel ?? 'the secretsKey option';
    this.#logger = o.logger;
    this.#key = key;
    this.#keyId = key !== null ? keyId(key) : null;
  }

  /**
   * Open the store: load the key (from `key`, else `keyFile` when it exists) and decrypt
   * every stored file, so a wrong key or a damaged file stops the host now with a message
   * naming the file, rather than handing a function garbage later.
   * @throws FezzError FEZZ_ERR_SECRETS_KEY (a key that is not a key; a key file that is
   *   unreadable, too open or missing while secrets are stored; a store written with another
   *   key), FEZZ_ERR_SECRETS_STORE (a file that is unreadable, not a store file, or whose
   *   values do not decrypt), FEZZ_ERR_CONFIG_INVALID (neither `key` nor `keyFile`).
   */
  static async open(o: SecretStoreOptions): Promise<SecretStore> {
    let key: Buffer | null = null;
    if (o.key != null && o.key !== '') key = parseKey(o.key, o.keyLabel ?? 'the secretsKey option');
    else if (o.keyFile != null) key = readKeyFile(o.keyFile);
    else throw fezzError('FEZZ_ERR_CONFIG_INVALID', ['secretsKeyFile', 'a key file path or a secretsKey with the secretsDir option', 'neither']);
    const store = new SecretStore(o, key);
    let names: string[];
    try {
      names = await readdir(o.dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return store;
      throw fezzError('FEZZ_ERR_SECRETS_STORE', [o.dir, `cannot read the directory (${code})`], err);
    }
    for (const n of names.sort()) {
      const m = STORE_FILE.exec(n);
      if (m === null || m[1]!.length > MAX_ID_LENGTH) continue;
      await store.values(m[1]!);
    }
    return store;
  }

  #file(id: string): string { return path.join(this.dir, `${id}.json`); }

  /** The key, read from the key file now if it was not there at open (another host process created it). */
  #readKey(file: string): Buffer {
    if (this.#key !== null) return this.#key;
    const kf = this.#keyFile;
    const key = kf !== null ? readKeyFile(kf) : null;
    if (key === null) {
      throw fezzError('FEZZ_ERR_SECRETS_KEY', [kf ?? this.#keyLabel, `missing, but ${file} holds secrets: they can only be read with the key they were written with (restore that key file, or give it with --secrets-key-file / FEZZ_SECRETS_KEY)`]);
    }
    this.#key = key;
    this.#keyId = keyId(key);
    return key;
  }

  /**
   * The key for writing: created in the key file when there is none yet, unless the store
   * already holds files (written with a key that is now missing: a new key would split it).
   */
  async #writeKey(): Promise<Buffer> {
    if (this.#key !== null) return this.#key;
    const kf = this.#keyFile!;
    if (readKeyFile(kf) === null) {
      const names = await readdir(this.dir).catch(() => [] as string[]);
      const stored = names.find((n) => STORE_FILE.test(n));
      if (stored !== undefined) this.#readKey(path.join(this.dir, stored)); // throws: the key is missing
    }
    const { key, created } = loadOrCreateKeyFile(kf);
    if (created) this.#logger?.info({ keyFile: kf }, 'created the secrets key file (mode 0600): keep it, and back it up apart from the store; without it the stored secrets cannot be read');
    this.#key = key;
    this.#keyId = keyId(key);
    return key;
  }

  /** Read and decrypt `<id>.json` when it changed since the last read; null when there is none. */
  async #load(id: string): Promise<Cached | null> {
    const file = this.#file(id);
    let st;
    try {
      st = await lstat(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') { this.#cache.delete(id); return null; }
      throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `cannot read it (${code})`], err);
    }
    const sig = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const cached = this.#cache.get(id);
    if (cached !== undefined && cached.sig === sig) return cached;
    if (!st.isFile()) throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, 'not a regular file (a symbolic link or a directory)']);
    if (st.size > MAX_STORE_FILE_BYTES) throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `${st.size} bytes, over the ${MAX_STORE_FILE_BYTES} a store file may have`]);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `not a store file (${err instanceof SyntaxError ? 'not JSON' : (err as NodeJS.ErrnoException).code ?? 'unreadable'})`], err);
    }
    const f = parsed as Partial<StoreFile> | null;
    if (f === null || typeof f !== 'object' || f.format !== FORMAT || f.id !== id || typeof f.keyId !== 'string' || f.secrets === null || typeof f.secrets !== 'object' || Array.isArray(f.secrets)) {
      throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `not a store file of function ${id} (format ${FORMAT})`]);
    }
    const key = this.#readKey(file);
    if (f.keyId !== this.#keyId) {
      throw fezzError('FEZZ_ERR_SECRETS_KEY', [this.#keyFile ?? this.#keyLabel, `it is not the key ${file} was written with (that file's key id is ${f.keyId}, this key's is ${this.#keyId}): start the host with the key the store was written with`]);
    }
    const entries = new Map<string, Entry>();
    for (const [name, v] of Object.entries(f.secrets)) {
      if (!SECRET_NAME_PATTERN.test(name) || !isStoredValue(v)) throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `entry ${JSON.stringify(name.slice(0, 40))} is malformed`]);
      const value = decrypt(key, id, name, v);
      if (value === null) throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `secret ${name} does not decrypt with this key (the file was changed or damaged)`]);
      entries.set(name, { value, updatedAt: v.updatedAt });
    }
    return this.#remember(id, sig, entries);
  }

  #remember(id: string, sig: string, entries: Map<string, Entry>): Cached {
    const view = new Map<string, string>();
    for (const [name, e] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) view.set(name, e.value);
    const c: Cached = { sig, entries, view };
    this.#cache.set(id, c);
    return c;
  }

  /**
   * The secrets of function `id`, by name, sorted (re-read when its file changed); none for
   * an id that cannot have a store file (over 200 characters).
   * @throws FezzError as {@link open}, for that function's file.
   */
  async values(id: string): Promise<ReadonlyMap<string, string>> {
    // Any manifest id may ask; one that cannot have a store file has no secrets.
    if (id.length > MAX_ID_LENGTH || !ID_PATTERN.test(id)) return EMPTY;
    return (await this.#load(id))?.view ?? EMPTY;
  }

  /**
   * The names of function `id`'s secrets with their last update, sorted by name; never the values.
   * @throws FezzError FEZZ_ERR_BAD_REQUEST (a malformed id), as {@link open} for its file.
   */
  async list(id: string): Promise<SecretInfo[]> {
    checkFunctionId(id);
    const c = await this.#load(id);
    if (c === null) return [];
    return [...c.entries].map(([name, e]) => ({ name, updatedAt: e.updatedAt })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /**
   * Store `value` as secret `name` of function `id` (replacing one of that name). The key
   * file is created first when there is none.
   * @returns the name, its update time and whether it is new.
   * @throws FezzError FEZZ_ERR_BAD_REQUEST, FEZZ_ERR_SECRET_NAME_INVALID, FEZZ_ERR_SECRET_LIMIT
   *   (413: the function has 128 secrets already), FEZZ_ERR_SECRETS_KEY / _STORE (the store
   *   cannot be read or written).
   */
  put(id: string, name: string, value: string): Promise<SecretInfo & { created: boolean }> {
    checkFunctionId(id);
    checkSecretName(name);
    return this.#locked(id, async () => {
      const key = await this.#writeKey();
      const current = await this.#load(id);
      const entries = new Map(current?.entries ?? []);
      const created = !entries.has(name);
      if (created && entries.size >= MAX_SECRETS_PER_FUNCTION) {
        throw fezzError('FEZZ_ERR_SECRET_LIMIT', [name, id, `the function has ${entries.size} secrets, the most it may have`]);
      }
      const updatedAt = new Date().toISOString();
      entries.set(name, { value, updatedAt });
      await this.#write(id, key, entries);
      return { name, updatedAt, created };
    });
  }

  /**
   * Remove secret `name` of function `id` (the file goes with its last secret).
   * @throws FezzError FEZZ_ERR_SECRET_NOT_FOUND (404), FEZZ_ERR_BAD_REQUEST,
   *   FEZZ_ERR_SECRET_NAME_INVALID, FEZZ_ERR_SECRETS_KEY / _STORE.
   */
  delete(id: string, name: string): Promise<void> {
    checkFunctionId(id);
    checkSecretName(name);
    return this.#locked(id, async () => {
      const current = await this.#load(id);
      if (current === null || !current.entries.has(name)) throw fezzError('FEZZ_ERR_SECRET_NOT_FOUND', [id, name]);
      const entries = new Map(current.entries);
      entries.delete(name);
      if (entries.size === 0) {
        await unlink(this.#file(id)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw fezzError('FEZZ_ERR_SECRETS_STORE', [this.#file(id), `cannot remove it (${err.code})`], err);
        });
        this.#cache.delete(id);
        return;
      }
      await this.#write(id, this.#readKey(this.#file(id)), entries);
    });
  }

  /** Write `entries` as `<id>.json`: a temporary file (0600, fsync), then rename over the old one. */
  async #write(id: string, key: Buffer, entries: Map<string, Entry>): Promise<void> {
    const file = this.#file(id);
    const secrets: Record<string, StoredValue> = {};
    for (const [name, e] of [...entries].sort(([a], [b]) => (a < b ? -1 : 1))) secrets[name] = encrypt(key, id, name, e.value, e.updatedAt);
    const doc: StoreFile = { format: FORMAT, id, keyId: this.#keyId!, secrets };
    const tmp = path.join(this.dir, `.${id}.json.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(JSON.stringify(doc) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if (err instanceof FezzError) throw err;
      throw fezzError('FEZZ_ERR_SECRETS_STORE', [file, `cannot write it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`], err);
    }
    // The rename is durable once the directory is synced (best effort: not every file system can).
    try {
      const dh = await open(this.dir, 'r');
      await dh.sync().catch(() => undefined);
      await dh.close();
    } catch { /* best effort */ }
    const st = await stat(file);
    this.#remember(id, `${st.ino}:${st.size}:${st.mtimeMs}`, entries);
  }

  #locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.#locks.set(id, tail);
    void tail.then(() => { if (this.#locks.get(id) === tail) this.#locks.delete(id); });
    return run;
  }
}
