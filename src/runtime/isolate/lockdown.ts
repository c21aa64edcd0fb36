/**
 * Runs inside a hardened isolate worker, before any function code (worker-entry.ts), and the
 * same in a sandbox process (src/runtime/sandbox/), where the sandbox is the boundary and this
 * is one more layer. In a thread it closes,
 * as far as a thread can, what Node's permission model leaves open to a worker and that
 * reaches beyond it, into the host process:
 * - `process.kill` / `process._kill`: a signal goes to the whole process, so
 *   `process.kill(process.pid)` from a worker stops the host;
 * - `process.report`: the report shows the host's environment (its secrets) and command line;
 * - `net.Server#listen({ fd })` / a handle, `dgram.Socket#bind({ fd })`: a worker shares the
 *   host's file descriptors, and could accept the connections meant for the host's listener;
 * - `os.setPriority` (of the host's pid) and `v8.setFlagsFromString` (V8 flags are
 *   process-wide: `--allow-natives-syntax` exposes V8 internals).
 *
 * Defense in depth, not a boundary: these are JavaScript patches that a route to Node's
 * internals would undo, and reading or writing an inherited descriptor directly
 * (`fs.readSync(fd)`, `new net.Socket({ fd })`) stays possible in a thread. The full list of
 * what is and is not covered is printed by test/security/thread-escape.test.ts.
 */
import { syncBuiltinESMExports } from 'node:module';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import v8 from 'node:v8';

/** An error like the permission model's own (`code: 'ERR_ACCESS_DENIED'`), naming the API. */
function denied(api: string): Error {
  return Object.assign(new Error(`Access to this API has been restricted: ${api} is not available to a function (fezz isolate)`), { code: 'ERR_ACCESS_DENIED', permission: 'fezz' });
}

function refuse(api: string): () => never {
  return () => { throw denied(api); };
}

/** Replace `obj[key]` for good (not writable, not configurable). */
function seal(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: false, configurable: false, enumerable: true });
}

/** Report header fields that say nothing about the host (no environment, command line, cwd, host name). */
const REPORT_HEADER_FIELDS = ['reportVersion', 'nodejsVersion', 'glibcVersionRuntime', 'glibcVersionCompiler', 'wordSize', 'arch', 'platform', 'componentVersions', 'release', 'osName', 'osRelease', 'osMachine'];

/** `process.report` with `getReport()` cut down to the harmless header fields (libraries read glibcVersionRuntime), and no writing. */
function safeReport(original: NodeJS.ProcessReport): object {
  return Object.freeze({
    getReport(): object {
      const full = original.getReport() as { header?: Record<string, unknown> };
      const header: Record<string, unknown> = {};
      for (const k of REPORT_HEADER_FIELDS) if (full.header?.[k] !== undefined) header[k] = full.header[k];
      return { header };
    },
    writeReport: refuse('process.report.writeReport'),
    directory: '',
    filename: '',
    compact: false,
    excludeNetwork: true,
    signal: 'SIGUSR2',
    reportOnFatalError: false,
    reportOnSignal: false,
    reportOnUncaughtException: false,
  });
}

/** Whether a `listen`/`bind` argument names a descriptor or a handle rather than a port or path. */
function namesDescriptor(arg: unknown): boolean {
  if (arg === null || typeof arg !== 'object') return false;
  const o = arg as Record<string, unknown>;
  if (o.fd !== undefined || o.handle !== undefined || o._handle !== undefined) return true;
  const proto = Object.getPrototypeOf(o) as unknown;
  return proto !== Object.prototype && proto !== null; // a native handle or a server/socket object
}

/** Apply every patch. Call once, first thing in the worker. */
export function lockDown(): void {
  seal(process, 'kill', refuse('process.kill'));
  seal(process, '_kill', refuse('process._kill'));
  seal(process, 'report', safeReport(process.report));
  seal(os, 'setPriority', refuse('os.setPriority'));
  seal(v8, 'setFlagsFromString', refuse('v8.setFlagsFromString'));

  const server = net.Server.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const listen = server.listen!;
  const listen2 = server._listen2!;
  seal(server, 'listen', function (this: net.Server, ...args: unknown[]) {
    if (namesDescriptor(args[0])) throw denied('net.Server#listen() on a file descriptor or handle');
    return listen.apply(this, args);
  });
  // listen() ends here (`setupListenHandle`), with the descriptor as 5th argument or a handle
  // set beforehand: the route for code that skips listen().
  seal(server, '_listen2', function (this: net.Server & { _handle: unknown }, ...args: unknown[]) {
    const fd = args[4];
    if ((typeof fd === 'number' && fd >= 0) || this._handle != null) throw denied('net.Server#listen() on a file descriptor or handle');
    return listen2.apply(this, args);
  });
  const udp = dgram.Socket.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const bind = udp.bind!;
  seal(udp, 'bind', function (this: dgram.Socket, ...args: unknown[]) {
    if (namesDescriptor(args[0])) throw denied('dgram.Socket#bind() on a file descriptor');
    return bind.apply(this, args);
  });
  // `import { kill } from 'node:process'` and the like see the patched exports too.
  syncBuiltinESMExports();
}
