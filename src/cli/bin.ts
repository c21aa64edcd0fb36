/**
 * The `fezz` command line. Each command parses its flags and calls the library.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { serveCommand } from './commands/serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('fezz')
    .description('fezz: a fast, self-hosted function host')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)');
  program.addCommand(serveCommand());
  return program;
}

buildProgram().parseAsync(process.argv).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stderr.write(`fezz: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
