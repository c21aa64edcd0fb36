/**
 * `fezz dev`: `fezz serve --dev` under the name a wrangler user types. The same options (one
 * definition, serve.ts hostCommand), with dev mode always on: the functions directory is
 * watched and hot-reloaded, logs are pretty with an access log line per request, 500 bodies
 * carry stacks, functions run as worker threads (not sandboxed) unless `--isolation sandbox`,
 * and each function's `.dev.vars` adds local secrets (docs/secrets.md).
 */
import type { Command } from 'commander';
import { hostCommand } from './serve.js';

export function devCommand(): Command {
  return hostCommand('dev', {
    description: 'serve a functions directory for development: fezz serve --dev (hot reload, pretty logs, stacks in 500s, .dev.vars secrets, thread isolation)',
    dev: true,
  }).addHelpText('after', `
Example:
  $ fezz dev --dir ./functions          # same as: fezz serve --dir ./functions --dev`);
}
