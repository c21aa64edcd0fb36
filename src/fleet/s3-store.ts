/**
 * The fleet's object store client (docs/fleet.md): reads and writes the named objects under
 * one `s3://bucket/prefix`, with the ETag conditions the fleet relies on — a conditional GET
 * (`If-None-Match: <etag>` -> not modified) and conditional PUTs (`If-None-Match: *` to
 * create, `If-Match: <etag>` to compare-and-swap). Works with AWS S3 and any S3-compatible
 * store that implements those conditions; with a custom endpoint it uses path-style
 * addressing and sends checksums only when an operation requires them.
 *
 * Credentials come from the AWS SDK's usual chain (environment, shared config files, SSO,
 * instance/container roles) unless given. They are never logged or put in a message.
 */
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { fezzError } from '../errors.js';
import { objectKey, type S3Location } from './s3-url.js';

/** Static credentials (e.g. from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** How to reach the store. Everything has a default from the AWS environment. */
export interface S3StoreOptions {
  /**
   * Endpoint URL of an S3-compatible store (MinIO, Ceph, R2, a local test server), e.g.
   * `http://127.0.0.1:9000`. @default AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS S3.
   */
  endpoint?: string;
  /** @default AWS_REGION, else AWS_DEFAULT_REGION, else `us-east-1` */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`). @default true with a custom endpoint (FEZZ_S3_PATH_STYLE=0|1 overrides) */
  forcePathStyle?: boolean;
  /** @default the SDK's credential chain */
  credentials?: S3Credentials;
  /** Deadline of one request, body included, in ms. @default 30000 */
  requestTimeoutMs?: number;
}

/** A read: the bytes and their ETag, or that the object is missing or unchanged. */
export type GetResult =
  | { status: 'ok'; body: Buffer; etag: string }
  | { status: 'not-modified' }
  | { status: 'missing' };

/** One object of a listing: its name (relative to the prefix), size in bytes and last change. */
export interface ListedObject { name: string; size: number; lastModified: Date | null }

/** A conditional write: its new ETag, or that the condition did not hold (someone else wrote first). */
export type PutResult = { status: 'ok'; etag: string } | { status: 'precondition-failed' };

/** The condition of a PUT: create only (`If-None-Match: *`), or replace exactly this ETag (`If-Match`). */
export type PutCondition = { ifNoneMatch: '*' } | { ifMatch: string };

/** The AWS_* variables taken out of the environment by {@link takeS3Credentials}. */
const SECRET_ENV = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN'] as const;
let taken: { credentials: S3Credentials | undefined } | null = null;

/**
 * Take static AWS credentials out of `env` (default `process.env`): returns
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN when both keys are set, and
 * deletes those variables from `env`, so that nothing running in the process later
 * (an `inline` function shares it) finds them. Call it before the host loads functions.
 * Later calls return what the first one took. Undefined when no static keys were set: the
 * SDK's chain (shared config files, instance or container roles) is used then.
 */
export function takeS3Credentials(env: NodeJS.ProcessEnv = process.env): S3Credentials | undefined {
  if (taken !== null) return taken.credentials;
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const sessionToken = env.AWS_SESSION_TOKEN ?? env.AWS_SECURITY_TOKEN;
  const credentials = accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } : undefined;
  for (const k of SECRET_ENV) delete env[k];
  taken = { credentials };
  return credentials;
}

/**
 * The SDK client configuration for `options`, defaults from `env`.
 * @throws FezzError FEZZ_ERR_FLEET_URL_INVALID for an endpoint that is not an http(s) URL.
 */
export function s3ClientConfig(options: S3StoreOptions = {}, env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  const endpoint = options.endpoint ?? (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
  if (endpoint !== undefined) {
    let url: URL | null = null;
    try { url = new URL(endpoint); } catch { /* below */ }
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '') {
      throw fezzError('FEZZ_ERR_FLEET_URL_INVALID', [JSON.stringify(redactUrl(endpoint)), 'the endpoint must be an http:// or https:// URL without credentials']);
    }
  }
  const pathStyleEnv = env.FEZZ_S3_PATH_STYLE;
  const forcePathStyle = options.forcePathStyle ?? (pathStyleEnv === '1' ? true : pathStyleEnv === '0' ? false : endpoint !== undefined);
  const timeout = options.requestTimeoutMs ?? 30_000;
  return {
    region: options.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1'),
    ...(endpoint !== undefined ? { endpoint } : {}),
    forcePathStyle,
    ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
    // S3-compatible stores often lack the newer flexible checksums; bundles carry their own
    // sha256 (checked by the reader), and state.json is validated, so this loses nothing.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    followRegionRedirects: true,
    maxAttempts: 3,
    requestHandler: { connectionTimeout: Math.min(timeout, 5000), requestTimeout: timeout },
  };
}

/** Largest object this client reads unless told otherwise, in bytes. */
const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** Named objects under one `s3://bucket/prefix`. */
export class S3Store {
  readonly location: S3Location;
  readonly #client: S3Client;
  readonly #timeoutMs: number;

