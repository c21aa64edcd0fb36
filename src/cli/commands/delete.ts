/**
 * `fezz delete <id> [version]`: remove a function version from a running host (admin API
 * `DELETE /admin/functions/<id>/<version>`: routing stops, in-flight requests finish, the
 * directory goes). Without a version, every version of the function, after listing them and
 * a confirmation (`--yes`, or `y` typed at a terminal).
 *
 * `--from s3://bucket/prefix` takes the version(s) out of a fleet's desired state instead
 * (docs/fleet.md): every host following the store removes them; the bundles stay until
 * `fezz gc --from` deletes unreferenced ones.
 */
import { createInterface } from 'node:readline/promises';
import path from 'node:path';
import { Command, Option } from 'commander';
import { addConnectionOptions, AdminClient, CliError, type ConnectionOptions, exitQuietlyOnEpipe } from '../admin-client.js';
import { ID_PATTERN, VERSION_PATTERN } from '../../manifest/schema.js';
import semver from 'semver';
import { parseS3Url } from '../../fleet/s3-url.js';

/** One version to delete, and whether it serves or is only a load problem. */
interface Target { version: string; latest: boolean; state: string }

/**
 * Every version of `id` the host knows: loaded ones (`latest` last), then directories it
 * reports as problems (not served, but still in the functions directory).
 */
async function versionsOf(client: AdminClient, id: string): Promise<Target[]> {
  const list = await client.listFunctions();
  const out: Target[] = list.functions.filter((f) => f.id === id).map((f) => ({ version: f.version, latest: f.latest, state: f.state }));
  for (const p of list.problems) {
    // `file` is the version's directory or its fezz.json.
    const dir = path.basename(p.file) === 'fezz.json' ? path.basename(path.dirname(p.file)) : path.basename(p.file);
    const at = dir.indexOf('@');
    if (at < 0 || dir.slice(0, at) !== id) continue;
    const version = dir.slice(at + 1);
    if (VERSION_PATTERN.test(version) && !out.some((t) => t.version === version)) out.push({ version, latest: false, state: 'not served' });
  }
  // Older first, the serving latest last: the function keeps serving until its last version goes.
  const rank = (t: Target): number => (t.latest ? 1 : 0);
  return out.sort((a, b) => rank(a) - rank(b) || compareVersions(a.version, b.version));
}

