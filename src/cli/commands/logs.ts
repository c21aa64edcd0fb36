/**
 * `fezz logs <id>`: a function's recent log lines, then new ones as they happen until
 * Ctrl-C (`GET /admin/logs`).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { addConnectionOptions, AdminClient, CliError, type ConnectionOptions, type LogLine, exitQuietlyOnEpipe } from '../admin-client.js';

const PINO_LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const SHOWN = new Set(['time', 'level', 'fn', 'requestId', 'msg', 'pid', 'hostname', 'v']);

/**
 * `2025-01-02T03:04:05.678Z info  hello@1.0.0 <requestId> msg {extra fields}`, then an
 * error's stack, if any, indented on the lines below.
 */
export function formatLogLine(line: LogLine): string {
  const time = typeof line.time === 'number' && Number.isFinite(line.time) ? new Date(line.time).toISOString() : String(line.time ?? '-');
  const level = typeof line.level === 'number' ? (PINO_LEVELS[line.level] ?? String(line.level)) : String(line.level ?? '-');
  const extra: Record<string, unknown> = {};
  let stack: string | null = null;
  for (const [k, v] of Object.entries(line)) {
    if (SHOWN.has(k)) continue;
    // A serialized error's stack reads better as lines under the message than inside JSON.
    if (k === 'err' && v !== null && typeof v === 'object' && typeof (v as { stack?: unknown }).stack === 'string') {
      stack = (v as { stack: string }).stack;
      continue;
    }
    extra[k] = v;
  }
  const parts = [time, level.padEnd(5), line.fn ?? '-', line.requestId ?? '-', line.msg ?? ''];
  let text = parts.join(' ');
  if (Object.keys(extra).length > 0) text += ` ${JSON.stringify(extra)}`;
  if (stack !== null) text += stack.split('\n').map((l) => `\n    ${l.trimStart().startsWith('at ') ? '  ' : ''}${l.trim()}`).join('');
  return text;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

export function logsCommand(): Command {
  const cmd = new Command('logs')
    .description('print a function\'s log lines, then follow new ones until Ctrl-C (GET /admin/logs)')
    .argument('<id>', 'function id (every version) or <id>@<version>');
  addConnectionOptions(cmd);
  return cmd
    .addOption(new Option('--no-follow', 'print the recent lines and exit instead of following'))
    .addOption(new Option('-s, --since <n>', 'how many recent lines to print first').default(100).argParser(count))
    .addOption(new Option('--json', 'print the NDJSON lines as the host sends them').default(false))
    .showHelpAfterError('(run fezz logs --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz logs hello
  $ fezz logs hello@1.0.0 --no-follow --since 20`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (id: string, opts: ConnectionOptions & { follow: boolean; since: number; json: boolean }) => {
      const client = AdminClient.from(opts);
      // The host keeps lines per function id; a version narrows them here.
      const at = id.indexOf('@');
      const fnId = at >= 0 ? id.slice(0, at) : id;
      const onlyKey = at >= 0 ? id : null;
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        for await (const line of client.logs({ fn: fnId, follow: opts.follow, since: opts.since, signal: abort.signal })) {
          if (onlyKey !== null && line.fn !== onlyKey) continue;
          process.stdout.write((opts.json ? JSON.stringify(line) : formatLogLine(line)) + '\n');
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      if (opts.follow && !abort.signal.aborted) {
        throw new CliError(`the admin listener at ${client.where} ended the log stream (did the host stop?)`);
      }
    });
}
