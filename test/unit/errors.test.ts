import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorSpecs, fezzError, FezzError } from '../../src/errors.js';
import { renderErrorsDoc } from '../../src/errors-doc.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error registry', () => {
  it('docs/errors.md lists exactly the registry (npm run gen:errors-doc)', () => {
    assert.equal(readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8'), renderErrorsDoc());
  });

  it('every FEZZ_ERR_ code used in src/ is in the registry, and every registry code is used', () => {
    const used = new Set<string>();
    for (const file of sources(path.join(ROOT, 'src'))) {
      if (file.endsWith(`${path.sep}errors.ts`)) continue;
      for (const m of readFileSync(file, 'utf8').matchAll(/FEZZ_ERR_[A-Z_]+/g)) used.add(m[0]);
    }
    const known = new Set(Object.keys(errorSpecs));
    assert.deepEqual([...used].filter((c) => !known.has(c)), [], 'codes used but not registered');
    assert.deepEqual([...known].filter((c) => !used.has(c)), [], 'registered codes never used');
  });

  it('fezzError fills the template and carries code, status and cause', () => {
    const cause = new Error('inner');
    const e = fezzError('FEZZ_ERR_BODY_TOO_LARGE', [1024], cause);
    assert.ok(e instanceof FezzError);
    assert.equal(e.message, 'Request body exceeds the limit of 1024 bytes');
    assert.equal(e.statusCode, 413);
    assert.equal(e.cause, cause);
  });
});