function compareVersions(a: string, b: string): number {
  if (a === 'latest' || b === 'latest') return a === b ? 0 : a === 'latest' ? 1 : -1;
  return semver.compare(a, b);
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export function deleteCommand(): Command {
  const cmd = new Command('delete')
    .description('delete a function version from a running host, or every version of it (DELETE /admin/functions/<id>/<version>)')
    .argument('<id>', 'function id, or <id>@<version>')
    .argument('[version]', 'the version to delete; without it, every version (after a confirmation)');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('-y, --yes', 'delete every version without asking (needed when stdin is not a terminal)').default(false))
    .addOption(new Option('--from <s3url>', 'take the version(s) out of a fleet\'s object store (s3://bucket/prefix) instead of a host; hosts following it remove them'))
    .addOption(new Option('--s3-endpoint <url>', 'endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3)'))
    .showHelpAfterError('(run fezz delete --help for usage)')
    .addHelpText('after', `
Examples:
  $ fezz delete hello 1.0.0
  $ fezz delete hello@1.0.0
  $ fezz delete hello --yes          # every version of hello
  $ fezz delete hello@1.0.0 --from s3://my-bucket/fezz/prod`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (idArg: string, versionArg: string | undefined, opts: ConnectionOptions & { yes: boolean; from?: string; s3Endpoint?: string }) => {
      let id = idArg;
      let version = versionArg;
      const at = idArg.indexOf('@');
      if (at >= 0) {
        id = idArg.slice(0, at);
        const v = idArg.slice(at + 1);
        if (version !== undefined && version !== v) throw new CliError(`two versions given: ${JSON.stringify(idArg)} and ${JSON.stringify(version)}`);
        version = v;
      }
      if (!ID_PATTERN.test(id)) throw new CliError(`invalid function id ${JSON.stringify(id)}: must match [a-z0-9][a-z0-9-]*`);
      if (version !== undefined && !VERSION_PATTERN.test(version)) throw new CliError(`invalid version ${JSON.stringify(version)}: must be semver (e.g. 1.0.0) or "latest"`);
      if (opts.from !== undefined) return deleteFromStore(id, version, opts.from, opts);
      const client = AdminClient.from(opts);
      if (version !== undefined) {
        const r = await client.deleteFunction(id, version);
        process.stdout.write(`deleted ${r.key}\n`);
        return;
      }
      const targets = await versionsOf(client, id);
      if (targets.length === 0) throw new CliError(`no function ${JSON.stringify(id)} on the host at ${client.where} (fezz list shows what it has)`, 'FEZZ_ERR_FUNCTION_NOT_FOUND', 404);
      process.stdout.write(`${id} has ${targets.length} version(s):\n${targets.map((t) => `  ${id}@${t.version}  ${t.latest ? 'latest, ' : ''}${t.state}\n`).join('')}`);
      if (!opts.yes) {
        if (process.stdin.isTTY !== true) throw new CliError(`not deleting ${targets.length} version(s) of ${id} without confirmation: pass --yes (stdin is not a terminal)`);
        if (!await confirm(`delete all ${targets.length} version(s) of ${id}? [y/N] `)) throw new CliError('nothing deleted');
      }
      for (const t of targets) {
        const r = await client.deleteFunction(id, t.version);
        process.stdout.write(`deleted ${r.key}\n`);
      }
      process.stdout.write(`its secrets are kept (fezz secret list ${id}); a version deployed again gets them\n`);
    });
}

/**
 * `--from s3://bucket/prefix`: remove `<id>@<version>` (or, after a confirmation, every
 * version of `id`) from the fleet's state.json, by compare-and-swap.
 * @throws CliError (404 when the fleet has no such version), FezzError FEZZ_ERR_FLEET_STORE,
 *   FEZZ_ERR_FLEET_STATE_INVALID, FEZZ_ERR_FLEET_CONTENDED.
 */
async function deleteFromStore(id: string, version: string | undefined, from: string, opts: { yes: boolean; s3Endpoint?: string }): Promise<void> {
  const location = parseS3Url(from);
  const [{ readState, removeFromFleet }, { S3Store }] = await Promise.all([import('../../fleet/fleet-deploy.js'), import('../../fleet/s3-store.js')]);
  const store = new S3Store(location, opts.s3Endpoint !== undefined ? { endpoint: opts.s3Endpoint } : {});
  try {
    const { state } = await readState(store);
    const keys = Object.keys(state.functions).filter((k) => (version !== undefined ? k === `${id}@${version}` : k.slice(0, k.indexOf('@')) === id)).sort();
    if (keys.length === 0) {
      throw new CliError(`${version !== undefined ? `${id}@${version}` : `no version of ${JSON.stringify(id)}`} is not in ${location.url}`, 'FEZZ_ERR_FUNCTION_NOT_FOUND', 404);
    }
    if (version === undefined) {
      process.stdout.write(`${id} has ${keys.length} version(s) in ${location.url}:\n${keys.map((k) => `  ${k}\n`).join('')}`);
      if (!opts.yes) {
        if (process.stdin.isTTY !== true) throw new CliError(`not deleting ${keys.length} version(s) of ${id} without confirmation: pass --yes (stdin is not a terminal)`);
        if (!await confirm(`delete all ${keys.length} version(s) of ${id} from ${location.url}? [y/N] `)) throw new CliError('nothing deleted');
      }
    }
    for (const key of keys) {
      // false: another deploy or delete took it out meanwhile, which is what was asked.
      await removeFromFleet(store, key);
      process.stdout.write(`deleted ${key} from ${location.url}\n`);
    }
  } finally {
    store.close();
  }
}
