/**
 * `fezz deploy <dir> --to s3://bucket/prefix` (docs/fleet.md): upload a deploy package as an
 * immutable bundle named by its sha256, then point `<id>@<version>` at it in state.json by
 * compare-and-swap. Hosts following the store (source-sync.ts) pick the change up.
 *
 * Versions are immutable: a key already in state.json with another bundle is refused
 * (FEZZ_ERR_VERSION_EXISTS, 409) unless `replace`; the same bundle again changes nothing.
 * The check is repeated after every lost compare-and-swap, so of two concurrent deploys of
 * one key with different content exactly one succeeds and the other gets the 409.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DEPLOY_MAX_BYTES } from '../build/deploy-bundle.js';
import { fezzError } from '../errors.js';
import type { S3Store } from './s3-store.js';
import { bundleName, emptyState, parseState, serializeState, sha256Hex, STATE_MAX_BYTES, STATE_NAME, type DesiredState } from './state.js';

/** What a fleet deploy did. */
export interface FleetDeployResult {
  /** `<id>@<version>` */
  key: string;
  /** sha256 of the bundle (lowercase hex). */
  sha256: string;
  /** `deployed`: a new key; `replaced`: another bundle was replaced (`replace`); `unchanged`: it already ran this bundle. */
  outcome: 'deployed' | 'replaced' | 'unchanged';
  /** state.json's revision after the deploy. */
  revision: number;
  /** Compare-and-swap attempts it took (1 when nobody else wrote meanwhile). */
  attempts: number;
}

export interface FleetDeployOptions {
  store: S3Store;
  /** `<id>@<version>` of the package (from its fezz.json). */
  key: string;
  /** The exact `POST /admin/deploy` body bytes (JSON). */
  bundle: Buffer;
  /** Replace the key if it runs another bundle. */
  replace: boolean;
  /** Compare-and-swap attempts before giving up (each lost one re-reads state.json). @default 10 */
  maxAttempts?: number;
}

/** A read state.json and the ETag to swap it against (null: it does not exist yet). */
interface ReadState { state: DesiredState; etag: string | null }

/** Read state.json (an empty state when it does not exist). @throws FezzError FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID */
export async function readState(store: S3Store): Promise<ReadState> {
  const got = await store.get(STATE_NAME, { maxBytes: STATE_MAX_BYTES });
  if (got.status === 'missing') return { state: emptyState(), etag: null };
  if (got.status !== 'ok') throw fezzError('FEZZ_ERR_FLEET_STORE', [store.where(STATE_NAME), 'answered "not modified" to an unconditional read']);
  return { state: parseState(got.body, store.where(STATE_NAME)), etag: got.etag };
}

/**
 * Change state.json with `change` by compare-and-swap: read it, apply `change` (which may
 * throw to refuse, or return null for "nothing to write"), write with `If-Match` (or
 * `If-None-Match: *` when creating); on a lost race read again and re-apply.
 * @returns the state written (or read, when `change` returned null), and the attempts.
 * @throws FezzError FEZZ_ERR_FLEET_CONTENDED after `maxAttempts` lost races; whatever
 *   `change` throws; FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID.
 */
export async function updateState(store: S3Store, change: (state: DesiredState) => DesiredState | null, maxAttempts = 10): Promise<{ state: DesiredState; attempts: number; written: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const { state, etag } = await readState(store);
    const next = change(state);
    if (next === null) return { state, attempts: attempt, written: false };
    const bytes = serializeState(next, store.where(STATE_NAME));
    const put = await store.put(STATE_NAME, bytes, etag === null ? { ifNoneMatch: '*' } : { ifMatch: etag });
    if (put.status === 'ok') return { state: next, attempts: attempt, written: true };
    if (attempt >= maxAttempts) throw fezzError('FEZZ_ERR_FLEET_CONTENDED', [store.where(STATE_NAME), attempt]);
    // Someone else wrote first: back off a little (jittered, growing) and decide again.
    await sleep(Math.min(1000, 20 * 2 ** attempt) * (0.5 + Math.random()));
  }
}

/**
 * Deploy a package to the fleet's store: check its size, refuse a conflicting key early,
 * upload the bundle (create-only: an existing one is verified, never overwritten), then
 * point the key at it in state.json by compare-and-swap.
 * @throws FezzError FEZZ_ERR_VERSION_EXISTS (409: the key runs another bundle and
 *   `replace` is false, found before or after a lost race), FEZZ_ERR_FLEET_BUNDLE_INVALID
 *   (over DEPLOY_MAX_BYTES; or an object already at the bundle's name whose bytes do not
 *   match it), FEZZ_ERR_FLEET_CONTENDED, FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID.
 */
