/**
 * Per-function request statistics, kept as plain numbers on the request path (a few
 * increments per request) and read by the admin API (`p50Ms`, `p99Ms`) and `/metrics`.
 * Keyed by `id@version` for the life of the host, so counts survive a reload.
 */

/** Histogram bucket upper bounds, in seconds (Prometheus `le`). */
export const DURATION_BUCKETS_S = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;

export class FunctionStats {
  requests = 0;
  /** Responses with status >= 500. */
  errors = 0;
  /** Count per HTTP status. */
  readonly byStatus = new Map<number, number>();
  /** Count per bucket of DURATION_BUCKETS_S, plus one for +Inf. */
  readonly buckets = new Float64Array(DURATION_BUCKETS_S.length + 1);
  /** Sum of durations, in seconds. */
  sumSeconds = 0;
  /** Requests whose client went away before the response (not counted in `requests`). */
  clientAborts = 0;

  // hot path -- change with care
  /** Record one response: `status` and its duration in ms (arrival to response ready). */
  record(status: number, ms: number): void {
    this.requests++;
    if (status >= 500) this.errors++;
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
    const s = ms / 1000;
    this.sumSeconds += s;
    let i = 0;
    while (i < DURATION_BUCKETS_S.length && s > DURATION_BUCKETS_S[i]!) i++;
    this.buckets[i]!++;
  }

  /**
   * The `q` quantile (0..1) in ms, interpolated linearly inside its bucket; `null` before
   * the first request. Precision is that of the buckets.
   */
  quantileMs(q: number): number | null {
    if (this.requests === 0) return null;
    const rank = q * this.requests;
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      const n = this.buckets[i]!;
      if (n > 0 && seen + n >= rank) {
        const lo = i === 0 ? 0 : DURATION_BUCKETS_S[i - 1]!;
        const hi = i < DURATION_BUCKETS_S.length ? DURATION_BUCKETS_S[i]! : lo * 2;
        const within = (rank - seen) / n;
        return Math.round((lo + (hi - lo) * within) * 1000 * 100) / 100;
      }
      seen += n;
    }
    return null;
  }
}

/** All functions' stats by `id@version`. */
export class StatsBook {
  readonly #byKey = new Map<string, FunctionStats>();
  for(key: string): FunctionStats {
    let s = this.#byKey.get(key);
    if (s === undefined) { s = new FunctionStats(); this.#byKey.set(key, s); }
    return s;
  }
  entries(): IterableIterator<[string, FunctionStats]> { return this.#byKey.entries(); }
}
