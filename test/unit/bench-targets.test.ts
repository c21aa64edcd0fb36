// The bench's issue-11 thread-tier target (bench/lib/targets.ts): "no regression" is the thread
// tier's hello against the build before issue 11 (`fezz-isolate@base`), paired per round; and
// the --base-ref flag that builds that baseline (bench/lib/base-build.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuickArgs } from '../../bench/lib/args.js';
import { baseBuild } from '../../bench/lib/base-build.js';
import { BEFORE_ISSUE_11, evaluateTargets } from '../../bench/lib/targets.js';
import type { PairOutcome, Row } from '../../bench/lib/types.js';

const ok = (round: number, rps: number): PairOutcome => ({
  kind: 'ok', round, peakRssMb: 50, children: [],
  measurement: { rps, p50Ms: 1, p99Ms: 2, requests: rps, durationS: 1, non2xx: 0, errors: 0 },
});

function row(server: string, rounds: PairOutcome[], ratio: number | null = null): Row {
  const best = rounds.filter((o): o is Extract<PairOutcome, { kind: 'ok' }> => o.kind === 'ok').sort((a, b) => a.measurement.rps - b.measurement.rps).at(-1) ?? null;
  return { server, workload: 'hello', rounds, picked: best, ratio };
}

const noRegression = (throughput: Row[]) =>
  evaluateTargets({ baseline: 'node-http', throughput, coldstart: null, density: null, soak: null }).find((t) => t.target.includes('no regression'))!;

describe('bench target: thread tier no regression (issue 11)', () => {
  it('is the median over rounds of fezz-isolate / fezz-isolate@base in the same round', () => {
    const t = noRegression([
      row('node-http', [ok(0, 50_000), ok(1, 40_000), ok(2, 45_000)]),
      row('fezz-isolate', [ok(0, 30_000), ok(1, 36_000), ok(2, 27_000)], 0.72),
      // per round: 30/40 = 0.75, 36/30 = 1.2, 27/30 = 0.9 -> median 0.9
      row('fezz-isolate@base', [ok(0, 40_000), ok(1, 30_000), ok(2, 30_000)], 0.75),
    ]);
    assert.equal(t.measured, '0.90x');
    assert.equal(t.met, true);
    assert.match(t.goal, new RegExp(`fezz-isolate@base .*--base-ref ${BEFORE_ISSUE_11}`));
  });

  it('fails below 0.90x, and pairs only rounds where both builds succeeded', () => {
    const t = noRegression([
      row('fezz-isolate', [ok(0, 20_000), ok(1, 26_000), { kind: 'failed', round: 2, stage: 'load', reason: 'x' }]),
      row('fezz-isolate@base', [ok(0, 30_000), ok(1, 30_000), ok(2, 30_000)]),
    ]);
    assert.equal(t.measured, '0.67x'); // rounds 0 and 1: 0.67, 0.87 -> lower middle
    assert.equal(t.met, false);
  });

  it('has no verdict without the base build, and says how to get one', () => {
    const t = noRegression([row('node-http', [ok(0, 50_000)]), row('fezz-isolate', [ok(0, 40_000)], 0.8)]);
    assert.equal(t.met, null);
    assert.equal(t.measured, `- (run with --base-ref ${BEFORE_ISSUE_11})`);
  });
});

describe('bench --base-ref', () => {
  it('is parsed', () => {
    assert.equal(parseQuickArgs(['--base-ref', BEFORE_ISSUE_11]).baseRef, BEFORE_ISSUE_11);
    assert.equal(parseQuickArgs([]).baseRef, undefined);
  });

  it('refuses a ref that is not a commit of this repository, with the fix', () => {
    assert.throws(() => baseBuild('no-such-ref-0000', () => {}), /--base-ref: no-such-ref-0000 is not a commit of this repository/);
  });
});
