/**
 * `fezz new <name>`: scaffold `<dir>/<name>@<version>/` — fezz.json, a TypeScript fetch
 * handler, a node:test unit test, the contract's types and a tsconfig — and print what to
 * run next.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { ID_PATTERN, VERSION_PATTERN } from '../../manifest/schema.js';
import { displayPath } from '../../build/deploy-bundle.js';
import { CliError, exitQuietlyOnEpipe } from '../admin-client.js';
import { functionTemplate } from '../templates/function.js';

export interface NewOptions {
  dir: string;
  version: string;
}

/**
 * Write the scaffold; returns the new directory and the files written (relative to it).
 * @throws CliError for a bad name or version, or when the directory exists.
 */
export async function scaffoldFunction(name: string, options: NewOptions): Promise<{ dir: string; files: string[] }> {
  if (!ID_PATTERN.test(name)) {
    throw new CliError(`invalid function name ${JSON.stringify(name)}: must match [a-z0-9][a-z0-9-]* (lower-case letters, digits and dashes)`);
  }
  if (!VERSION_PATTERN.test(options.version) || options.version === 'latest') {
    throw new CliError(`invalid version ${JSON.stringify(options.version)}: must be semver, e.g. 0.1.0`);
  }
  const dir = path.join(options.dir, `${name}@${options.version}`);
  const exists = await stat(dir).then(() => true, () => false);
  if (exists) throw new CliError(`${dir} already exists; not overwriting it (pick another name or --version)`);
  await mkdir(dir, { recursive: true });
  const files = functionTemplate({ name, version: options.version });
  for (const [file, text] of Object.entries(files)) {
    await writeFile(path.join(dir, file), text, { flag: 'wx' });
  }
  return { dir, files: Object.keys(files) };
}

export function newCommand(): Command {
  return new Command('new')
    .description('create a new TypeScript function: <dir>/<name>@<version>/ with fezz.json, index.ts and a unit test')
    .argument('<name>', 'function id: lower-case letters, digits and dashes ([a-z0-9][a-z0-9-]*); <name>@<version> sets the version too')
    .addOption(new Option('-d, --dir <path>', 'functions directory to create it in').env('FEZZ_DIR').default('./functions'))
    .addOption(new Option('--version <semver>', 'version of the new function (or write <name>@<version>)').default('0.1.0'))
    .showHelpAfterError('(run fezz new --help for usage)')
    .addHelpText('after', `
Example:
  $ fezz new greet
  $ fezz new greet@1.0.0 --dir ./functions`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (nameArg: string, opts: NewOptions, cmd: Command) => {
      let name = nameArg;
      const at = nameArg.indexOf('@');
      if (at >= 0) {
        name = nameArg.slice(0, at);
        const version = nameArg.slice(at + 1);
        if (cmd.getOptionValueSource('version') === 'cli' && opts.version !== version) {
          throw new CliError(`two versions given: ${JSON.stringify(nameArg)} and --version ${opts.version}`);
        }
        opts = { ...opts, version };
      }
      const { dir, files } = await scaffoldFunction(name, opts);
      const shownDir = displayPath(dir);
      const functionsDir = displayPath(opts.dir) || '.';
      const out = process.stdout;
      out.write(`created ${shownDir}/\n`);
      for (const f of files) out.write(`  ${f}\n`);
      const next: Array<[string, string]> = [
        [`node --import tsx --test ${shownDir}/index.test.ts`, 'unit test, no host needed'],
        [`fezz serve --dir ${functionsDir} --dev`, 'serve it on http://127.0.0.1:3000'],
        [`curl localhost:3000/${name}/you`, '-> {"message":"Hello, you!",...}'],
        [`fezz deploy ${shownDir} --host-url <admin URL>`, 'or upload it to another running host (needs FEZZ_TOKEN)'],
      ];
      const width = Math.max(...next.map(([c]) => c.length));
      out.write(`\nnext:\n${next.map(([c, why]) => `  ${c.padEnd(width)}   # ${why}\n`).join('')}`);
    });
}
