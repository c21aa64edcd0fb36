// The bench's ratio to the baseline (bench/lib/runner.ts): paired by round, median of rounds.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pairedRatio } from '../../bench/lib/runner.js';
import type { PairOutcome } from '../../bench/lib/types.js';

const ok = (round: number, rps: number): PairOutcome => ({
  kind: 'ok', round, peakRssMb: null, children: [],
  measurement: { rps, p50Ms: 1, p99Ms: 2, requests: rps, durationS: 1, non2xx: 0, errors: 0 },
});

describe('pairedRatio', () => {
  it('divides within each round, then takes the median over rounds', () => {
    // Round 1 ran on a slow machine for both: its ratio still counts like the others.
    const base = [ok(0, 40_000), ok(1, 20_000), ok(2, 36_000)];
    const mine = [ok(0, 36_000), ok(1, 19_000), ok(2, 18_000)];
    assert.equal(pairedRatio(mine, base), 0.9); // ratios 0.9, 0.95, 0.5
  });

  it('skips rounds where either side failed; the lower middle with an even count; null without a pair', () => {
    const base = [ok(0, 100), { kind: 'failed', round: 1, stage: 'load', reason: 'x' } as PairOutcome, ok(2, 100), ok(3, 100)];
    assert.equal(pairedRatio([ok(0, 80), ok(1, 500), ok(2, 60)], base), 0.6);
    assert.equal(pairedRatio([ok(1, 500)], base), null);
    assert.equal(pairedRatio([], base), null);
  });
});
