/**
 * One view of several host processes: what `/admin/functions`, `/admin/stats` and `fezz list`
 * show for a `--workers N` host. Every process loads the same functions directory, so each
 * version appears in each process; the merge sums counters and gauges, and takes the
 * highest p50/p99 of the processes (quantiles cannot be added; the highest is the honest
 * upper bound).
 */
import type { FunctionInfo } from '../host/host.js';
import type { LoadProblem } from '../registry/registry.js';
import type { LogLine } from '../observability/log-hub.js';

const SUMMED = ['instances', 'inflight', 'queued', 'coldStarts', 'evictions', 'crashes', 'timeouts', 'uncaughtErrors', 'requests', 'errors', 'clientAborts'] as const;

/** Merge the function lists of the processes by key (order: first seen). */
export function mergeFunctions(lists: readonly FunctionInfo[][]): FunctionInfo[] {
  const byKey = new Map<string, FunctionInfo>();
  for (const list of lists) {
    for (const f of list) {
      const had = byKey.get(f.key);
      if (had === undefined) {
        byKey.set(f.key, { ...f, routes: [...f.routes], stats: { ...f.stats } });
        continue;
      }
      const s = had.stats as unknown as Record<string, number | null | undefined>;
      const t = f.stats as unknown as Record<string, number | null | undefined>;
      for (const k of SUMMED) if (typeof t[k] === 'number') s[k] = (s[k] ?? 0) + t[k];
      for (const k of ['p50Ms', 'p99Ms'] as const) {
        const a = had.stats[k];
        const b = f.stats[k];
        had.stats[k] = a === null ? b : b === null ? a : Math.max(a, b);
      }
      had.stats.lastError ??= f.stats.lastError;
      had.latest ||= f.latest;
      // warm if any process has an instance; failed if none has and one failed; else cold.
      if (f.state === 'warm' || (f.state === 'failed' && had.state === 'cold')) had.state = f.state;
    }
  }
  return [...byKey.values()];
}

/** The problems of the processes, each once (they load the same directory). */
export function mergeProblems(lists: readonly (readonly LoadProblem[])[]): LoadProblem[] {
  const seen = new Set<string>();
  const out: LoadProblem[] = [];
  for (const list of lists) {
    for (const p of list) {
      const k = `${p.file}\0${p.message}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(p);
    }
  }
  return out;
}

/** The last `n` lines of several processes' logs, in time order. */
export function mergeLogs(lists: readonly LogLine[][], n: number): LogLine[] {
  const all = lists.flat().sort((a, b) => a.time - b.time);
  return n >= all.length ? all : all.slice(all.length - n);
}
