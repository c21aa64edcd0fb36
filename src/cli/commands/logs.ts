/**
 * `fezz logs <id>`: a function's recent log lines and requests (method, path, status, ms,
 * request id: one line per request, recorded by the host whether or not its access log is
 * on), then new ones as they happen until Ctrl-C (`GET /admin/logs`). An id (or version) the
 * host does not know is an error, not an empty stream.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import path from 'node:path';
import { addConnectionOptions, AdminClient, CliError, type ConnectionOptions, type LogLine, exitQuietlyOnEpipe } from '../admin-client.js';

const PINO_LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const SHOWN = new Set(['time', 'level', 'fn', 'requestId', 'msg', 'pid', 'hostname', 'v']);

/** Whether `line` is one request's record (the host's `msg: "request"` line: method, path, status, ms). */
export function isRequestLine(line: LogLine): boolean {
  return line.msg === 'request' && typeof line.method === 'string' && typeof line.path === 'string' && typeof line.status === 'number';
}

/**
 * `2025-01-02T03:04:05.678Z info  hello@1.0.0 <requestId> msg {extra fields}`, then an
 * error's stack, if any, indented on the lines below. A request line reads
 * `2025-01-02T03:04:05.678Z info  hello@1.0.0 <requestId> GET /hello 200 1.25 ms`.
 */
export function formatLogLine(line: LogLine): string {
  if (isRequestLine(line)) {
    const time = typeof line.time === 'number' && Number.isFinite(line.time) ? new Date(line.time).toISOString() : String(line.time ?? '-');
    const ms = typeof line.ms === 'number' ? ` ${line.ms} ms` : '';
    return [time, String(line.level ?? 'info').padEnd(5), line.fn ?? '-', line.requestId ?? '-', line.method, line.path, line.status].join(' ') + ms;
  }
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
    .addOption(new Option('--no-requests', 'leave out the request lines (method, path, status, ms, request id), shown by default'))
    .showHelpAfterError('(run fezz logs --help for usage)')
    .addHelpText('after', `
Examples:
  $ FEZZ_TOKEN=... fezz logs hello
  $ fezz logs hello@1.0.0 --no-follow --since 20`)
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (id: string, opts: ConnectionOptions & { follow: boolean; since: number; json: boolean; requests: boolean }) => {
      const client = AdminClient.from(opts);
      // The host keeps lines per function id; a version narrows them here.
      const at = id.indexOf('@');
      const fnId = at >= 0 ? id.slice(0, at) : id;
      const onlyKey = at >= 0 ? id : null;
      // Following: an unknown id is an error before anything waits. Otherwise the lines come
      // first, and only an empty answer asks whether the function exists (old lines of a
      // deleted version are still shown).
      if (opts.follow) await checkKnown(client, fnId, onlyKey, false);
      let shown = 0;
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        for await (const line of client.logs({ fn: fnId, follow: opts.follow, since: opts.since, signal: abort.signal })) {
          if (onlyKey !== null && line.fn !== onlyKey) continue;
          if (!opts.requests && isRequestLine(line)) continue;
          shown++;
          process.stdout.write((opts.json ? JSON.stringify(line) : formatLogLine(line)) + '\n');
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      if (!opts.follow && shown === 0) await checkKnown(client, fnId, onlyKey, true);
      if (opts.follow && !abort.signal.aborted) {
        throw new CliError(`the admin listener at ${client.where} ended the log stream (did the host stop?)`);
      }
    });
}

/**
 * Fail with a clear message when the host has no function `id`: not loaded and no directory
 * of it among the problems. A function that is only a problem (not served) is said so on
 * stderr. A version `key` that is not loaded is an error with `strictVersion` (nothing to
 * show), else a note (following waits for it: a deploy may bring it).
 * @throws CliError FEZZ_ERR_FUNCTION_NOT_FOUND, FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND.
 */
async function checkKnown(client: AdminClient, id: string, key: string | null, strictVersion: boolean): Promise<void> {
  const list = await client.listFunctions();
  const loaded = list.functions.filter((f) => f.id === id);
  const problemDir = (file: string): string => path.basename(path.basename(file) === 'fezz.json' ? path.dirname(file) : file);
  const problems = list.problems.filter((p) => problemDir(p.file).startsWith(`${id}@`));
  if (key !== null) {
    if (loaded.some((f) => f.key === key)) return;
    const p = problems.find((x) => problemDir(x.file) === key);
    if (p !== undefined) { process.stderr.write(`note: ${key} is not served: ${p.code}: ${p.message}\n`); return; }
    const known = loaded.map((f) => f.key);
    if (!strictVersion && known.length > 0) {
      process.stderr.write(`note: ${key} is not loaded (the host has ${known.join(', ')}); waiting for its lines\n`);
      return;
    }
    throw new CliError(`no function version ${key} on the host at ${client.where}${known.length > 0 ? ` (it has ${known.join(', ')})` : ' (fezz list shows what it has)'}`, 'FEZZ_ERR_FUNCTION_VERSION_NOT_FOUND', 404);
  }
  if (loaded.length > 0) return;
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`note: ${problemDir(p.file)} is not served: ${p.code}: ${p.message}\n`);
    return;
  }
  throw new CliError(`no function ${JSON.stringify(id)} on the host at ${client.where} (fezz list shows what it has)`, 'FEZZ_ERR_FUNCTION_NOT_FOUND', 404);
}
