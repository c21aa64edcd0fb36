/**
 * The main module of a plugin sandbox (a process or native plugin run under bubblewrap with
 * the sandbox profile, bwrap.ts; host side: plugin-sandbox.ts). Bundled by esbuild into
 * `plugin-entry.mjs` of the plugin runtime directory, bound at /fezz.
 *
 * Usage, inside the sandbox: `node /fezz/plugin-entry.mjs <native|process> <entry> <abi port>
 * [<egress port>]`, with the plugin's environment already set by the host (bwrap keeps it;
 * FEZZ_HOST is `http://127.0.0.1:<abi port>`) and:
 * - `/fn/abi.sock`: the host's ABI (the admin listener's routes, token-checked as ever);
 * - `/fn/egress.sock`, when the manifest grants outbound hosts: the host's egress proxy.
 *
 * The sandbox's network namespace has only `lo`. The plugin still reaches the ABI over HTTP at
 * `FEZZ_HOST`: this process listens on 127.0.0.1:<abi port> (the sandbox's own loopback) and
 * relays each connection to /fn/abi.sock, so existing plugins in any language work unchanged.
 * With an egress port, a second relay there is the plugin's `HTTPS_PROXY` (CONNECT only:
 * https:// URLs reach granted hosts; `NO_PROXY` keeps the ABI direct). The egress proxy may
 * still be starting when the sandbox starts: the relay connects to it per connection.
 *
 * Then: `native` loads the library in this process (plugin-host-main.ts; koffi's calls run
 * on worker threads, so the relay keeps running while the library blocks in a call);
 * `process` runs the executable as its child with stdin, stdout and stderr passed through
 * (request ids in, logs out) and exits with its exit code (128 + n when killed by signal n).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { constants } from 'node:os';
import { runPluginHost } from '../native/plugin-host-main.js';

const ABI_SOCKET = '/fn/abi.sock';
const EGRESS_SOCKET = '/fn/egress.sock';
/** Connections one relay holds at once (the host bounds its side too). */
const MAX_RELAY_CONNECTIONS = 256;

function fail(message: string, code: number): never {
  process.stderr.write(`fezz plugin sandbox: ${message}\n`);
  process.exit(code);
}

/** Listen on 127.0.0.1:`port` and pipe every connection to the unix socket `target`. */
function relay(target: string, port: number): Promise<void> {
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    const end = (): void => { client.destroy(); upstream.destroy(); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream).pipe(client);
  });
  server.maxConnections = MAX_RELAY_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
}

const [kind, entry, abiPort, egressPort] = process.argv.slice(2);
if ((kind !== 'native' && kind !== 'process') || entry === undefined || abiPort === undefined) fail('usage: plugin-entry.mjs <native|process> <entry> <abi port> [<egress port>]', 2);

await relay(ABI_SOCKET, Number(abiPort)).catch((err: Error) => fail(`ABI relay: ${err.message}`, 2));
if (egressPort !== undefined) await relay(EGRESS_SOCKET, Number(egressPort)).catch((err: Error) => fail(`egress relay: ${err.message}`, 2));

if (kind === 'native') {
  runPluginHost(entry!);
} else {
  const child = spawn(entry!, [], { stdio: ['inherit', 'inherit', 'inherit'], cwd: '/fn/app' });
  child.on('error', (err) => fail(`cannot run ${entry}: ${err.message}`, 127));
  child.on('exit', (code, signal) => {
    if (signal !== null) fail(`plugin killed by ${signal}`, 128 + (constants.signals[signal] ?? 0));
    process.exit(code ?? 1);
  });
}
