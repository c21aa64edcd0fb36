/**
 * `s3://bucket/prefix` locations of a fleet's object store (docs/fleet.md): parsed and
 * checked once, so that every object name built from one stays under its prefix.
 */
import { fezzError } from '../errors.js';

/** A checked `s3://bucket/prefix`. */
export interface S3Location {
  /** The bucket name (S3 rules: 3-63 characters of `a-z 0-9 . -`). */
  readonly bucket: string;
  /** The key prefix without leading or trailing `/`, `''` for the bucket's root. */
  readonly prefix: string;
  /** The canonical form, `s3://bucket/prefix` (or `s3://bucket`), for messages. */
  readonly url: string;
}

/** Longest prefix taken, in bytes (S3 keys are at most 1024; the longest name under it is ~90). */
export const MAX_PREFIX_BYTES = 512;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;
/** Characters S3 calls safe in a key; anything else is refused rather than encoded. */
const PREFIX_SEGMENT = /^[A-Za-z0-9!_.*'()-]+$/;

/**
 * Parse `s3://bucket/prefix` (`s3://bucket`, `s3://bucket/` and `s3://bucket/a/b/` work too).
 * @throws FezzError FEZZ_ERR_FLEET_URL_INVALID (400) naming what is wrong: another scheme,
 *   a bad bucket name, credentials, a port, a query or fragment, an empty, `.` or `..`
 *   segment, a character outside `A-Z a-z 0-9 ! _ . * ' ( ) -`, a prefix over 512 bytes.
 */
export function parseS3Url(text: string): S3Location {
  const bad = (why: string): Error => fezzError('FEZZ_ERR_FLEET_URL_INVALID', [JSON.stringify(text), `${why} (expected s3://bucket/prefix)`]);
  if (typeof text !== 'string' || !text.startsWith('s3://')) throw bad('it must start with s3://');
  const rest = text.slice('s3://'.length);
  if (/[?#]/.test(rest)) throw bad('a query or fragment is not allowed');
  const slash = rest.indexOf('/');
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  if (bucket.includes('@')) throw bad('credentials do not belong in the URL (use the AWS environment or config)');
  if (bucket.includes(':')) throw bad('a port does not belong in the URL (set the endpoint with --s3-endpoint or AWS_ENDPOINT_URL)');
  if (!BUCKET.test(bucket) || bucket.includes('..') || IPV4.test(bucket)) {
    throw bad(`bucket ${JSON.stringify(bucket)} is not a valid bucket name (3 to 63 characters of a-z, 0-9, "." and "-", starting and ending with a letter or digit)`);
  }
  let prefix = slash === -1 ? '' : rest.slice(slash + 1);
  if (prefix.endsWith('/')) prefix = prefix.slice(0, -1);
  if (Buffer.byteLength(prefix) > MAX_PREFIX_BYTES) throw bad(`the prefix is over ${MAX_PREFIX_BYTES} bytes`);
  if (prefix !== '') {
    for (const seg of prefix.split('/')) {
      if (seg === '') throw bad('the prefix has an empty segment ("//")');
      if (seg === '.' || seg === '..') throw bad(`the prefix has a ${JSON.stringify(seg)} segment`);
      if (!PREFIX_SEGMENT.test(seg)) throw bad(`prefix segment ${JSON.stringify(seg)} has a character outside A-Z a-z 0-9 ! _ . * ' ( ) -`);
    }
  }
  return { bucket, prefix, url: prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${prefix}` };
}

/** The object key of `name` (e.g. `state.json`, `bundles/<sha256>.json`) under the location's prefix. */
export function objectKey(location: S3Location, name: string): string {
  return location.prefix === '' ? name : `${location.prefix}/${name}`;
}
