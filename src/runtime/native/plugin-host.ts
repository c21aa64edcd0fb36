/**
 * The native plugin host: a child process (never the fezz host itself) that loads one
 * shared library exporting `int32_t fezz_handle_request(int64_t request_id)` with koffi and
 * calls it for every request id read from stdin, off its event loop (koffi's async calls
 * run on worker threads), several at once. Each call's return code is written to fd 3 as
 * `<id> <rc>\n`. A segfault or abort in the library kills only this process; the host
 * fails its in-flight requests with 502 and starts a new one.
 *
 * Usage: node plugin-host.js <path to .so>. Exit codes: 0 after stdin EOF once every call
 * returned, 2 usage, 3 the library does not load, 4 fd 3 failed.
 */
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import koffi from 'koffi';

const libPath = process.argv[2];
if (!libPath) {
  process.stderr.write('usage: plugin-host <library.so>\n');
  process.exit(2);
}

let handle: { async(id: bigint, cb: (err: unknown, rc: number) => void): void };
try {
  const lib = koffi.load(libPath);
  handle = lib.func('int32_t fezz_handle_request(int64_t request_id)') as unknown as typeof handle;
} catch (err) {
  process.stderr.write(`cannot load ${libPath}: ${(err as Error).message}\n`);
  process.exit(3);
}

// Every stream gets an 'error' listener (unhandled, an error event crashes with a stack).
// stdout/stderr: the host is gone (EPIPE); nothing to do. fd 3 failing (EPIPE, or EBADF when
// not run by the host): no result can reach the host any more, so exit 4.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
const results = createWriteStream('', { fd: 3 });
results.on('error', (err) => {
  process.stderr.write(`fd 3: ${err.message}\n`);
  process.exit(4);
});
// Tell the host the library is loaded: a hot reload switches traffic only after this.
results.write('ready\n');
let inflight = 0;
let ended = false;

function finished(id: string, rc: number): void {
  inflight--;
  results.write(`${id} ${rc}\n`);
  if (ended && inflight === 0) results.end(() => process.exit(0));
}

const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
input
  .on('line', (line) => {
    const id = line.trim();
    if (!/^[0-9]{1,19}$/.test(id)) return;
    inflight++;
    try {
      handle.async(BigInt(id), (err, rc) => {
        if (err) process.stderr.write(`fezz_handle_request(${id}) failed: ${String(err)}\n`);
        finished(id, err ? -1 : rc);
      });
    } catch (err) {
      process.stderr.write(`fezz_handle_request(${id}) not called: ${String(err)}\n`);
      finished(id, -1);
    }
  })
  // A stdin read error ends the input like EOF: finish what runs, then exit.
  .on('error', () => input.close())
  .on('close', () => {
    ended = true;
    if (inflight === 0) results.end(() => process.exit(0));
  });