  /** @throws FezzError FEZZ_ERR_FLEET_URL_INVALID for a bad endpoint */
  constructor(location: S3Location, options: S3StoreOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.location = location;
    this.#client = new S3Client(s3ClientConfig(options, env));
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
  }

  /** `s3://bucket/prefix/<name>`, for messages. */
  where(name: string): string {
    return `${this.location.url}/${name}`;
  }

  /**
   * Read object `name` (relative to the prefix).
   * @param opts.ifNoneMatch an ETag: answers `not-modified` while the object still has it.
   * @param opts.maxBytes refuse a larger object (default 64 MiB).
   * @throws FezzError FEZZ_ERR_FLEET_STORE (the store failed or refused: unreachable, access
   *   denied, no such bucket, timeout, an object over `maxBytes`).
   */
  async get(name: string, opts: { ifNoneMatch?: string; maxBytes?: number } = {}): Promise<GetResult> {
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let res;
    try {
      res = await this.#client.send(new GetObjectCommand({
        Bucket: this.location.bucket, Key: objectKey(this.location, name),
        ...(opts.ifNoneMatch !== undefined ? { IfNoneMatch: opts.ifNoneMatch } : {}),
      }), { abortSignal: signal });
    } catch (err) {
      const status = httpStatus(err);
      if (status === 304) return { status: 'not-modified' };
      if (status === 404 && errorName(err) !== 'NoSuchBucket') return { status: 'missing' };
      throw this.#failed(name, 'GET', err);
    }
    const body = res.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    if (res.ContentLength !== undefined && res.ContentLength > maxBytes) {
      body?.destroy?.();
      throw fezzError('FEZZ_ERR_FLEET_STORE', [this.where(name), `the object is ${res.ContentLength} bytes, over the ${maxBytes}-byte limit`]);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      if (body !== undefined) {
        for await (const chunk of body) {
          size += chunk.byteLength;
          if (size > maxBytes) {
            body.destroy?.();
            throw fezzError('FEZZ_ERR_FLEET_STORE', [this.where(name), `the object is over the ${maxBytes}-byte limit`]);
          }
          chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        }
      }
    } catch (err) {
      if ((err as { code?: unknown }).code === 'FEZZ_ERR_FLEET_STORE') throw err;
      throw this.#failed(name, 'GET', err);
    }
    if (res.ETag === undefined) throw fezzError('FEZZ_ERR_FLEET_STORE', [this.where(name), 'the store sent no ETag']);
    return { status: 'ok', body: Buffer.concat(chunks, size), etag: res.ETag };
  }

  /**
   * Write object `name` if `condition` holds: `{ ifNoneMatch: '*' }` creates it only if it
   * does not exist, `{ ifMatch: etag }` replaces it only if it still has that ETag.
   * @returns `precondition-failed` when the condition did not hold (HTTP 412, or S3's 409
   *   ConditionalRequestConflict for a concurrent conditional write): re-read and decide again.
   * @throws FezzError FEZZ_ERR_FLEET_STORE for any other failure.
   */
  async put(name: string, body: Buffer, condition: PutCondition, contentType = 'application/json'): Promise<PutResult> {
    try {
      const res = await this.#client.send(new PutObjectCommand({
        Bucket: this.location.bucket, Key: objectKey(this.location, name), Body: body, ContentType: contentType,
        ContentLength: body.byteLength,
        ...('ifMatch' in condition ? { IfMatch: condition.ifMatch } : { IfNoneMatch: condition.ifNoneMatch }),
      }), { abortSignal: AbortSignal.timeout(this.#timeoutMs) });
      if (res.ETag === undefined) throw fezzError('FEZZ_ERR_FLEET_STORE', [this.where(name), 'the store sent no ETag']);
      return { status: 'ok', etag: res.ETag };
    } catch (err) {
      if ((err as { code?: unknown }).code === 'FEZZ_ERR_FLEET_STORE') throw err;
      const status = httpStatus(err);
      // 404 to If-Match: the object was deleted since it was read.
      if (status === 412 || (status === 409 && errorName(err) === 'ConditionalRequestConflict') || (status === 404 && 'ifMatch' in condition && errorName(err) !== 'NoSuchBucket')) {
        return { status: 'precondition-failed' };
      }
      throw this.#failed(name, 'PUT', err);
    }
  }

  /**
   * Every object whose name (relative to the prefix) starts with `under`, page by page
   * (ListObjectsV2), at most `max` of them.
   * @throws FezzError FEZZ_ERR_FLEET_STORE (the store failed, or more than `max` objects).
   */
  async list(under: string, max = 100_000): Promise<ListedObject[]> {
    const out: ListedObject[] = [];
    const keyPrefix = objectKey(this.location, under);
    const strip = keyPrefix.length - under.length;
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.#client.send(new ListObjectsV2Command({
          Bucket: this.location.bucket, Prefix: keyPrefix, ...(token !== undefined ? { ContinuationToken: token } : {}),
        }), { abortSignal: AbortSignal.timeout(this.#timeoutMs) });
      } catch (err) {
        throw this.#failed(under, 'LIST', err);
      }
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({ name: o.Key.slice(strip), size: o.Size ?? 0, lastModified: o.LastModified ?? null });
      }
      if (out.length > max) throw fezzError('FEZZ_ERR_FLEET_STORE', [this.where(under), `more than ${max} objects`]);
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out;
  }

  /**
   * Whether object `name` exists (HeadObject).
   * @throws FezzError FEZZ_ERR_FLEET_STORE.
   */
  async exists(name: string): Promise<boolean> {
    try {
      await this.#client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: objectKey(this.location, name) }), { abortSignal: AbortSignal.timeout(this.#timeoutMs) });
      return true;
    } catch (err) {
      if (httpStatus(err) === 404 && errorName(err) !== 'NoSuchBucket') return false;
      throw this.#failed(name, 'HEAD', err);
    }
  }

  /**
   * Delete object `name` (relative to the prefix); deleting a missing object is not an error.
   * @throws FezzError FEZZ_ERR_FLEET_STORE.
   */
  async delete(name: string): Promise<void> {
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: objectKey(this.location, name) }), { abortSignal: AbortSignal.timeout(this.#timeoutMs) });
    } catch (err) {
      if (httpStatus(err) === 404 && errorName(err) !== 'NoSuchBucket') return;
      throw this.#failed(name, 'DELETE', err);
    }
  }

  /** Close the client's connections. */
  close(): void {
    this.#client.destroy();
  }

  #failed(name: string, op: string, err: unknown): Error {
    const status = httpStatus(err);
    const what = errorName(err);
    const msg = err instanceof Error ? err.message : String(err);
    const why = `${op} failed${status !== undefined ? ` (HTTP ${status}${what ? ` ${what}` : ''})` : what ? ` (${what})` : ''}: ${msg || 'no message'}`;
    return fezzError('FEZZ_ERR_FLEET_STORE', [this.where(name), why], err);
  }
}

function httpStatus(err: unknown): number | undefined {
  const s = (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
  return typeof s === 'number' ? s : undefined;
}

function errorName(err: unknown): string | undefined {
  const n = (err as { name?: unknown; Code?: unknown } | null)?.name;
  return typeof n === 'string' && n !== 'Error' ? n : undefined;
}

/** `url` with any user:password removed, for messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}
