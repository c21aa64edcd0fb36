/**
 * `fezz serve --source s3://bucket/prefix` (docs/fleet.md): follow a fleet's desired-state
 * document and install what it names into this host's functions directory, through the
 * host's own deploy (the same checks, probe start and atomic swap as `POST /admin/deploy`).
 *
 * - The initial sync runs before {@link startSourceSync} resolves, so a host opens its port
 *   with the fleet's functions already served.
 * - Then state.json is polled with a conditional GET (`If-None-Match: <etag>`): an unchanged
 *   document costs a 304 and nothing else.
 * - Each bundle is checked before use: its bytes must hash to its name, it must be at most
 *   DEPLOY_MAX_BYTES, and the `<id>@<version>` in its fezz.json must be the key naming it.
 *   One that fails (or that the host refuses) is logged with its key and reason, counted,
 *   and retried when state.json changes next, and meanwhile with back-off (RETRY_MIN_MS
 *   doubling to RETRY_MAX_MS: a store that failed for a moment, or a bundle put back); the
 *   others still apply. A retry that fails for the same reason is not logged again.
 * - Versions this sync installed that leave state.json are removed (`remove`); versions it
 *   did not install (put there by hand or by the admin API) are never touched. What it
 *   installed is kept in `<dir>/.fezz-source.json` (a dot-file: the watcher and the
 *   registry skip it), so a restarted host knows.
 */
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { DEPLOY_MAX_BYTES } from '../build/deploy-bundle.js';
import { fezzError } from '../errors.js';
import { checkPackage } from '../registry/deploy.js';
import { S3Store, takeS3Credentials, type S3StoreOptions } from './s3-store.js';
import { parseS3Url } from './s3-url.js';
import { bundleName, isFunctionKey, parseState, sha256Hex, STATE_MAX_BYTES, STATE_NAME, type DesiredState } from './state.js';

/** The sync's record of what it installed, inside the functions directory. */
export const SOURCE_RECORD = '.fezz-source.json';
/** Largest record read, in bytes. */
const RECORD_MAX_BYTES = 8 * 1024 * 1024;
/** First wait before failed versions are tried again though state.json did not change, in ms (it doubles). */
export const RETRY_MIN_MS = 5_000;
/** Longest wait between two such retries, in ms. */
export const RETRY_MAX_MS = 5 * 60_000;

/** What a sync did so far (for logs, the admin API, tests). */
export interface SourceSyncStatus {
  /** `s3://bucket/prefix` */
  source: string;
  /** Revision of the last state.json applied; null before one was read (or while there is none). */
  revision: number | null;
  /** `<id>@<version>` -> sha256 of the bundle this sync installed. */
  installed: Record<string, string>;
  /** Versions whose last attempt failed: the bundle and why. Retried when state.json changes, and with back-off. */
  failed: Record<string, { sha256: string; error: string }>;
  /** Bundle installs and removals that failed, since the start. */
  failures: number;
  /** Why the last read of state.json failed, or null when it worked. */
  lastError: string | null;
}

/** Follows a desired-state document; applies each change through `deploy`/`remove`. */
export interface SourceSync {
  /** Stop following (waits for a change being applied), and close the store's connections. */
  close(): Promise<void>;
  status(): SourceSyncStatus;
}

export interface SourceSyncOptions {
  /** `s3://bucket/prefix` */
  source: string;
  /** The functions directory (holds the record, SOURCE_RECORD). */
  dir: string;
  logger: Logger;
  /** The host's deploy (Host.deploy): same checks and atomic swap as a local deploy. */
  deploy(pkg: unknown, replace: boolean): Promise<{ key: string }>;
  /** The host's remove (Host.remove), for versions this sync installed that left state.json. */
  remove(id: string, version: string): Promise<unknown>;
  /** Time between polls of state.json, in ms. @default 1000 */
  pollMs?: number;
  /** Endpoint, region, credentials. @default the AWS environment (static keys taken out of it: takeS3Credentials) */
  s3?: S3StoreOptions;
  /** How long the initial sync retries an unreachable store before giving up, in ms. @default 30000 */
  initialTimeoutMs?: number;
}

/**
 * Start following `opts.source`. Resolves after the initial sync (bundles that fail are
 * logged and counted, not fatal).
 * @throws FezzError FEZZ_ERR_FLEET_URL_INVALID (a bad source or endpoint);
 *   FEZZ_ERR_FLEET_STORE when state.json could not be read within `initialTimeoutMs`.
 */
export async function startSourceSync(opts: SourceSyncOptions): Promise<SourceSync> {
  const location = parseS3Url(opts.source);
  const credentials = opts.s3?.credentials ?? takeS3Credentials();
  const store = new S3Store(location, { ...opts.s3, ...(credentials !== undefined ? { credentials } : {}) });
  const sync = new Sync(store, opts);
  try {
    await sync.initial(opts.initialTimeoutMs ?? 30_000);
  } catch (err) {
    store.close();
    throw err;
  }
  sync.follow();
  return sync;
}

