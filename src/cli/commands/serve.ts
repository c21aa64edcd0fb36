/**
 * `fezz serve`: load a functions directory and serve it until SIGTERM/SIGINT, then shut
 * down gracefully (the drain delay: /healthz 503, connection: close; then stop accepting,
 * finish in-flight requests, exit 0).
 */
import cluster from 'node:cluster';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { SourceSync, SourceSyncOptions } from '../../fleet/source-sync.js';
import type { S3StoreOptions } from '../../fleet/s3-store.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { defaultTokenFile } from '../../config/token.js';
import { defaultSecretsDir, defaultSecretsKeyFile } from '../../secrets/key.js';
import { DRAIN_DELAY_SERVE_MS, type HostOptions } from '../../config/options.js';
import { announceIsolation, announceServing, announceToken, shutdownOnce } from '../serve-lifecycle.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return n;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** `--workers`: a positive integer, or `auto` (os.availableParallelism()). */
export function workersOption(value: string): number {
  if (value === 'auto') return os.availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError('expected "auto" or an integer from 1 to 256');
  return n;
}

function ms(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer (milliseconds)');
  return n;
}

/** A default path for help text: relative to the home directory as `~/…`. */
function shownDefault(f: () => string): string {
  const p = f();
  const home = os.homedir();
  return p.startsWith(home + path.sep) ? `~${p.slice(home.length)}` : p;
}

/** Take the static AWS keys out of the environment (fleet/s3-store.ts takeS3Credentials). */
async function sourceCredentials(): Promise<S3StoreOptions | undefined> {
  const { takeS3Credentials } = await import('../../fleet/s3-store.js');
  const credentials = takeS3Credentials();
  return credentials !== undefined ? { credentials } : undefined;
}

/** Start following `--source` (loaded on use: the AWS SDK is large). */
async function startSource(o: SourceSyncOptions): Promise<SourceSync> {
  const { startSourceSync } = await import('../../fleet/source-sync.js');
  return startSourceSync(o);
}

/** `fezz serve`. */
export function serveCommand(): Command {
  return hostCommand('serve', { description: 'serve the functions in a directory over HTTP', dev: false });
}

/**
 * The command that runs a host: `fezz serve`, and `fezz dev` (commands/dev.ts: the same
 * options and behaviour with dev mode always on, as `fezz serve --dev`).
 * @param name the command's name. @param o.dev dev mode whatever `--dev`/FEZZ_DEV say.
 */
