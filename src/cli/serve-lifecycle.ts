/**
 * What `fezz serve` does around a host, in one process or as the primary of `--workers N`:
 * say at start-up what is in force (isolation, where the admin token is), and shut down in
 * two phases on SIGTERM/SIGINT (host.ts close(): the drain delay, then the grace).
 */
import type { Logger } from 'pino';
import type { FunctionInfo } from '../host/host.js';

/** One line per function version: its runtime, RPC path and routes (the latest version's). */
export function announceServing(logger: Logger, fns: readonly FunctionInfo[]): void {
  for (const f of fns) {
    const routes = f.latest ? f.routes.map((r) => `${r.method} ${r.path}`) : [];
    logger.info({ fn: f.key, runtime: f.runtime, rpc: `/rpc/${f.key}`, routes }, 'serving');
  }
}

/** Log which isolation is in force: threads are defense in depth, not a boundary. */
export async function announceIsolation(logger: Logger, isolation: 'thread' | 'sandbox', explicit: boolean): Promise<void> {
  if (isolation === 'sandbox') {
    const { probeSandbox } = await import('../runtime/sandbox/bwrap.js');
    const can = await probeSandbox();
    if (can.ok) logger.info(`isolation: every function (isolate, process, native) runs in a bubblewrap sandbox${explicit ? '' : ' (the default; --isolation thread runs trusted code as threads)'}`);
    else logger.error({ reason: can.reason }, `isolation: sandboxes cannot start here, so no function is served: ${can.reason}. Fix that, or run code you trust with --isolation thread (or --dev on a development machine)`);
  } else {
    const why = explicit ? '--isolation thread' : '--dev';
    logger.warn(`isolation: functions run as hardened worker threads (${why}) unless their manifest says "isolation": "sandbox"; threads are not a security boundary: run code you do not trust without ${why} (docs/security.md)`);
  }
}

/** Log where the admin token is (and warn when it came on the command line). */
export function announceToken(logger: Logger, o: { tokenFrom: string | undefined; tokenFile: string | undefined; adminSocket: string | null; adminUrl: string }): void {
  if (o.tokenFrom === 'cli') {
    logger.warn('the admin token was given with --token: any local user can read it in the process list; use --token-file or FEZZ_TOKEN');
  }
  if (o.tokenFile !== undefined) {
    // The CLI (fezz list, deploy, logs) reads the same file; plugins get tokens of their own.
    const where = o.adminSocket !== null ? `the admin socket ${o.adminSocket} (FEZZ_ADMIN_SOCKET)` : o.adminUrl;
    logger.info({ tokenFile: o.tokenFile }, `admin token for ${where} is in ${o.tokenFile} (FEZZ_TOKEN_FILE)`);
  }
}

/**
 * The shutdown of a serving process: the first call drains (`close(graceMs, drainDelayMs)`)
 * and exits 0 when done, 1 on failure or past `drainDelayMs + graceMs + 2 s`; a second call
 * (Ctrl-C twice) skips what is left of the drain delay.
 * @returns `stop(reason)`, to call from signal handlers.
 */
export function shutdownOnce(logger: Logger, close: (graceMs: number, drainDelayMs: number) => Promise<void>, graceMs: number, drainDelayMs: number): (reason: string) => void {
  let stopping = false;
  return (reason: string): void => {
    if (stopping) {
      logger.info({ reason }, 'second signal: closing the listener now');
      void close(graceMs, 0);
      return;
    }
    stopping = true;
    logger.info({ reason, drainDelayMs, graceMs }, 'shutting down: draining in-flight requests');
    // A backstop: whatever happens in close(), the process is gone shortly after the drain
    // delay and the grace.
    setTimeout(() => {
      logger.error({ drainDelayMs, graceMs }, 'shutdown did not finish within the drain delay and grace period; exiting now');
      process.exit(1);
    }, drainDelayMs + graceMs + 2000).unref();
    close(graceMs, drainDelayMs).then(() => {
      logger.info('stopped');
      process.exit(0);
    }, (err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
}