class Sync implements SourceSync {
  readonly #store: S3Store;
  readonly #o: SourceSyncOptions;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #recordPath: string;
  /** ETag of the last state.json applied ('' = none yet); null when it was missing. */
  #etag: string | null = '';
  #installed: Record<string, string> = Object.create(null) as Record<string, string>;
  #failed: Record<string, { sha256: string; error: string }> = Object.create(null) as Record<string, { sha256: string; error: string }>;
  #revision: number | null = null;
  /** The last state.json applied, for retries of its failed versions. */
  #state: DesiredState | null = null;
  /** When failed versions are tried again (performance.now()), and the wait after that. */
  #retryAt = 0;
  #retryMs = RETRY_MIN_MS;
  #failures = 0;
  #lastError: string | null = null;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(store: S3Store, o: SourceSyncOptions) {
    this.#store = store;
    this.#o = o;
    this.#log = o.logger.child({ source: store.location.url });
    this.#pollMs = Math.max(50, o.pollMs ?? 1000);
    this.#recordPath = path.join(o.dir, SOURCE_RECORD);
  }

  status(): SourceSyncStatus {
    return {
      source: this.#store.location.url, revision: this.#revision, installed: { ...this.#installed },
      failed: { ...this.#failed }, failures: this.#failures, lastError: this.#lastError,
    };
  }

  /** Read the record, then sync until state.json was read once (or the deadline passed). */
  async initial(timeoutMs: number): Promise<void> {
    await this.#readRecord();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.#syncOnce();
        return;
      } catch (err) {
        this.#noteReadError(err);
        if (Date.now() + this.#pollMs > deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(this.#pollMs, 1000)));
      }
    }
  }

  /** Poll every pollMs from now on, one sync at a time. */
  follow(): void {
    const tick = (): void => {
      this.#timer = null;
      if (this.#closed) return;
      this.#running = this.#syncOnce().then(() => {
        if (this.#lastError !== null) this.#log.info('fleet source readable again');
        this.#lastError = null;
      }, (err: unknown) => this.#noteReadError(err)).finally(() => {
        if (!this.#closed) this.#timer = setTimeout(tick, this.#pollMs);
      });
    };
    this.#timer = setTimeout(tick, this.#pollMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#running;
    this.#store.close();
  }

  /** Log a failed read of state.json once per distinct reason (not every poll). */
  #noteReadError(err: unknown): void {
    const why = (err as Error).message ?? String(err);
    if (why !== this.#lastError) this.#log.error({ code: (err as { code?: unknown }).code, reason: why }, 'cannot read the fleet\'s desired state; keeping what is installed, retrying');
    this.#lastError = why;
  }

  /** One poll: a conditional read of state.json, and the changes it asks for. */
  async #syncOnce(): Promise<void> {
    const got = await this.#store.get(STATE_NAME, {
      maxBytes: STATE_MAX_BYTES,
      ...(this.#etag !== null && this.#etag !== '' ? { ifNoneMatch: this.#etag } : {}),
    });
    if (got.status === 'not-modified') {
      if (this.#state !== null && Object.keys(this.#failed).length > 0 && performance.now() >= this.#retryAt) {
        this.#log.debug({ failed: Object.keys(this.#failed) }, 'trying the versions that failed again');
        await this.#apply(this.#state);
      }
      return;
    }
    if (got.status === 'missing') {
      if (this.#etag === null) return; // still missing
      this.#etag = null;
      this.#revision = null;
      if (Object.keys(this.#installed).length > 0) this.#log.warn('the fleet has no state.json (nothing is deployed there): removing what this host installed from it');
      else this.#log.info('the fleet has no state.json yet: nothing is deployed there');
      this.#state = { revision: 0, functions: {} };
      await this.#apply(this.#state);
      return;
    }
    this.#etag = got.etag; // a bad document is not re-read until it changes
    let state: DesiredState;
    try {
      state = parseState(got.body, this.#store.where(STATE_NAME));
    } catch (err) {
      this.#failures++;
      this.#log.error({ code: (err as { code?: unknown }).code, reason: (err as Error).message }, 'the fleet\'s desired state is invalid: nothing applied until it changes');
      return;
    }
    this.#retryMs = RETRY_MIN_MS; // a new document: its failures start the back-off afresh
    await this.#apply(state);
    this.#state = state;
    this.#revision = state.revision;
  }

  /** Install what `state` names and this host lacks; remove what this sync installed and it no longer names. */
  async #apply(state: DesiredState): Promise<void> {
    const wanted = Object.entries(state.functions).sort(([a], [b]) => a.localeCompare(b));
    const todo = wanted.filter(([key, e]) => this.#installed[key] !== e.sha256);
    const failed: Array<[string, string]> = [];
    let installed = 0;
    for (const [key, e] of todo) {
      if (this.#closed) return;
      if (await this.#install(key, e.sha256)) installed++;
      else failed.push([key, e.sha256]);
    }
    let removed = 0;
    for (const key of Object.keys(this.#installed)) {
      if (this.#closed) return;
      if (state.functions[key] !== undefined) continue;
      if (await this.#uninstall(key)) removed++;
    }
    // A version may have failed because one being removed held its route: try those again.
    if (removed > 0) for (const [key, sha] of failed) if (!this.#closed && await this.#install(key, sha)) installed++;
    if (Object.keys(this.#failed).length > 0) {
      this.#retryAt = performance.now() + this.#retryMs;
      this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
    } else {
      this.#retryMs = RETRY_MIN_MS;
    }
    if (todo.length > 0 || removed > 0) {
      this.#log.info({ revision: state.revision, installed, removed, failed: Object.keys(this.#failed).length }, 'applied the fleet\'s desired state');
    }
  }

  /** Fetch, verify and deploy one bundle. Returns whether it is installed now; a failure is logged and counted. */
  async #install(key: string, sha256: string): Promise<boolean> {
    try {
      const name = bundleName(sha256);
      const got = await this.#store.get(name, { maxBytes: DEPLOY_MAX_BYTES });
      if (got.status !== 'ok') throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `${this.#store.where(name)} does not exist`]);
      const actual = sha256Hex(got.body);
      if (actual !== sha256) throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `its bytes hash to ${actual}, not to its name (tampered with or corrupted)`]);
      let pkg: unknown;
      try {
        pkg = JSON.parse(got.body.toString('utf8'));
      } catch (err) {
        throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `not valid JSON (${(err as Error).message})`], err);
      }
      const inside = checkPackage(pkg).key;
      if (inside !== key) throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `it holds ${inside}, not ${key}`]);
      // Replace only a version this sync installed (a --replace in the fleet); one put here
      // another way is not overwritten (the host answers 409 unless it is identical).
      await this.#o.deploy(pkg, this.#installed[key] !== undefined);
      this.#installed[key] = sha256;
      delete this.#failed[key];
      await this.#writeRecord();
      this.#log.info({ fn: key, sha256 }, 'installed from the fleet');
      return true;
    } catch (err) {
      this.#failures++;
      const reason = (err as Error).message ?? String(err);
      const again = this.#failed[key]?.sha256 === sha256 && this.#failed[key]?.error === reason;
      this.#failed[key] = { sha256, error: reason };
      const line = { fn: key, sha256, code: (err as { code?: unknown }).code, reason };
      if (again) this.#log.debug(line, 'a version from the fleet still cannot be installed');
      else this.#log.error(line, 'cannot install a version from the fleet; retried with back-off and when the desired state changes');
      return false;
    }
  }

  /** Remove a version this sync installed. Returns whether it is gone; a failure is logged and counted. */
  async #uninstall(key: string): Promise<boolean> {
    const at = key.indexOf('@');
    try {
      await this.#o.remove(key.slice(0, at), key.slice(at + 1));
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND') {
        this.#failures++;
        this.#log.error({ fn: key, code: (err as { code?: unknown }).code, reason: (err as Error).message }, 'cannot remove a version the fleet no longer names; retried when its desired state changes');
        return false;
      }
    }
    delete this.#installed[key];
    delete this.#failed[key];
    await this.#writeRecord();
    this.#log.info({ fn: key }, 'removed: the fleet no longer names it');
    return true;
  }

  /** Load the record of a previous run; forget entries of another source, or whose directory is gone. */
  async #readRecord(): Promise<void> {
    let text: string;
    try {
      if ((await stat(this.#recordPath)).size > RECORD_MAX_BYTES) throw new Error(`over ${RECORD_MAX_BYTES} bytes`);
      text = await readFile(this.#recordPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn({ file: this.#recordPath, reason: (err as Error).message }, 'cannot read the record of the fleet sync; starting afresh');
      return;
    }
    let record: { source?: unknown; installed?: unknown };
    try {
      record = JSON.parse(text) as typeof record;
    } catch {
      this.#log.warn({ file: this.#recordPath }, 'the record of the fleet sync is not JSON; starting afresh');
      return;
    }
    if (record.source !== this.#store.location.url) {
      this.#log.warn({ file: this.#recordPath, was: record.source }, 'the record of the fleet sync is of another source: the versions it lists are left alone');
      return;
    }
    const installed = typeof record.installed === 'object' && record.installed !== null ? record.installed as Record<string, unknown> : {};
    for (const [key, sha] of Object.entries(installed)) {
      if (!isFunctionKey(key) || typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) continue;
      const dirGone = await stat(path.join(this.#o.dir, key)).then((s) => !s.isDirectory(), () => true);
      if (!dirGone) this.#installed[key] = sha;
    }
  }

  /** Write the record atomically (temp file + rename). */
  async #writeRecord(): Promise<void> {
    const tmp = `${this.#recordPath}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ source: this.#store.location.url, installed: this.#installed }, null, 1) + '\n', { mode: 0o600 });
    await rename(tmp, this.#recordPath);
  }
}
