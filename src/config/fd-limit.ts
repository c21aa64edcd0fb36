/**
 * The process's file-descriptor limit and the connection cap sized from it. Every public
 * connection costs a descriptor; so do admin connections, worker threads (their event loops),
 * plugin processes (their pipes), bundling and file reads. A flood of connections must leave
 * enough for those, or the admin API, a plugin start and the host itself fail with EMFILE.
 */
import { readFileSync } from 'node:fs';

/** The soft `RLIMIT_NOFILE` (Linux `/proc/self/limits`), or null where it cannot be read. */
export function openFilesLimit(): number | null {
  try {
    const text = readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
    if (m === null) return null;
    return m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** Descriptors kept out of the public listener's reach: a quarter of the limit, 64 to 4096. */
export function descriptorReserve(limit: number): number {
  return Math.max(64, Math.min(4096, Math.floor(limit / 4)));
}

/**
 * Default caps, from the fd limit (`ulimit -n`): public connections get the limit minus the
 * reserve; the admin listener gets half the reserve. Without a readable limit: 10000 and 256.
 */
export function defaultConnectionCaps(limit = openFilesLimit()): { publicMax: number; adminMax: number } {
  if (limit === null) return { publicMax: 10_000, adminMax: 256 };
  const reserve = descriptorReserve(limit);
  return { publicMax: Math.max(16, limit - reserve), adminMax: Math.max(8, Math.floor(reserve / 2)) };
}
