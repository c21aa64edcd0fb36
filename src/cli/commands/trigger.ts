/**
 * `fezz trigger <id> [cron]`: run a function's scheduled handler now, as a cron tick would
 * (`POST /admin/functions/<id>/scheduled`), like wrangler's `--test-scheduled`. Prints the
 * outcome; a run that failed, timed out or found no scheduled handler exits 1 with the
 * host's code and message (`fezz: FEZZ_ERR_SCHEDULED_FAILED: ...`).
 */
import { Command, Option } from 'commander';
import { addConnectionOptions, AdminClient, formatMs, type ConnectionOptions, type ScheduledRun, exitQuietlyOnEpipe } from '../admin-client.js';

/** `ran hello@1.0.0 (cron "*\/5 * * * *"): ok in 12 ms, request 123...` */
export function formatRun(run: ScheduledRun): string {
  const cron = run.cron === '' ? 'no cron' : `cron ${JSON.stringify(run.cron)}`;
  return `ran ${run.fn} (${cron}): ${run.outcome} in ${formatMs(run.ms)}${run.requestId ? `, request ${run.requestId}` : ''}\n`;
}

export function triggerCommand(): Command {
  const cmd = new Command('trigger')
    .description('run a function\'s scheduled handler now, as a cron tick would (POST /admin/functions/<id>/scheduled)')
    .argument('<id>', 'function id (its latest version) or <id>@<version>')
    .argument('[cron]', 'what controller.cron says (default: the manifest\'s first cron)');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('--json', 'print the admin API\'s JSON as is').default(false))
    .showHelpAfterError('(run fezz trigger --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz trigger cleanup
  $ fezz trigger cleanup '0 3 * * *'`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (id: string, cron: string | undefined, opts: ConnectionOptions & { json: boolean }) => {
      const run = await AdminClient.from(opts).trigger(id, cron);
      process.stdout.write(opts.json ? JSON.stringify(run, null, 2) + '\n' : formatRun(run));
    });
}
