/**
 * The fleet's layout under `s3://bucket/prefix/` (docs/fleet.md):
 * - `bundles/<sha256>.json`: the exact body of a `POST /admin/deploy`, named by the sha256
 *   of its bytes; written once (`If-None-Match: *`), never changed.
 * - `state.json`: the desired state, `{ revision, functions: { "<id>@<version>": { sha256,
 *   deployedAt } } }`, changed only by compare-and-swap on its ETag.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { fezzError } from '../errors.js';
import { ID_PATTERN, VERSION_PATTERN } from '../manifest/schema.js';

/** The desired-state document's name under the prefix. */
export const STATE_NAME = 'state.json';
/** Largest state.json read or written, in bytes (about 20,000 functions). */
export const STATE_MAX_BYTES = 4 * 1024 * 1024;
const SHA256 = /^[0-9a-f]{64}$/;

/** The name of the bundle whose bytes hash to `sha256` (lowercase hex). */
export function bundleName(sha256: string): string {
  if (!SHA256.test(sha256)) throw new TypeError(`not a sha256: ${JSON.stringify(sha256)}`);
  return `bundles/${sha256}.json`;
}

/** Lowercase hex sha256 of `bytes`. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Whether `key` is a valid `<id>@<version>`. */
export function isFunctionKey(key: string): boolean {
  const at = key.indexOf('@');
  return at > 0 && ID_PATTERN.test(key.slice(0, at)) && VERSION_PATTERN.test(key.slice(at + 1));
}

const entrySchema = z.looseObject({
  sha256: z.string().regex(SHA256, 'a lowercase hex sha256'),
  /** ISO 8601 time of the deploy that wrote this entry. */
  deployedAt: z.string().max(64),
});
/** Unknown fields are kept (a newer writer's additions survive an older one's update). */
const stateSchema = z.looseObject({
  revision: z.number().int().min(0),
  functions: z.record(z.string().max(300).refine(isFunctionKey, 'a key <id>@<version>'), entrySchema),
});

/** The desired state: which bundle each `<id>@<version>` runs. */
export type DesiredState = z.output<typeof stateSchema>;
export type DesiredEntry = z.output<typeof entrySchema>;

/** The state before the first deploy. */
export function emptyState(): DesiredState {
  return { revision: 0, functions: {} };
}

/**
 * Parse state.json's bytes.
 * @param where the object's location, for messages.
 * @throws FezzError FEZZ_ERR_FLEET_STATE_INVALID: not JSON, or not the shape above (the
 *   message names the field).
 */
export function parseState(bytes: Buffer, where: string): DesiredState {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw fezzError('FEZZ_ERR_FLEET_STATE_INVALID', [where, `not valid JSON (${(err as Error).message})`], err);
  }
  const parsed = stateSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw fezzError('FEZZ_ERR_FLEET_STATE_INVALID', [where, `field "${issue.path.join('.') || '(root)'}": ${issue.message}`], parsed.error);
  }
  return parsed.data;
}

/** state.json's bytes for `state`. @throws FezzError FEZZ_ERR_FLEET_STATE_INVALID when over STATE_MAX_BYTES */
export function serializeState(state: DesiredState, where: string): Buffer {
  const bytes = Buffer.from(JSON.stringify(state, null, 1) + '\n');
  if (bytes.byteLength > STATE_MAX_BYTES) {
    throw fezzError('FEZZ_ERR_FLEET_STATE_INVALID', [where, `it would be ${bytes.byteLength} bytes, over the ${STATE_MAX_BYTES}-byte limit: remove versions no longer served`]);
  }
  return bytes;
}
