/**
 * `fezz build <dir>`: bundle a JS/TS function's entry with esbuild, as the host and
 * `fezz deploy` do, into `<dir>/.fezz/bundle.mjs` (or --out), and report size and time.
 * Process and native plugins have nothing to bundle.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { buildToFile, DEFAULT_BUNDLE_PATH, displayPath, isJsRuntime, readFunctionSource } from '../../build/deploy-bundle.js';
import { formatBytes, formatMs, exitQuietlyOnEpipe } from '../admin-client.js';

export function buildCommand(): Command {
  return new Command('build')
    .description('bundle a JS/TS function with esbuild (platform node, ESM, node20, dependencies inlined)')
    .argument('<dir>', 'the function directory (holds fezz.json)')
    .addOption(new Option('-o, --out <file>', `where to write the bundle (default: <dir>/${DEFAULT_BUNDLE_PATH.split(path.sep).join('/')})`))
    .showHelpAfterError('(run fezz build --help for usage)')
    .addHelpText('after', `
Example:
  $ fezz build functions/greet@1.0.0
  $ fezz build functions/greet@1.0.0 --out /tmp/greet.mjs && node -e "import('/tmp/greet.mjs')"`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (dir: string, opts: { out?: string }) => {
      const source = await readFunctionSource(dir);
      if (!isJsRuntime(source.manifest.runtime)) {
        process.stdout.write(`${source.key}: nothing to bundle (runtime "${source.manifest.runtime}" runs ${source.manifest.entry} as is)\n`);
        return;
      }
      const built = await buildToFile(source, opts.out);
      for (const w of built.warnings) process.stderr.write(`esbuild warning: ${w}\n`);
      const shown = displayPath(built.file);
      process.stdout.write(`built ${shown} (${formatBytes(built.code.byteLength)}, ${built.inputs} input file${built.inputs === 1 ? '' : 's'}) in ${formatMs(built.ms)}\n`);
    });
}
