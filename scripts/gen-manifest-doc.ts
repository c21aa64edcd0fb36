// Writes docs/manifest.md and docs/manifest.schema.json from the manifest schema
// (src/manifest/schema.ts). A test checks both are current.
import { writeFileSync } from 'node:fs';
import { manifestJsonSchema, renderManifestDoc } from '../src/manifest/manifest-doc.js';

writeFileSync(new URL('../docs/manifest.md', import.meta.url), renderManifestDoc());
writeFileSync(new URL('../docs/manifest.schema.json', import.meta.url), JSON.stringify(manifestJsonSchema(), null, 2) + '\n');
