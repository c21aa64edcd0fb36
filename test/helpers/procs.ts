/**
 * Processes as /proc shows them, for tests that check who started what (the sandbox spawner,
 * plugin sandboxes).
 */
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Direct children of `pid` that are still running, with their command lines (from /proc).
 * An exited child its parent has not reaped yet (state Z or X, empty command line) is left out.
 */
export function childrenOf(pid: number): Array<{ pid: number; cmd: string[] }> {
  const out: Array<{ pid: number; cmd: string[] }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) !== pid || state === 'Z' || state === 'X') continue;
      out.push({ pid: Number(name), cmd: readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter((a) => a !== '') });
    } catch { /* gone meanwhile */ }
  }
  return out;
}
