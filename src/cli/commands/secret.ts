/**
 * `fezz secret put|list|delete`: a function's secrets on a running host (admin API
 * `/admin/secrets`, docs/secrets.md). A value is read from stdin — piped, or typed at a
 * prompt that does not echo — never from the command line, where the process list and the
 * shell history would keep it; it is sent in the request body only.
 */
import { Command, Option } from 'commander';
import { addConnectionOptions, AdminClient, CliError, type ConnectionOptions, type SecretChangeResult, exitQuietlyOnEpipe } from '../admin-client.js';
import { MAX_SECRET_VALUE_BYTES, SECRET_NAME_PATTERN } from '../../secrets/store.js';
import { ID_PATTERN } from '../../manifest/schema.js';

/**
 * Read a secret's value from `input`: everything up to EOF when piped (one trailing `\n` or
 * `\r\n` is dropped, as `echo` adds it), or one line typed at a prompt written to `prompt`
 * without echo when `input` is a terminal (Ctrl-C aborts).
 * @throws CliError when it is empty, over 64 KiB, or the prompt was aborted.
 */
export async function readSecretValue(input: NodeJS.ReadStream = process.stdin, prompt: NodeJS.WritableStream = process.stderr, label = 'the secret'): Promise<Buffer> {
  const value = input.isTTY === true ? await promptHidden(input, prompt, label) : await readAll(input);
  if (value.length === 0) throw new CliError(`no value for ${label}: pipe it in (fezz secret put <id> <NAME> < file) or type it at the prompt`);
  if (value.length > MAX_SECRET_VALUE_BYTES) throw new CliError(`the value for ${label} is over ${MAX_SECRET_VALUE_BYTES} bytes (64 KiB), the most a secret may hold`);
  return value;
}

/** All of a piped stdin, at most one byte past the limit (so an oversized value is refused without reading it all). */
async function readAll(input: NodeJS.ReadStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    chunks.push(b);
    size += b.length;
    if (size > MAX_SECRET_VALUE_BYTES + 2) break;
  }
  let value = Buffer.concat(chunks, size);
  if (value.length > 0 && value[value.length - 1] === 0x0a) value = value.subarray(0, value[value.length - 2] === 0x0d ? -2 : -1);
  return value;
}

/** One line typed at a terminal in raw mode: nothing is echoed; Backspace edits; Enter ends; Ctrl-C or Ctrl-D on an empty line aborts. */
function promptHidden(input: NodeJS.ReadStream, out: NodeJS.WritableStream, label: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    out.write(`Enter the value of ${label} (not shown; Enter ends it): `);
    const bytes: number[] = [];
    input.setRawMode(true);
    input.resume();
    const done = (err: Error | null): void => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      out.write('\n');
      if (err !== null) reject(err);
      else resolve(Buffer.from(bytes));
      bytes.fill(0);
    };
    const onData = (chunk: Buffer): void => {
      for (const b of chunk) {
        if (b === 0x0d || b === 0x0a) { done(null); return; }
        if (b === 0x03 || (b === 0x04 && bytes.length === 0)) { done(new CliError('aborted: no secret was set')); return; }
        if (b === 0x7f || b === 0x08) {
          // Backspace removes the last character (all bytes of a multi-byte UTF-8 one).
          while (bytes.length > 0 && (bytes[bytes.length - 1]! & 0xc0) === 0x80) bytes.pop();
          bytes.pop();
          continue;
        }
        bytes.push(b);
      }
    };
    input.on('data', onData);
  });
}

/** `hello` -> itself; `hello@1.0.0` is refused: secrets belong to a function id, every version. */
function functionId(arg: string): string {
  if (arg.includes('@')) throw new CliError(`secrets belong to a function id, shared by all its versions: use ${JSON.stringify(arg.slice(0, arg.indexOf('@')))}, not ${JSON.stringify(arg)}`);
  if (!ID_PATTERN.test(arg)) throw new CliError(`invalid function id ${JSON.stringify(arg)}: must match [a-z0-9][a-z0-9-]*`);
  return arg;
}