export async function deployToFleet(opts: FleetDeployOptions): Promise<FleetDeployResult> {
  const { store, key, bundle, replace } = opts;
  const sha256 = sha256Hex(bundle);
  const name = bundleName(sha256);
  if (bundle.byteLength > DEPLOY_MAX_BYTES) {
    throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `it is ${bundle.byteLength} bytes, over the ${DEPLOY_MAX_BYTES}-byte deploy limit`]);
  }
  /** Refuses a conflicting key; null when the key already runs this bundle. */
  let previous: string | undefined;
  const change = (state: DesiredState): DesiredState | null => {
    const current = state.functions[key];
    previous = current?.sha256;
    if (current !== undefined && current.sha256 === sha256) return null;
    if (current !== undefined && !replace) throw fezzError('FEZZ_ERR_VERSION_EXISTS', [key, store.location.url]);
    return { ...state, revision: state.revision + 1, functions: { ...state.functions, [key]: { sha256, deployedAt: new Date().toISOString() } } };
  };
  // Refuse before uploading anything when the answer is already known.
  const first = await readState(store);
  if (change(first.state) === null) return { key, sha256, outcome: 'unchanged', revision: first.state.revision, attempts: 1 };
  await uploadBundle(store, name, sha256, key, bundle);
  let { state, attempts, written } = await updateState(store, change, opts.maxAttempts);
  // A garbage collection (collectGarbage) that listed the bundle before state.json named it
  // may have deleted it meanwhile (only a bundle that was already there and old, reused by
  // this deploy). Put it back, and bump the revision so that hosts that found it missing
  // try again.
  if (written && !(await store.exists(name))) {
    await uploadBundle(store, name, sha256, key, bundle);
    const bumped = await updateState(store, (s) => (s.functions[key]?.sha256 === sha256 ? { ...s, revision: s.revision + 1 } : null), opts.maxAttempts);
    state = bumped.state;
    attempts += bumped.attempts;
  }
  return { key, sha256, outcome: !written ? 'unchanged' : previous !== undefined ? 'replaced' : 'deployed', revision: state.revision, attempts };
}

/** Write `bundles/<sha256>.json` unless it exists; an existing one must hash to its name. */
async function uploadBundle(store: S3Store, name: string, sha256: string, key: string, bundle: Buffer): Promise<void> {
  const put = await store.put(name, bundle, { ifNoneMatch: '*' });
  if (put.status === 'ok') return;
  const got = await store.get(name, { maxBytes: DEPLOY_MAX_BYTES });
  if (got.status === 'ok' && sha256Hex(got.body) === sha256) return;
  if (got.status === 'missing') {
    // Deleted between the two requests (someone cleaning up): write it again.
    const again = await store.put(name, bundle, { ifNoneMatch: '*' });
    if (again.status === 'ok') return;
  }
  throw fezzError('FEZZ_ERR_FLEET_BUNDLE_INVALID', [sha256, key, `${store.where(name)} already exists with other bytes: delete that object, then deploy again`]);
}

/**
 * Take `<id>@<version>` out of the desired state (hosts following the store remove the
 * versions they installed from it). The bundle stays (bundles are never rewritten).
 * @returns false when the key was not in state.json.
 * @throws FezzError FEZZ_ERR_FLEET_CONTENDED, FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID.
 */
export async function removeFromFleet(store: S3Store, key: string, maxAttempts?: number): Promise<boolean> {
  const { written } = await updateState(store, (state) => {
    if (state.functions[key] === undefined) return null;
    const functions = { ...state.functions };
    delete functions[key];
    return { ...state, revision: state.revision + 1, functions };
  }, maxAttempts);
  return written;
}

/** What {@link collectGarbage} found and did. */
export interface GarbageResult {
  /** Bundles state.json names (kept). */
  referenced: number;
  /** Unreferenced bundles deleted (or, with dryRun, that would be), by name. */
  deleted: string[];
  /** Unreferenced bundles kept because they are younger than minAgeMs (a deploy may be about to name them). */
  young: number;
  /** Bytes of the deleted bundles. */
  bytes: number;
}

/**
 * Delete the bundles no version in state.json names any more (replaced or removed
 * versions), once they are older than `minAgeMs`: a deploy uploads its bundle before it
 * names it in state.json, so a young unreferenced bundle may be one about to be named. A
 * deploy that reuses an old bundle deleted meanwhile puts it back ({@link deployToFleet}).
 * Objects under `bundles/` that are not named like a bundle are left alone.
 * @throws FezzError FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID.
 */
export async function collectGarbage(store: S3Store, opts: { minAgeMs: number; dryRun?: boolean; now?: number }): Promise<GarbageResult> {
  const now = opts.now ?? Date.now();
  const listed = await store.list('bundles/');
  // Read after listing: a bundle named by a deploy that finished in between is kept.
  const { state } = await readState(store);
  const named = new Set(Object.values(state.functions).map((e) => bundleName(e.sha256)));
  const result: GarbageResult = { referenced: 0, deleted: [], young: 0, bytes: 0 };
  for (const o of listed) {
    if (!/^bundles\/[0-9a-f]{64}\.json$/.test(o.name)) continue;
    if (named.has(o.name)) { result.referenced++; continue; }
    if (o.lastModified === null || now - o.lastModified.getTime() < opts.minAgeMs) { result.young++; continue; }
    if (opts.dryRun !== true) await store.delete(o.name);
    result.deleted.push(o.name);
    result.bytes += o.size;
  }
  return result;
}
