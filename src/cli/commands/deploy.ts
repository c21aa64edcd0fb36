/**
 * `fezz deploy <dir>`: validate the function's manifest, bundle a JS/TS entry (or take a
 * plugin's files as they are) and upload the package to a running host with
 * `POST /admin/deploy`. The host answers once the new version serves; the previous one
 * keeps serving if it refuses.
 *
 * `fezz deploy <dir> --to s3://bucket/prefix` writes the same package to a fleet's object
 * store instead (src/fleet/fleet-deploy.ts, docs/fleet.md): every `fezz serve --source`
 * following that location installs it.
 */
import { Command, Option } from 'commander';
import { DEPLOY_MAX_BYTES, packageForDeploy, readFunctionSource, type DeployPlan } from '../../build/deploy-bundle.js';
import { parseS3Url, type S3Location } from '../../fleet/s3-url.js';
import { addConnectionOptions, AdminClient, CliError, formatBytes, formatMs, type ConnectionOptions, exitQuietlyOnEpipe } from '../admin-client.js';

interface DeployOptions extends ConnectionOptions {
  dryRun: boolean;
  replace: boolean;
  /** `s3://bucket/prefix`: deploy to a fleet's object store instead of a host. */
  to?: string;
  s3Endpoint?: string;
}

export function deployCommand(): Command {
  const cmd = new Command('deploy')
    .description('bundle a function directory and upload it to a running host (POST /admin/deploy)')
    .argument('<dir>', 'the function directory (holds fezz.json; its id and version name the deployed <id>@<version>)');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('-n, --dry-run', 'build and list the package, upload nothing (no token needed)').default(false))
    .addOption(new Option('--replace', 'replace a version already deployed with other content (by default versions are immutable: 409)').default(false))
    .addOption(new Option('--to <s3url>', 'deploy to a fleet\'s object store (s3://bucket/prefix) instead of a host; hosts run fezz serve --source <s3url>'))
    .addOption(new Option('--s3-endpoint <url>', 'endpoint of an S3-compatible store (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS S3); credentials and region come from the AWS environment'))
    .showHelpAfterError('(run fezz deploy --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz deploy functions/greet@1.0.0
  $ fezz deploy ./greet --host-url http://10.0.0.5:3001 --token "$TOKEN"
  $ fezz deploy functions/echo-go@1.0.0 --dry-run
  $ AWS_REGION=eu-west-1 fezz deploy functions/greet@1.0.0 --to s3://my-bucket/fezz/prod

A deploy writes <functions dir>/<id>@<version>/ on the host. Do not deploy a directory
into the host that serves it: the upload (fezz.json + bundle) would replace its sources.`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (dir: string, opts: DeployOptions) => {
      if (opts.to !== undefined) return deployToStore(dir, parseS3Url(opts.to), opts);
      const source = await readFunctionSource(dir);
      // Resolve the connection before the (possibly slow) bundling, so a missing token fails fast.
      const client = opts.dryRun ? null : AdminClient.from(opts);
      if (client !== null && !opts.replace) {
        // Versions are not overwritten by accident: if the host serves this directory itself,
        // a replace would swap its sources for the bundle.
        const { functions } = await client.listFunctions();
        if (functions.some((f) => f.key === source.key)) {
          throw new CliError(`${source.key} is already deployed on ${client.where}; bump "version" in ${source.shown}, or pass --replace to replace it`);
        }
      }
      const plan = await packageForDeploy(source);
      const err = process.stderr;
      if (!report(plan, source, opts.dryRun)) return;
      if (plan.requestBytes > DEPLOY_MAX_BYTES) {
        throw new CliError(`the package of ${plan.key} is ${formatBytes(plan.requestBytes)}, over the ${formatBytes(DEPLOY_MAX_BYTES)} deploy limit`);
      }
      err.write(`uploading ${plan.key} (${plan.files.length} file${plan.files.length === 1 ? '' : 's'}, ${formatBytes(plan.requestBytes)}) to ${client!.where}\n`);
      const result = await client!.deploy(plan.body, { replace: opts.replace });
      process.stdout.write(result.unchanged === true ? `${result.key} is already deployed with the same content: nothing changed\n` : `deployed ${result.key}\n`);
    });
}

/** Print what a build did, and the file list of a dry run; false when it was a dry run. */
function report(plan: DeployPlan, source: { manifest: { entry: string } }, dryRun: boolean): boolean {
  const err = process.stderr;
  if (plan.bundle) {
    err.write(`bundled ${source.manifest.entry} (${formatBytes(plan.bundle.code.byteLength)}, ${plan.bundle.inputs} input file${plan.bundle.inputs === 1 ? '' : 's'}) in ${formatMs(plan.bundle.ms)}\n`);
  }
  for (const note of plan.notes) err.write(`${note}\n`);
  if (!dryRun) return true;
  const out = process.stdout;
  out.write(`${plan.key} (${plan.runtime}): ${plan.files.length} file${plan.files.length === 1 ? '' : 's'}, request ${formatBytes(plan.requestBytes)}\n`);
  for (const f of plan.files) out.write(`  ${f.path}  ${formatBytes(f.bytes)}${f.mode !== undefined ? `  mode ${f.mode.toString(8)}` : ''}\n`);
  return false;
}

/**
 * `--to s3://bucket/prefix`: build the package, upload it as a bundle and point its key at
 * it in state.json (src/fleet/fleet-deploy.ts).
 * @throws FezzError FEZZ_ERR_VERSION_EXISTS (the key runs other content: pass --replace),
 *   FEZZ_ERR_FLEET_STORE, FEZZ_ERR_FLEET_STATE_INVALID, FEZZ_ERR_FLEET_BUNDLE_INVALID, FEZZ_ERR_FLEET_CONTENDED, CliError (too large).
 */
async function deployToStore(dir: string, location: S3Location, opts: DeployOptions): Promise<void> {
  const source = await readFunctionSource(dir);
  // Loaded here, not at the top: the AWS SDK is large, and only this path needs it.
  const [{ deployToFleet }, { S3Store }] = await Promise.all([import('../../fleet/fleet-deploy.js'), import('../../fleet/s3-store.js')]);
  // Made before the (possibly slow) bundling, so a bad endpoint fails fast.
  const store = opts.dryRun ? null : new S3Store(location, opts.s3Endpoint !== undefined ? { endpoint: opts.s3Endpoint } : {});
  try {
    const plan = await packageForDeploy(source);
    if (!report(plan, source, opts.dryRun) || store === null) return;
    const bundle = Buffer.from(JSON.stringify(plan.body));
    if (bundle.byteLength > DEPLOY_MAX_BYTES) {
      throw new CliError(`the package of ${plan.key} is ${formatBytes(bundle.byteLength)}, over the ${formatBytes(DEPLOY_MAX_BYTES)} deploy limit`);
    }
    process.stderr.write(`uploading ${plan.key} (${plan.files.length} file${plan.files.length === 1 ? '' : 's'}, ${formatBytes(bundle.byteLength)}) to ${location.url}\n`);
    const r = await deployToFleet({ store, key: plan.key, bundle, replace: opts.replace });
    const out = process.stdout;
    if (r.outcome === 'unchanged') out.write(`${r.key} is already deployed to ${location.url} with the same content: nothing changed\n`);
    else out.write(`${r.outcome} ${r.key} to ${location.url} (revision ${r.revision}, bundle ${r.sha256.slice(0, 12)})\n`);
  } finally {
    store?.close();
  }
}
