// docs/compatibility.md is what the compatibility probe reports (issue 14): the probe function
// (test/fixtures/compat-probe) runs in a real host on this Node; the doc's column for this Node
// must be exactly its findings (npm run gen:compat-doc regenerates it). The probe also keeps the
// platform details of issue 14 honest: each of them must be there on every Node.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { columnsOf, committedDoc, INLINE_DIFFERS, probeReport, renderCompatDoc, type ProbeReport } from '../../scripts/gen-compat-doc.js';

/** What issue 14 asked for: every one must be "yes" on every Node fezz runs on. */
const REQUIRED = [
  'urlpattern', 'navigator', 'module-text', 'module-data', 'module-wasm', 'wait-until', 'env', 'process-env',
  'http-url', 'http-client-ip', 'http-status-text', 'http-response-error', 'http-gzip', 'http-stream',
  'http-request-stream', 'http-wildcard-base', 'http-options', 'http-head',
];

describe('docs/compatibility.md', () => {
  let report: ProbeReport;
  before(async () => { report = await probeReport(); });

  it('lists exactly what the probe reports on this Node (npm run gen:compat-doc)', () => {
    const committed = committedDoc();
    const columns = columnsOf(committed);
    assert.ok(String(report.node) in columns, `docs/compatibility.md has no column for Node ${report.node}: run npm run gen:compat-doc on it`);
    assert.equal(committed, renderCompatDoc(report, columns), 'docs/compatibility.md is stale: run npm run gen:compat-doc (and -- --node <path> for the other Node)');
  });

  it('has every platform detail of issue 14, gzip passthrough included', () => {
    const missing = REQUIRED.filter((id) => report.rows.find((r) => r.id === id)?.ok !== true);
    assert.deepEqual(missing, []);
  });

  it('gives the same answers in the inline runtime and the sandbox tier as in the thread tier', () => {
    assert.deepEqual(report.tierMismatches.inline.filter((id) => !INLINE_DIFFERS.includes(id)), []);
    assert.deepEqual(report.tierMismatches.inline.filter((id) => INLINE_DIFFERS.includes(id)), [...INLINE_DIFFERS], 'inline shares the host\'s process.env: the probe must see that');
    assert.deepEqual(report.tierMismatches.sandbox, []);
  });
});
