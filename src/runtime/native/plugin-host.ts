/**
 * The native plugin host: a child process (never the fezz host itself) that loads one
 * shared library exporting `int32_t fezz_handle_request(int64_t request_id)` with koffi and
 * calls it for every request id read from stdin, off its event loop (koffi's async calls
 * run on worker threads), several at once. Each call's return code is written to fd 3 as
 * `<id> <rc>\n`. A segfault or abort in the library kills only this process; the host
 * fails its in-flight requests with 502 and starts a new one.
 *
 * Usage: node plugin-host.js <path to .so>
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

const results = createWriteStream('', { fd: 3 });
// Tell the host the library is loaded: a hot reload switches traffic only after this.
results.write('ready\n');
let inflight = 0;
let ended = false;

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const id = line.trim();
    if (!/^[0-9]{1,19}$/.test(id)) return;
    inflight++;
    handle.async(BigInt(id), (err, rc) => {
      inflight--;
      results.write(`${id} ${err ? -1 : rc}\n`);
      if (err) process.stderr.write(`fezz_handle_request(${id}) failed: ${String(err)}\n`);
      if (ended && inflight === 0) results.end(() => process.exit(0));
    });
  })
  .on('close', () => {
    ended = true;
    if (inflight === 0) results.end(() => process.exit(0));
  });
