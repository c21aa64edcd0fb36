/**
 * ABI tokens: the bearer tokens plugins get as `FEZZ_TOKEN` instead of the admin token.
 * Each plugin runtime (one function version) is issued its own random token; the admin
 * listener maps a token to that function's key (`id@version`) and lets it reach only the
 * ABI endpoints, for request ids pending for that function (docs/abi.md "Tokens"). The
 * runtime revokes its token once its children are gone (a reload that retires the version,
 * a delete, host shutdown), so a token never outlives its processes.
 */
import { createHash, randomBytes } from 'node:crypto';

/** Random bytes per token (hex-encoded: 64 characters). */
const TOKEN_BYTES = 32;

/**
 * SHA-256 of an `Authorization` header value (`Bearer <token>`), 32 bytes. The admin
 * listener compares digests, never tokens: constant time, and no length leak.
 */
export function authDigest(header: string): Buffer {
  return createHash('sha256').update(header).digest();
}

/** The Map key of a digest: its 32 bytes as a one-byte string (the cheapest key to build). */
const keyOf = (digest: Buffer): string => digest.toString('latin1');

export class AbiTokens {
  /** Digest key of `Bearer <token>` -> the function key the token is scoped to. */
  readonly #scopes = new Map<string, string>();

  /** Tokens that work now. */
  get size(): number { return this.#scopes.size; }

  /** A new random token (64 hex characters) scoped to `fnKey` (`id@version`), valid until {@link revoke}. */
  issue(fnKey: string): string {
    const token = randomBytes(TOKEN_BYTES).toString('hex');
    this.#scopes.set(keyOf(authDigest(`Bearer ${token}`)), fnKey);
    return token;
  }

  /** Stop `token` working: the admin listener answers it 401 from now on. */
  revoke(token: string): void {
    this.#scopes.delete(keyOf(authDigest(`Bearer ${token}`)));
  }

  /**
   * The function key whose token has this header digest ({@link authDigest}), or undefined
   * for no live token. One Map lookup; the key is a digest of the caller's header, so its
   * timing tells nothing about any token.
   */
  scopeOf(digest: Buffer): string | undefined {
    return this.#scopes.get(keyOf(digest));
  }
}
