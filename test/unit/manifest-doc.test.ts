// docs/manifest.md and docs/manifest.schema.json are generated from the manifest schema
// (npm run gen:manifest-doc): they must be current, every field must say what it does, and
// README and docs must not point outside the repository.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { manifestJsonSchema, renderManifestDoc } from '../../src/manifest/manifest-doc.js';
import { manifestSchema } from '../../src/manifest/schema.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('the manifest reference', () => {
  it('docs/manifest.md and docs/manifest.schema.json are current (npm run gen:manifest-doc)', () => {
    assert.equal(readFileSync(path.join(ROOT, 'docs/manifest.md'), 'utf8'), renderManifestDoc());
    assert.equal(readFileSync(path.join(ROOT, 'docs/manifest.schema.json'), 'utf8'), JSON.stringify(manifestJsonSchema(), null, 2) + '\n');
  });

  it('every field of every table says what it does', () => {
    const rows = renderManifestDoc().split('\n').filter((l) => /^\| `[^`]+` \|/.test(l));
    assert.ok(rows.length >= 30, `found ${rows.length} field rows`);
    for (const row of rows) {
      const cells = row.split(/(?<!\\)\|/).map((c) => c.trim());
      assert.ok(cells[5] !== undefined && cells[5].length > 10, `no description: ${row}`);
    }
  });

  it('the JSON Schema accepts what the manifest schema accepts, and both refuse an unknown field', () => {
    const schema = manifestJsonSchema() as { required: string[]; additionalProperties: boolean; properties: Record<string, unknown> };
    assert.deepEqual(schema.required.sort(), ['entry', 'id', 'version']);
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(manifestSchema.shape).sort());
    assert.equal(manifestSchema.safeParse({ id: 'a', version: '1.0.0', entry: 'i.js', tirggers: {} }).success, false);
  });
});

describe('README and docs', () => {
  const files = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))];
  for (const file of files) {
    it(`${file} links only inside the repository, to files that exist`, () => {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        assert.ok(!/^[a-z]+:/i.test(target), `${file} links outside the repository: ${target}`);
        if (target.startsWith('#')) continue;
        const resolved = path.resolve(ROOT, path.dirname(file), target.split('#')[0]!);
        assert.ok(resolved.startsWith(ROOT + path.sep), `${file} points outside the repository: ${target}`);
        assert.ok(existsSync(resolved), `${file} links to a missing file: ${target}`);
      }
      assert.ok(!/\.\.\/shared\/(DESIGN|STYLE|LIBRARIES|seeds)/.test(text), `${file} points at the team's ../shared/ folder, which is not in the repository`);
    });
  }
});
