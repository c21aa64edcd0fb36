/**
 * The native plugin host: a child process (never the fezz host itself) that loads one
 * shared library exporting `int32_t fezz_handle_request(int64_t)` and calls it for every
 * request id read from stdin (plugin-host-main.ts). A segfault or abort in the library kills
 * only this process; the host fails its in-flight requests with 502 and starts a new one.
 *
 * Usage: node plugin-host.js <path to .so>. Exit codes: 0 after stdin EOF once every call
 * returned, 2 usage, 3 the library does not load, 4 fd 3 failed.
 */
import { runPluginHost } from './plugin-host-main.js';

const libPath = process.argv[2];
if (!libPath) {
  process.stderr.write('usage: plugin-host <library.so>\n');
  process.exit(2);
}
runPluginHost(libPath);