function secretName(arg: string): string {
  if (!SECRET_NAME_PATTERN.test(arg) || arg.startsWith('FEZZ_')) {
    throw new CliError(`invalid secret name ${JSON.stringify(arg)}: an environment variable name ([A-Za-z_][A-Za-z0-9_]*), not FEZZ_*, e.g. API_KEY`);
  }
  return arg;
}

/** What a change did: the versions that restarted, or that none is loaded; problems on stderr. */
function reportChange(what: string, r: SecretChangeResult, withIt: 'with' | 'without'): void {
  const restarted = r.reloaded.length > 0
    ? `; restarted ${withIt} it: ${r.reloaded.join(', ')}`
    : `; no loaded version of it changed${withIt === 'with' ? ' (a version deployed later gets it; a plugin only when its manifest\'s "secrets" grants it)' : ''}`;
  process.stdout.write(`${what}${restarted}\n`);
  if (r.problems.length > 0) {
    for (const p of r.problems) process.stderr.write(`  not served: ${p.file}: ${p.code}: ${p.message}\n`);
    throw new CliError(`${r.problems.length} version(s) of ${r.id} are not served after the change (see above)`);
  }
}

export function secretCommand(): Command {
  const cmd = new Command('secret')
    .description('set, list and delete a function\'s secrets on a running host: encrypted by the host, delivered in env (docs/secrets.md)')
    .showHelpAfterError('(run fezz secret --help for usage)')
    .addHelpText('after', `
Examples:
  $ fezz secret put hello API_KEY               # type the value at the prompt (not shown)
  $ printf %s "$KEY" | fezz secret put hello API_KEY
  $ fezz secret list hello
  $ fezz secret delete hello API_KEY`);

  const put = new Command('put')
    .description('set secret <NAME> of function <id> to the value read from stdin (never from the command line); the function restarts with it')
    .argument('<id>', 'function id (every version of it gets the secret)')
    .argument('<NAME>', 'environment variable name, e.g. API_KEY');
  addConnectionOptions(put);
  put.hook('preAction', exitQuietlyOnEpipe)
    .action(async (idArg: string, nameArg: string, opts: ConnectionOptions) => {
      const id = functionId(idArg);
      const name = secretName(nameArg);
      const client = AdminClient.from(opts);
      const value = await readSecretValue(process.stdin, process.stderr, `${name} of ${id}`);
      try {
        const r = await client.putSecret(id, name, value);
        reportChange(`${r.created === true ? 'added' : 'changed'} secret ${name} of ${id}`, r, 'with');
      } finally {
        value.fill(0);
      }
    });

  const list = new Command('list')
    .alias('ls')
    .description('list the names of function <id>\'s secrets and when each was set (never the values)')
    .argument('<id>', 'function id');
  addConnectionOptions(list);
  list.addOption(new Option('--json', 'print the admin API\'s JSON').default(false))
    .hook('preAction', exitQuietlyOnEpipe)
    .action(async (idArg: string, opts: ConnectionOptions & { json: boolean }) => {
      const id = functionId(idArg);
      const secrets = await AdminClient.from(opts).listSecrets(id);
      if (opts.json) { process.stdout.write(JSON.stringify({ id, secrets }, null, 2) + '\n'); return; }
      if (secrets.length === 0) { process.stdout.write(`no secrets for ${id}\n`); return; }
      const width = Math.max(4, ...secrets.map((s) => s.name.length));
      process.stdout.write(`${'NAME'.padEnd(width)}  UPDATED\n${secrets.map((s) => `${s.name.padEnd(width)}  ${s.updatedAt}\n`).join('')}`);
    });

  const del = new Command('delete')
    .alias('rm')
    .description('delete secret <NAME> of function <id>; the function restarts without it')
    .argument('<id>', 'function id')
    .argument('<NAME>', 'secret name');
  addConnectionOptions(del);
  del.hook('preAction', exitQuietlyOnEpipe)
    .action(async (idArg: string, nameArg: string, opts: ConnectionOptions) => {
      const id = functionId(idArg);
      const name = secretName(nameArg);
      const r = await AdminClient.from(opts).deleteSecret(id, name);
      reportChange(`deleted secret ${name} of ${id}`, r, 'without');
    });

  return cmd.addCommand(put).addCommand(list).addCommand(del);
}
