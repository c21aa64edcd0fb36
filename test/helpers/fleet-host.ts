/**
 * A host that follows a fleet's object store, as `fezz serve --source <s3url>` does, for
 * tests (spawned as `node --import tsx test/helpers/fleet-host.ts <dir> <s3url> [pollMs]`):
 * static AWS keys leave the environment first, then createHost -> startSourceSync (the
 * initial sync) -> listen. Logs are JSON lines on stdout; once listening it prints
 * `{"msg":"fleet host ready","url":...,"admin":...,"token":...}`. SIGTERM stops it.
 */
import os from 'node:os';
import path from 'node:path';
import { createHost } from '../../src/index.js';
import { startSourceSync } from '../../src/fleet/source-sync.js';
import { takeS3Credentials } from '../../src/fleet/s3-store.js';

const [dir, source, pollMs] = process.argv.slice(2);
if (dir === undefined || source === undefined) {
  process.stderr.write('usage: fleet-host.ts <functions dir> <s3://bucket/prefix> [pollMs]\n');
  process.exit(2);
}
// Before any function loads: an inline function shares this process's environment.
const credentials = takeS3Credentials();
const host = await createHost({ dir, port: 0, adminPort: 0, logLevel: 'info', logDestination: process.stdout, cacheDir: path.join(os.tmpdir(), 'fezz-test-cache'), isolation: 'thread' });
const sync = await startSourceSync({
  source, dir, logger: host.logger,
  deploy: (pkg, replace) => host.deploy(pkg, { replace }),
  remove: (id, version) => host.remove(id, version),
  ...(pollMs !== undefined ? { pollMs: Number(pollMs) } : {}),
  ...(credentials !== undefined ? { s3: { credentials } } : {}),
  initialTimeoutMs: 10_000,
});
const { url } = await host.listen();
process.stdout.write(JSON.stringify({ msg: 'fleet host ready', url, admin: host.adminUrl, token: host.token, status: sync.status() }) + '\n');
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void sync.close().then(() => host.close(1000, 0)).then(() => process.exit(0), () => process.exit(1));
});
