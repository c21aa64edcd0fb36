import { randomFillSync } from 'node:crypto';

/**
 * Request ids: random 63-bit integers as decimal strings (DESIGN.md "The request-id ABI":
 * not guessable, not sequential, beyond 2^53 so always a string in JSON). Random bytes are
 * drawn 4 KiB at a time to keep the per-request cost to a BigInt format.
 */
const POOL = Buffer.allocUnsafe(4096);
let offset = POOL.length;

export function newRequestId(): string {
  if (offset === POOL.length) { randomFillSync(POOL); offset = 0; }
  const v = POOL.readBigUInt64LE(offset) & 0x7fffffffffffffffn;
  offset += 8;
  return v === 0n ? '1' : v.toString();
}
