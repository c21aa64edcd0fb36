/**
 * `fezz list`: the functions a running host serves, with their state and request stats,
 * and the function directories it could not load (`GET /admin/functions`).
 */
import { Command, Option } from 'commander';
import { addConnectionOptions, AdminClient, formatMs, type ConnectionOptions, type FunctionsList, exitQuietlyOnEpipe } from '../admin-client.js';

/** Render the list as an aligned table plus a problems section. */
export function formatFunctionsList(list: FunctionsList): string {
  const lines: string[] = [];
  if (list.functions.length === 0) {
    lines.push('no functions');
  } else {
    const rows = [['KEY', 'RUNTIME', 'LATEST', 'STATE', 'INSTANCES', 'REQUESTS', 'ERRORS', 'P99']];
    for (const f of list.functions) {
      rows.push([
        f.key, f.runtime, f.latest ? 'yes' : '', f.state,
        String(f.stats?.instances ?? 0), String(f.stats?.requests ?? 0), String(f.stats?.errors ?? 0), formatMs(f.stats?.p99Ms),
      ]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) lines.push(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
  }
  if (list.problems.length > 0) {
    lines.push('', `problems (${list.problems.length}, not served):`);
    for (const p of list.problems) lines.push(`  ${p.file}: ${p.code}: ${p.message}`);
  }
  return lines.join('\n') + '\n';
}

export function listCommand(): Command {
  const cmd = new Command('list')
    .alias('ls')
    .description('list the functions a running host serves, their state and stats (GET /admin/functions)');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('--json', 'print the admin API\'s JSON as is').default(false))
    .showHelpAfterError('(run fezz list --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz list
  $ fezz list --json | jq '.functions[].key'`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (opts: ConnectionOptions & { json: boolean }) => {
      const list = await AdminClient.from(opts).listFunctions();
      process.stdout.write(opts.json ? JSON.stringify(list, null, 2) + '\n' : formatFunctionsList(list));
    });
}
