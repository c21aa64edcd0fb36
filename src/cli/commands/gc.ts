/**
 * `fezz gc --from s3://bucket/prefix`: delete the bundles of a fleet's object store that no
 * version in its state.json names any more (replaced with `--replace`, or removed with
 * `fezz delete --from`), once they are older than `--min-age` (a deploy uploads its bundle
 * before it names it, so a young one may be about to be named). docs/fleet.md.
 */
import { Command, Option } from 'commander';
import { CliError, exitQuietlyOnEpipe } from '../admin-client.js';
import { parseS3Url } from '../../fleet/s3-url.js';

/** `30s`, `15m`, `2h`, `7d` or plain milliseconds -> ms. @throws CliError for anything else. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) throw new CliError(`invalid duration ${JSON.stringify(text)}: a number with ms, s, m, h or d (e.g. 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

export function gcCommand(): Command {
  return new Command('gc')
    .description('delete the bundles of a fleet\'s object store that no deployed version names any more')
    .requiredOption('--from <s3url>', 'the fleet\'s object store (s3://bucket/prefix)')
    .addOption(new Option('--min-age <duration>', 'keep unreferenced bundles younger than this (a deploy in progress may be about to name one)').default('1h'))
    .addOption(new Option('-n, --dry-run', 'list what would be deleted, delete nothing').default(false))
    .addOption(new Option('--s3-endpoint <url>', 'endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3)'))
    .showHelpAfterError('(run fezz gc --help for usage)')
    .addHelpText('after', `
Examples:
  $ fezz gc --from s3://my-bucket/fezz/prod --dry-run
  $ fezz gc --from s3://my-bucket/fezz/prod --min-age 7d`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (opts: { from: string; minAge: string; dryRun: boolean; s3Endpoint?: string }) => {
      const location = parseS3Url(opts.from);
      const minAgeMs = parseDuration(opts.minAge);
      const [{ collectGarbage }, { S3Store }] = await Promise.all([import('../../fleet/fleet-deploy.js'), import('../../fleet/s3-store.js')]);
      const store = new S3Store(location, opts.s3Endpoint !== undefined ? { endpoint: opts.s3Endpoint } : {});
      try {
        const r = await collectGarbage(store, { minAgeMs, dryRun: opts.dryRun });
        const out = process.stdout;
        for (const name of r.deleted) out.write(`${opts.dryRun ? 'would delete' : 'deleted'} ${location.url}/${name}\n`);
        out.write(`${r.deleted.length} unreferenced bundle(s) ${opts.dryRun ? 'to delete' : 'deleted'} (${r.bytes} bytes); ${r.referenced} in use; ${r.young} unreferenced but younger than ${opts.minAge}, kept\n`);
      } finally {
        store.close();
      }
    });
}
