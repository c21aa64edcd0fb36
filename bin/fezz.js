#!/usr/bin/env node
// The `fezz` command: runs the compiled CLI (npm run build writes dist/).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/bin.js', import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write('fezz: dist/ is missing; run `npm run build` first (npm ci runs it for you).\n');
  process.exit(1);
}
await import(compiled.href);
