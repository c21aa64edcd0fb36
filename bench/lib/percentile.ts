/**
 * Latency samples for the in-process load generator: every response time, kept exactly in a
 * growable Float64Array and sorted once at the end. At 100k req/s for 10 s that is 8 MB, which
 * is cheaper and more precise than autocannon's own histogram (it stores whole milliseconds,
 * so a 0.4 ms p50 would read as 0).
 */
export class LatencySamples {
  #values = new Float64Array(1 << 16);
  #count = 0;

  /** Records one latency, in milliseconds. */
  add(ms: number): void {
    if (this.#count === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.#count++] = ms;
  }

  get count(): number {
    return this.#count;
  }

  /**
   * Nearest-rank percentiles (`p` in 0..100) of everything recorded, e.g. `percentiles([50, 99])`.
   * Returns NaN for each when nothing was recorded.
   */
  percentiles(ps: readonly number[]): number[] {
    const sorted = this.#values.subarray(0, this.#count).sort();
    return ps.map((p) => {
      if (sorted.length === 0) return Number.NaN;
      const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
      return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
    });
  }
}
