/**
 * How tests start the `fezz` command as a child process: `process.execPath` followed by
 * {@link CLI}, then the command's own arguments (`spawn(process.execPath, [...CLI, 'serve', ...])`).
 *
 * When the build (`dist/`, which `npm test` makes first) is newer than every file under `src/`,
 * that is `dist/cli/bin.js`: the code users run, and a third of the start-up cost of the
 * sources through tsx (0.25 s of CPU against 0.7 s; the suite starts the CLI a few hundred
 * times). Otherwise, a single test file run while `src/` is being edited, it is the
 * TypeScript sources through tsx, so a test never runs stale code.
 * `FEZZ_TEST_CLI=src` or `=dist` forces one (`dist` fails when there is no build).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST_BIN = path.join(ROOT, 'dist', 'cli', 'bin.js');
const SRC_BIN = path.join(ROOT, 'src', 'cli', 'bin.ts');

/** Newest modification time (ms) of any file under `dir`. */
function newest(dir: string): number {
  let max = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    const t = entry.isDirectory() ? newest(p) : statSync(p).mtimeMs;
    if (t > max) max = t;
  }
  return max;
}

function fromDist(): boolean {
  const forced = process.env.FEZZ_TEST_CLI;
  if (forced === 'src') return false;
  if (forced === 'dist') {
    if (!existsSync(DIST_BIN)) throw new Error('FEZZ_TEST_CLI=dist: dist/ is missing (npm run build)');
    return true;
  }
  // tsc writes every output on each build, after reading every source: a source newer than
  // the build's bin.js changed after that build.
  return existsSync(DIST_BIN) && newest(path.join(ROOT, 'src')) <= statSync(DIST_BIN).mtimeMs;
}

/** True when {@link CLI} runs the build in `dist/`. */
export const CLI_FROM_DIST = fromDist();

/**
 * Node arguments that run the fezz CLI (before the command's own): `[dist/cli/bin.js]`, or
 * `['--import', <tsx>, src/cli/bin.ts]` (tsx named by URL, so any working directory works).
 */
export const CLI: readonly string[] = CLI_FROM_DIST ? [DIST_BIN] : ['--import', import.meta.resolve('tsx'), SRC_BIN];