export function hostCommand(name: string, o: { description: string; dev: boolean }): Command {
  return new Command(name)
    .description(o.description)
    .showHelpAfterError(`(run fezz ${name} --help for usage)`)
    .addOption(new Option('-d, --dir <path>', 'functions directory, one <id>@<version>/ per function').env('FEZZ_DIR').default('./functions'))
    .addOption(new Option('-p, --port <port>', 'public listener port (0 = any free port)').env('FEZZ_PORT').default(3000).argParser(port))
    .addOption(new Option('--host <address>', 'public listener address').env('FEZZ_LISTEN_HOST').default('127.0.0.1'))
    .addOption(new Option('--admin-port <port>', 'admin listener port: request-id ABI, admin API (0 = any free port)').env('FEZZ_ADMIN_PORT').default(3001).argParser(port))
    .addOption(new Option('--admin-host <address>', 'admin listener address').env('FEZZ_ADMIN_LISTEN_HOST').default('127.0.0.1'))
    .addOption(new Option('--admin-socket <path>', 'also serve the admin API on this unix socket (mode 0600); the admin token then works only there, the TCP listener keeps serving plugins').env('FEZZ_ADMIN_SOCKET'))
    .addOption(new Option('--token <token>', 'admin bearer token (prefer --token-file: a flag shows in the process list)').env('FEZZ_TOKEN'))
    .addOption(new Option('--token-file <path>', 'file with the admin token, mode 0600; created with a random token if missing (default: $XDG_RUNTIME_DIR/fezz/admin-token or ~/.fezz/admin-token)').env('FEZZ_TOKEN_FILE'))
    .addOption(new Option('--dev', o.dev ? 'dev mode (always on for fezz dev)' : 'dev mode: stacks in 500 bodies, debug logs, access log, .dev.vars read (fezz dev is the same)').env('FEZZ_DEV').default(o.dev))
    .addOption(new Option('--access-log', 'log one line per request').default(false))
    .addOption(new Option('--no-watch', 'do not watch the functions directory for changes (hot reload)'))
    .addOption(new Option('--cache-dir <path>', 'where bundles are cached (default: <tmpdir>/fezz-cache)'))
    .addOption(new Option('--grace <ms>', 'shutdown grace period for in-flight requests, in ms').default(10_000).argParser(ms))
    .addOption(new Option('--drain-delay <ms>', 'on SIGTERM, keep serving this long with /healthz answering 503 and connection: close on responses, before the listener closes (0 = close it at once)').env('FEZZ_DRAIN_DELAY').default(DRAIN_DELAY_SERVE_MS).argParser(ms))
    .addOption(new Option('--start-timeout <ms>', 'deadline for an instance to load its function, in ms').env('FEZZ_START_TIMEOUT').default(10_000).argParser(ms))
    .addOption(new Option('--isolation <tier>', 'weakest isolation allowed: "sandbox" runs every function (isolate, process, native) under bubblewrap; "thread" lets each manifest choose (trusted code only) (default: sandbox; with --dev: thread)').env('FEZZ_ISOLATION').choices(['thread', 'sandbox']))
    .addOption(new Option('--source <url>', 'follow an object store: s3://bucket/prefix holds the desired functions (fezz deploy --to); synced before the port opens, then every --source-poll ms (docs/fleet.md)').env('FEZZ_SOURCE'))
    .addOption(new Option('--source-poll <ms>', 'how often --source is checked for changes, in ms').env('FEZZ_SOURCE_POLL').default(1000).argParser(ms))
    .addOption(new Option('--workers <n>', 'host processes sharing the public port: an integer, or "auto" for one per core; each has its own isolates and plugins, the admin API covers them all (docs/scaling.md)').env('FEZZ_WORKERS').default(1).argParser(workersOption))
    .addOption(new Option('--no-schedule', 'do not fire cron triggers in this host (fezz trigger still runs them); for all but one host of a fleet (docs/triggers.md)'))
    .addOption(new Option('--trust-proxy <value>', 'believe x-forwarded-for/-proto from proxies in front: a hop count ("1": one load balancer), or a comma-separated list of addresses, CIDR ranges, "loopback", "private"; 0 = believe none (docs/operating.md)').env('FEZZ_TRUST_PROXY'))
    .addOption(new Option('--max-connections <n>', 'most open public connections (default: the fd limit minus a reserve)').env('FEZZ_MAX_CONNECTIONS').argParser(count))
    .addOption(new Option('--headers-timeout <ms>', 'time a client has to send its request head, in ms').env('FEZZ_HEADERS_TIMEOUT').default(20_000).argParser(ms))
    .addOption(new Option('--keep-alive-timeout <ms>', 'idle keep-alive connections close after this, in ms').env('FEZZ_KEEP_ALIVE_TIMEOUT').default(5_000).argParser(ms))
    .addOption(new Option('--body-timeout <ms>', 'a request body with no bytes for this long gets 408, in ms').env('FEZZ_BODY_TIMEOUT').default(30_000).argParser(ms))
    .addOption(new Option('--send-timeout <ms>', 'a client reading none of its response for this long is cut off, in ms').env('FEZZ_SEND_TIMEOUT').default(30_000).argParser(ms))
    .addOption(new Option('--secrets-dir <path>', `where functions' secrets are kept, encrypted, outside the functions directory (fezz secret put; docs/secrets.md) (default: ${shownDefault(defaultSecretsDir)})`).env('FEZZ_SECRETS_DIR'))
    .addOption(new Option('--secrets-key-file <path>', `file with the secrets key (32 bytes, hex or base64; mode 0600; created when the first secret is stored); or give the key itself in FEZZ_SECRETS_KEY (default: ${shownDefault(defaultSecretsKeyFile)})`).env('FEZZ_SECRETS_KEY_FILE'))
    .action(async (opts: { dir: string; port: number; host: string; adminPort: number; adminHost: string; adminSocket?: string; token?: string; tokenFile?: string; dev: boolean | string; accessLog: boolean; watch: boolean; cacheDir?: string; grace: number; drainDelay: number; startTimeout: number;
      isolation?: 'thread' | 'sandbox'; schedule: boolean; trustProxy?: string; workers: number; source?: string; sourcePoll: number; maxConnections?: number; headersTimeout: number; keepAliveTimeout: number; bodyTimeout: number; sendTimeout: number;
      secretsDir?: string; secretsKeyFile?: string }, cmd: Command) => {
      // The admin token must not stay where a function or plugin could read it: FEZZ_TOKEN
      // leaves the environment now (before anything is spawned); a token on the command line
      // is visible in the process list, so say so.
      delete process.env.FEZZ_TOKEN;
      const tokenFrom = cmd.getOptionValueSource('token');
      const tokenFile = opts.token === undefined ? (opts.tokenFile ?? defaultTokenFile()) : undefined;
      const dev = o.dev || opts.dev === true || opts.dev === '1' || opts.dev === 'true';
      // The secrets key in FEZZ_SECRETS_KEY leaves the environment before anything is spawned,
      // as the token does; except in the primary of a --workers host, which spawns no function
      // and whose host processes inherit its environment (each removes it in turn).
      const secretsKey = process.env.FEZZ_SECRETS_KEY || undefined;
      if (!(opts.workers > 1 && cluster.isPrimary)) delete process.env.FEZZ_SECRETS_KEY;
      if (secretsKey !== undefined && cmd.getOptionValueSource('secretsKeyFile') === 'cli') {
        throw new Error('give the secrets key once: FEZZ_SECRETS_KEY or --secrets-key-file, not both');
      }
      // Deny by default: production serves every function sandboxed; --dev (npm start) runs
      // threads, for code on the developer's own machine. Threads in production are explicit.
      const isolation = opts.isolation ?? (dev ? 'thread' : 'sandbox');
      const graceMs = opts.grace;
      const drainDelayMs = Number(opts.drainDelay);
      const options: HostOptions = {
        dir: opts.dir, port: Number(opts.port), host: opts.host, dev,
        adminPort: Number(opts.adminPort), adminHost: opts.adminHost, adminSocket: opts.adminSocket || undefined, token: opts.token, tokenFile,
        accessLog: opts.accessLog || dev, cacheDir: opts.cacheDir, shutdownGraceMs: graceMs, drainDelayMs, watch: opts.watch,
        startTimeoutMs: Number(opts.startTimeout), maxConnections: opts.maxConnections, isolation,
        headersTimeoutMs: Number(opts.headersTimeout), keepAliveTimeoutMs: Number(opts.keepAliveTimeout),
        bodyTimeoutMs: Number(opts.bodyTimeout), sendTimeoutMs: Number(opts.sendTimeout),
        ...(opts.trustProxy !== undefined ? { trustProxy: opts.trustProxy } : {}),
        schedule: opts.schedule,
        secretsDir: opts.secretsDir ?? defaultSecretsDir(), secretsKey,
        secretsKeyFile: secretsKey === undefined ? (opts.secretsKeyFile ?? defaultSecretsKeyFile()) : undefined,
      };
      // Object-store credentials leave the environment before anything is spawned, as the token does.
      const s3 = opts.source ? await sourceCredentials() : undefined;
      const follow = (logger: Logger, target: { deploy(pkg: unknown, o: { replace?: boolean }): Promise<{ key: string }>; remove(id: string, version: string): Promise<unknown> }) =>
        startSource({ source: opts.source!, dir: path.resolve(opts.dir), logger, pollMs: opts.sourcePoll, s3,
          deploy: (pkg, replace) => target.deploy(pkg, { replace }), remove: (id, version) => target.remove(id, version) });
      if (opts.workers > 1 && cluster.isWorker) {
        // A host process of a --workers host: this same command line, run by the primary.
        const { runWorker } = await import('../../cluster/worker.js');
        await runWorker(options, { graceMs, drainDelayMs });
        return;
      }
      if (opts.workers > 1) {
        const { runPrimary } = await import('../../cluster/primary.js');
        let sync: SourceSync | null = null;
        const p = await runPrimary({
          workers: opts.workers, host: options, graceMs, drainDelayMs,
          // The first sync runs once every process loaded, before the port opens.
          beforeListen: opts.source ? async (c) => { sync = await follow(c.logger, c); } : undefined,
          onStop: () => sync?.close() ?? Promise.resolve(),
        });
        const snap = await p.cluster.snapshot();
        p.logger.info({ url: p.url, admin: p.adminUrl, adminSocket: p.adminSocket ?? undefined, workers: p.cluster.pids(), functions: snap.functions.map((f) => f.key), problems: snap.problems.length }, `fezz listening on ${p.url} (${opts.workers} host processes)`);
        await announceIsolation(p.logger, isolation, opts.isolation !== undefined);
        announceToken(p.logger, { tokenFrom, tokenFile, adminSocket: p.adminSocket, adminUrl: p.adminUrl });
        announceServing(p.logger, snap.functions);
        return;
      }
      // Loaded here, not at the top: the other commands start faster without the host.
      const { createHost } = await import('../../host/host.js');
      const host = await createHost(options);
      let sync: SourceSync | null = null;
      if (opts.source) {
        // The first sync before the port opens: the first request already finds what the store holds.
        await host.prepare();
        sync = await follow(host.logger, host);
      }
      const { url } = await host.listen();
      const fns = host.functions();
      host.logger.info({ url, admin: host.adminUrl, adminSocket: host.adminSocket ?? undefined, functions: fns.map((f) => f.key), problems: host.problems.length }, `fezz listening on ${url}`);
      await announceIsolation(host.logger, isolation, opts.isolation !== undefined);
      announceToken(host.logger, { tokenFrom, tokenFile, adminSocket: host.adminSocket, adminUrl: host.adminUrl });
      announceServing(host.logger, fns);
      const stop = shutdownOnce(host.logger, async (g, d) => { await sync?.close(); await host.close(g, d); }, graceMs, drainDelayMs);
      // An unhandled rejection in the host's own thread (an inline function's stray promise)
      // is logged, not fatal: every other function keeps serving.
      process.on('unhandledRejection', (err) => host.logger.error({ err }, 'unhandled rejection in the host thread (an inline function?)'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
