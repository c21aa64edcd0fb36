/**
 * `fezz new <name> [--template plain|hono|itty|scheduled|websocket]`: scaffold
 * `<dir>/<name>@<version>/` from a template (templates/index.ts) — by default (`plain`)
 * fezz.json, a TypeScript fetch handler, a node:test unit test, the contract's types and a
 * tsconfig — and print what to run next. No template needs the network: those with an npm
 * framework write a package.json for `npm install` to fetch it.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { ID_PATTERN, VERSION_PATTERN } from '../../manifest/schema.js';
import { displayPath } from '../../build/deploy-bundle.js';
import { CliError, exitQuietlyOnEpipe } from '../admin-client.js';
import { TEMPLATE_NAMES, TEMPLATES, templateFiles, type TemplateName } from '../templates/index.js';

export interface NewOptions {
  dir: string;
  version: string;
  /** @default 'plain' */
  template?: TemplateName;
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
  const template = options.template ?? 'plain';
  if (!TEMPLATE_NAMES.includes(template)) throw new CliError(`unknown template ${JSON.stringify(template)}: expected one of ${TEMPLATE_NAMES.join(', ')}`);
  const files = templateFiles(template, { name, version: options.version });
  for (const [file, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text, { flag: 'wx' });
  }
  return { dir, files: Object.keys(files) };
}

export function newCommand(): Command {
  return new Command('new')
    .description('create a new TypeScript function: <dir>/<name>@<version>/ with fezz.json, index.ts and more, from a template')
    .argument('<name>', 'function id: lower-case letters, digits and dashes ([a-z0-9][a-z0-9-]*); <name>@<version> sets the version too')
    .addOption(new Option('-d, --dir <path>', 'functions directory to create it in').env('FEZZ_DIR').default('./functions'))
    .addOption(new Option('--version <semver>', 'version of the new function (or write <name>@<version>)').default('0.1.0'))
    .addOption(new Option('-t, --template <name>', 'what to start from: plain (a fetch handler with a unit test), hono or itty (a Workers-style app; npm install fetches the framework), scheduled (a cron trigger), websocket (a WebSocketPair echo server)').choices([...TEMPLATE_NAMES]).default('plain'))
    .showHelpAfterError('(run fezz new --help for usage)')
    .addHelpText('after', `
Example:
  $ fezz new greet
  $ fezz new greet@1.0.0 --dir ./functions
  $ fezz new api --template hono && (cd functions/api@0.1.0 && npm install)`)
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
      const next = TEMPLATES[opts.template ?? 'plain'].next({ name, version: opts.version, shownDir, functionsDir });
      const width = Math.max(...next.map(([c]) => c.length));
      out.write(`\nnext:\n${next.map(([c, why]) => `  ${c.padEnd(width)}   # ${why}\n`).join('')}`);
    });
}
