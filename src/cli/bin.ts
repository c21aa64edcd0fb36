/**
 * The `fezz` command line. Each command parses its flags and calls the library.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { serveCommand } from './commands/serve.js';
import { newCommand } from './commands/new.js';
import { buildCommand } from './commands/build.js';
import { deployCommand } from './commands/deploy.js';
import { listCommand } from './commands/list.js';
import { logsCommand } from './commands/logs.js';
import { devCommand } from './commands/dev.js';
import { deleteCommand } from './commands/delete.js';
import { gcCommand } from './commands/gc.js';
import { secretCommand } from './commands/secret.js';
import { triggerCommand } from './commands/trigger.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('fezz')
    .description('fezz: a fast, self-hosted function host')
    .version(pkg.version)
    // Options after a command belong to it (`fezz new x --version 1.0.0` is new's --version).
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)');
  program.addCommand(serveCommand());
  program.addCommand(devCommand());
  program.addCommand(newCommand());
  program.addCommand(buildCommand());
  program.addCommand(deployCommand());
  program.addCommand(listCommand());
  program.addCommand(logsCommand());
  program.addCommand(deleteCommand());
  program.addCommand(gcCommand());
  program.addCommand(secretCommand());
  program.addCommand(triggerCommand());
  return program;
}

buildProgram().parseAsync(process.argv).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stderr.write(`fezz: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
  process.exit(1);
});
