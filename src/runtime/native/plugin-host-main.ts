/**
 * The native plugin host's logic (see plugin-host.ts for the process it runs in): load one
 * shared library exporting `int32_t fezz_handle_request(int64_t request_id)` with koffi and call
 * it for every request id read from stdin, off the event loop (koffi's async calls run on
 * worker threads), several at once. Each call's return code is written to fd 3 as
 * `<id> <rc>\n`, after a first line `ready` once the library is loaded.
 *
 * Shared by the unsandboxed plugin host (plugin-host.ts) and the sandboxed one
 * (sandbox/plugin-entry.ts, which first starts the ABI relay the library talks to).
 * Exit codes: 0 after stdin EOF once every call returned, 3 the library does not load,
 * 4 fd 3 failed.
 */
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import koffi from 'koffi';

/** Load `libPath` and serve request ids from stdin until EOF; exits the process at the end. */
export function runPluginHost(libPath: string): void {
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

  const finished = (id: string, rc: number): void => {
    inflight--;
    results.write(`${id} ${rc}\n`);
    if (ended && inflight === 0) results.end(() => process.exit(0));
  };

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
}
