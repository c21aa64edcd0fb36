/**
 * `fezz deploy <dir>`: validate the function's manifest, bundle a JS/TS entry (or take a
 * plugin's files as they are) and upload the package to a running host with
 * `POST /admin/deploy`. The host answers once the new version serves; the previous one
 * keeps serving if it refuses.
 */
import { Command, Option } from 'commander';
import { DEPLOY_MAX_BYTES, packageForDeploy, readFunctionSource } from '../../build/deploy-bundle.js';
import { addConnectionOptions, AdminClient, CliError, formatBytes, formatMs, type ConnectionOptions, exitQuietlyOnEpipe } from '../admin-client.js';

interface DeployOptions extends ConnectionOptions {
  dryRun: boolean;
  replace: boolean;
}

export function deployCommand(): Command {
  const cmd = new Command('deploy')
    .description('bundle a function directory and upload it to a running host (POST /admin/deploy)')
    .argument('<dir>', 'the function directory (holds fezz.json; its id and version name the deployed <id>@<version>)');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('-n, --dry-run', 'build and list the package, upload nothing (no token needed)').default(false))
    .addOption(new Option('--replace', 'replace a version the host already serves (by default a deployed version is not overwritten)').default(false))
    .showHelpAfterError('(run fezz deploy --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz deploy functions/greet@1.0.0
  $ fezz deploy ./greet --host-url http://10.0.0.5:3001 --token "$TOKEN"
  $ fezz deploy functions/echo-go@1.0.0 --dry-run

A deploy writes <functions dir>/<id>@<version>/ on the host. Do not deploy a directory
into the host that serves it: the upload (fezz.json + bundle) would replace its sources.`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (dir: string, opts: DeployOptions) => {
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
      if (plan.bundle) {
        err.write(`bundled ${source.manifest.entry} (${formatBytes(plan.bundle.code.byteLength)}, ${plan.bundle.inputs} input file${plan.bundle.inputs === 1 ? '' : 's'}) in ${formatMs(plan.bundle.ms)}\n`);
      }
      for (const note of plan.notes) err.write(`${note}\n`);
      if (opts.dryRun) {
        const out = process.stdout;
        out.write(`${plan.key} (${plan.runtime}): ${plan.files.length} file${plan.files.length === 1 ? '' : 's'}, request ${formatBytes(plan.requestBytes)}\n`);
        for (const f of plan.files) out.write(`  ${f.path}  ${formatBytes(f.bytes)}${f.mode !== undefined ? `  mode ${f.mode.toString(8)}` : ''}\n`);
        return;
      }
      if (plan.requestBytes > DEPLOY_MAX_BYTES) {
        throw new CliError(`the package of ${plan.key} is ${formatBytes(plan.requestBytes)}, over the ${formatBytes(DEPLOY_MAX_BYTES)} deploy limit`);
      }
      err.write(`uploading ${plan.key} (${plan.files.length} file${plan.files.length === 1 ? '' : 's'}, ${formatBytes(plan.requestBytes)}) to ${client!.where}\n`);
      const result = await client!.deploy(plan.body);
      process.stdout.write(`deployed ${result.key}\n`);
    });
}
