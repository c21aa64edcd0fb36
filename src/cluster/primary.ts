/**
 * The primary of a `--workers N` host (`fezz serve --workers N|auto`): N host processes
 * (worker.ts) share the public port, and the operator sees one host.
 *
 * - **The port.** Where Node has `reusePort` (22.12+, 23.1+) each process binds the port
 *   itself with SO_REUSEPORT and the kernel spreads connections; elsewhere (Node 20)
 *   node:cluster's round-robin: this process accepts and hands each connection to a host
 *   process in turn. Either way a connection belongs to one process for its life.
 * - **One admin API.** The admin listener (`--admin-port`, `--admin-socket`, the admin token)
 *   is this process's: `/admin/functions`, `/admin/stats` and `fezz list` merge what every
 *   process reports (aggregate.ts); `/metrics` is prom-client's aggregation of every
 *   process's registry (counters and histograms summed); `/admin/logs` merges their lines.
 *   A deploy or delete runs in one process (its checks, its start probe, the atomic swap in
 *   the shared functions directory), then every other process reloads before the answer.
 * - **Crashes.** A process that dies is started again (at once the first time, then with a
 *   back-off up to 30 s while it keeps dying); the connections it held are closed by the
 *   kernel (its clients, or their load balancer, see the connection end: nothing hangs), the
 *   others keep serving.
 * - **Shutdown.** SIGTERM/SIGINT: every process drains as one would alone (drain delay, then
 *   grace; host.ts close()), then the admin listener closes and this process exits 0.
 */
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { AdminServer } from '../admin/admin-server.js';
import { apiRoutes, type AdminApiHost, type HostSnapshot, type MetricsSource, type SecretChange, type WorkerInfo } from '../admin/api-routes.js';
import type { SecretInfo } from '../secrets/store.js';
import { resolveOptions, type HostOptions } from '../config/options.js';
import type { FunctionInfo } from '../host/host.js';
import type { LoadProblem } from '../registry/registry.js';
import type { LogLine } from '../observability/log-hub.js';
import type { ScheduledRun } from '../triggers/scheduler.js';
import { registerProcessMetrics } from '../observability/process-metrics.js';
import { createLogger } from '../observability/logger.js';
import { WorkerChannel, type EventMessage, type WorkerOp } from './ipc.js';
import { ConnectionBalancer } from './balancer.js';
import { mergeFunctions, mergeLogs, mergeProblems } from './aggregate.js';

/** Largest admin request body (deploy packages), in bytes: as a single host's. */
const ADMIN_MAX_BODY_BYTES = 64 * 1024 * 1024;
/** How long the primary waits for a process's answer to a read (snapshot, logs, metrics), in ms. */
const READ_TIMEOUT_MS = 5_000;
/** ...to opening the public port, in ms. */
const LISTEN_TIMEOUT_MS = 30_000;
/** ...to a deploy, delete or reload, in ms (each start in it is bounded by startTimeoutMs). */
const CHANGE_TIMEOUT_MS = 180_000;
/** ...to a manual scheduled run, in ms: the longest limits.timeoutMs (15 min) plus the longest start deadline (10 min), plus a margin. */
const SCHEDULED_RUN_TIMEOUT_MS = 26 * 60_000;
/** Back-off before starting a process that died again, in ms: doubled per crash in the last minute. */
const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 30_000;

/** A sysctl's value, or null where it cannot be read. */
function readSysctl(file: string): string | null {
  try { return readFileSync(file, 'utf8').trim(); } catch { return null; }
}

/** Whether this Node binds with SO_REUSEPORT (`listen({ reusePort })`: 22.12+, 23.1+). */
export function hasReusePort(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** `fezz serve --workers`: the value, or `auto` for every core (os.availableParallelism()). */
export interface PrimaryOptions {
  workers: number;
  /** The host options every process gets (the primary uses the admin ones). */
  host: HostOptions;
  graceMs: number;
  drainDelayMs: number;
  /** Runs after every process loaded, before the port opens (a source sync's first pass). */
  beforeListen?: (cluster: ClusterHost) => Promise<void>;
  /** Runs when shutdown begins (stop following a source). */
  onStop?: () => Promise<void>;
}

type SlotState = WorkerInfo['state'];

interface Slot {
  index: number;
  channel: WorkerChannel | null;
  pid: number;
  state: SlotState;
  restarts: number;
  /** When it last died, for the back-off (ms since the epoch). */
  deaths: number[];
  /** The change generation when it was started (a process started before a deploy reloads once serving). */
  generation: number;
  /** Its request count in the last snapshot. */
  requests: number;
}

/**
 * The processes of a `--workers` host, seen as one host by the admin API.
 */
export class ClusterHost implements AdminApiHost {
  readonly logger: Logger;
  readonly #slots: Slot[] = [];
  readonly #follows = new Map<number, { id: string; push(line: LogLine): void }>();
  #nextSub = 1;
  /** Bumped by every deploy and delete. */
  #generation = 0;
  #stopping = false;
  /** Where the processes listen: set once the port is bound. */
  #listen: { port: number; mode: 'reusePort' | 'handed' } | null = null;
  /** Accepts and hands out connections where Node has no reusePort. */
  #balancer: ConnectionBalancer | null = null;
  readonly #restartsTotal = { n: 0 };
  #onAllExited: (() => void) | null = null;
  #loaded = new Map<number, () => void>();
  #exitedEarly = new Map<number, (why: string) => void>();

  constructor(logger: Logger, workers: number) {
    this.logger = logger;
    for (let i = 1; i <= workers; i++) this.#slots.push({ index: i, channel: null, pid: 0, state: 'down', restarts: 0, deaths: [], generation: 0, requests: 0 });
  }

  /** Start every process; resolves once each has loaded its functions (not yet listening). @throws Error when one exits first. */
  async start(): Promise<void> {
    await Promise.all(this.#slots.map((s) => this.#fork(s)));
  }

  /**
   * Open the public port: with `reusePort`, the first process binds it (port 0: any free
   * one), then the others bind the same; without, this process accepts (balancer.ts) and
   * every process takes handed connections. @returns the public address.
   */
  async listen(port: number, host: string, reusePort: boolean): Promise<{ port: number; url: string }> {
    let bound = port;
    let rest = this.#slots;
    if (reusePort) {
      const [first] = this.#slots;
      const a = await first!.channel!.call<{ port: number; url: string }>('listen', [port, 'reusePort'], LISTEN_TIMEOUT_MS);
      first!.state = 'serving';
      bound = a.port;
      rest = this.#slots.slice(1);
    } else {
      this.#balancer = new ConnectionBalancer(() => this.#slots.filter((s) => s.state === 'serving' && s.channel !== null).map((s) => s.channel!.worker), this.logger);
      bound = await this.#balancer.listen(port, host);
    }
    this.#listen = { port: bound, mode: reusePort ? 'reusePort' : 'handed' };
    await Promise.all(rest.map(async (s) => {
      await s.channel!.call('listen', [bound, this.#listen!.mode], LISTEN_TIMEOUT_MS);
      s.state = 'serving';
    }));
    const shown = host.includes(':') ? `[${host}]` : host;
    return { port: bound, url: `http://${shown}:${bound}` };
  }

  /** Stop accepting public connections (balancer mode; with reusePort each process closes its own). */
  closeListener(): Promise<void> {
    return this.#balancer?.close() ?? Promise.resolve();
  }

  /** The live processes' pids. */
  pids(): number[] { return this.#slots.filter((s) => s.channel !== null).map((s) => s.pid); }

  #fork(slot: Slot): Promise<void> {
    slot.state = 'starting';
    slot.generation = this.#generation;
    const worker: Worker = cluster.fork({ FEZZ_WORKER_INDEX: String(slot.index) });
    slot.pid = worker.process.pid ?? 0;
    const channel = new WorkerChannel(worker, (e) => this.#event(slot, e));
    slot.channel = channel;
    const loaded = new Promise<void>((resolve, reject) => {
      this.#loaded.set(slot.index, resolve);
      this.#exitedEarly.set(slot.index, (why) => reject(new Error(why)));
    });
    worker.on('exit', (code, signal) => this.#exited(slot, worker, code, signal));
    worker.on('error', (err) => this.logger.warn({ err, worker: slot.index, pid: slot.pid }, 'host process channel error'));
    return loaded;
  }

  #event(slot: Slot, e: EventMessage): void {
    if (e.fezz === 'loaded') {
      slot.state = 'loaded';
      if (this.#stopping) { slot.channel?.tell('shutdown', []); return; }
      this.#exitedEarly.delete(slot.index);
      this.#loaded.get(slot.index)?.();
      this.#loaded.delete(slot.index);
      if (this.#listen !== null) void this.#rejoin(slot);
      return;
    }
    if (e.fezz === 'draining') {
      // SIGTERM to this process alone: no new connections for it; it is started again once it exits.
      slot.state = 'draining';
      return;
    }
    if (e.fezz === 'log') this.#follows.get(e.sub)?.push(e.line as LogLine);
  }

  /** A restarted process opens the port, follows what is followed, and catches up on changes made while it started. */
  async #rejoin(slot: Slot): Promise<void> {
    const channel = slot.channel!;
    try {
      await channel.call('listen', [this.#listen!.port, this.#listen!.mode], LISTEN_TIMEOUT_MS);
      slot.state = 'serving';
      for (const [sub, f] of this.#follows) channel.tell('follow', [sub, f.id]);
      if (slot.generation !== this.#generation) await channel.call('reload', [], CHANGE_TIMEOUT_MS);
      this.logger.info({ worker: slot.index, pid: slot.pid }, 'host process serving again');
    } catch (err) {
      this.logger.error({ err, worker: slot.index, pid: slot.pid }, 'a restarted host process could not open the port; stopping it');
      channel.worker.process.kill('SIGKILL');
    }
  }

  #exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.channel?.worker !== worker) return;
    const why = `host process ${slot.pid} exited (${signal ?? `code ${code}`})`;
    slot.channel.gone(why);
    slot.channel = null;
    this.#balancer?.workerGone(worker);
    slot.state = 'down';
    this.#exitedEarly.get(slot.index)?.(why);
    this.#exitedEarly.delete(slot.index);
    if (this.#stopping) {
      if (this.#slots.every((s) => s.channel === null)) this.#onAllExited?.();
      return;
    }
    if (this.#listen === null) return; // start-up failed: start() rejects
    const now = Date.now();
    slot.deaths = slot.deaths.filter((t) => now - t < 60_000);
    slot.deaths.push(now);
    const delay = slot.deaths.length <= 1 ? 0 : Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (slot.deaths.length - 2));
    this.logger.error({ worker: slot.index, pid: slot.pid, code, signal, restartInMs: delay }, `${why}; its connections are closed, the other processes keep serving; starting it again`);
    setTimeout(() => {
      if (this.#stopping) return;
      slot.restarts++;
      this.#restartsTotal.n++;
      this.#fork(slot).catch(() => undefined);
    }, delay).unref();
  }

  /** Processes that answer calls (loaded or serving). */
  #live(): Slot[] { return this.#slots.filter((s) => s.channel !== null && (s.state === 'loaded' || s.state === 'serving' || s.state === 'draining')); }

  async snapshot(): Promise<HostSnapshot> {
    const live = this.#live();
    const got = await Promise.allSettled(live.map((s) => s.channel!.call<HostSnapshot>('snapshot', [], READ_TIMEOUT_MS)));
    const fns: FunctionInfo[][] = [];
    const problems: (readonly LoadProblem[])[] = [];
    let pending = 0;
    got.forEach((r, i) => {
      if (r.status !== 'fulfilled') return;
      fns.push(r.value.functions);
      problems.push(r.value.problems);
      pending += r.value.pendingRequests;
      live[i]!.requests = r.value.functions.reduce((n, f) => n + f.stats.requests, 0);
    });
    const workers: WorkerInfo[] = this.#slots.map((s) => ({ index: s.index, pid: s.pid, requests: s.requests, restarts: s.restarts, state: s.state }));
    return { functions: mergeFunctions(fns), problems: mergeProblems(problems), pendingRequests: pending, workers };
  }

  /** The process that runs deploys and deletes: the first live one. @throws FezzError-less Error when none is. */
  #leader(): Slot {
    const s = this.#live()[0];
    if (s === undefined) throw new Error('no host process is up (all are restarting); try again');
    return s;
  }

  /** After a change in the leader: every other process reloads; failures are logged (their watchers retry). */
  async #reloadOthers(leader: Slot): Promise<void> {
    await Promise.all(this.#live().filter((s) => s !== leader).map((s) => s.channel!.call('reload', [], CHANGE_TIMEOUT_MS)
      .catch((err: unknown) => this.logger.error({ err, worker: s.index, pid: s.pid }, 'a host process did not reload after a change'))));
  }

  /**
   * A change of the shared functions directory or secrets store: `op` runs in the leader,
   * then every other process reloads, before the answer.
   */
  async #change<T>(op: WorkerOp, args: unknown[]): Promise<T> {
    const leader = this.#leader();
    const out = await leader.channel!.call<T>(op, args, CHANGE_TIMEOUT_MS);
    this.#generation++;
    await this.#reloadOthers(leader);
    return out;
  }

  deploy(pkg: unknown, opts: { replace?: boolean } = {}): Promise<{ key: string; unchanged?: boolean }> {
    return this.#change('deploy', [pkg, opts]);
  }

  remove(id: string, version: string): Promise<{ key: string }> {
    return this.#change('remove', [id, version]);
  }

  /** Any process reads the same store: the leader answers. */
  async listSecrets(id: string): Promise<SecretInfo[]> {
    return this.#leader().channel!.call<SecretInfo[]>('secrets', ['list', id], READ_TIMEOUT_MS);
  }

  /** The leader stores it and reloads; then every other process reloads (its store reads the changed file), as a deploy. */
  putSecret(id: string, name: string, value: Uint8Array): Promise<SecretChange & { updatedAt: string; created: boolean }> {
    return this.#change('secrets', ['put', id, name, Buffer.from(value).toString('base64')]);
  }

  deleteSecret(id: string, name: string): Promise<SecretChange> {
    return this.#change('secrets', ['delete', id, name]);
  }

  /**
   * `fezz trigger`: runs in the process that fires the crons (slot 1) when it is up, so a
   * manual run shares its process with the ticks; else in the first live one.
   */
  async runScheduled(id: string, cron: string | null): Promise<ScheduledRun> {
    const first = this.#slots[0]!;
    const slot = first.channel !== null && first.state === 'serving' ? first : this.#leader();
    return slot.channel!.call<ScheduledRun>('scheduled', [id, cron], SCHEDULED_RUN_TIMEOUT_MS);
  }

  async reload(): Promise<readonly LoadProblem[]> {
    const live = this.#live();
    if (live.length === 0) throw new Error('no host process is up (all are restarting); try again');
    const all = await Promise.all(live.map((s) => s.channel!.call<LoadProblem[]>('reload', [], CHANGE_TIMEOUT_MS)));
    return mergeProblems(all);
  }

  async recentLogs(id: string, n: number): Promise<LogLine[]> {
    const got = await Promise.allSettled(this.#live().map((s) => s.channel!.call<LogLine[]>('logs', [id, n], READ_TIMEOUT_MS)));
    return mergeLogs(got.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])), n);
  }

  followLogs(id: string, push: (line: LogLine) => void): () => void {
    const sub = this.#nextSub++;
    this.#follows.set(sub, { id, push });
    for (const s of this.#live()) s.channel!.tell('follow', [sub, id]);
    return () => {
      if (!this.#follows.delete(sub)) return;
      for (const s of this.#live()) s.channel!.tell('unfollow', [sub]);
    };
  }

  /** `/metrics`: every process's registry and the primary's own, aggregated by prom-client. */
  metricsSource(): MetricsSource {
    const own = new Registry();
    registerProcessMetrics(own);
    const gauge = (name: string, help: string, type: 'gauge' | 'counter', values: () => MetricValue<string>[]) => ({
      name, help, type, aggregator: 'sum' as const,
      get: async () => ({ name, help, type, aggregator: 'sum' as const, values: values() }),
      reset() {},
    });
    own.registerMetric(gauge('fezz_host_processes', 'Host processes of a --workers host, by state (starting, loaded, serving, down).', 'gauge', () => {
      const by = new Map<string, number>();
      for (const s of this.#slots) by.set(s.state, (by.get(s.state) ?? 0) + 1);
      return [...by].map(([state, value]) => ({ labels: { state }, value }));
    }) as never);
    own.registerMetric(gauge('fezz_host_process_restarts_total', 'Host processes started again after they died.', 'counter', () => [{ labels: {}, value: this.#restartsTotal.n }]) as never);
    return {
      contentType: own.contentType,
      metrics: async () => {
        const got = await Promise.allSettled(this.#live().map((s) => s.channel!.call<MetricObjectWithValues<MetricValue<string>>[]>('metrics', [], READ_TIMEOUT_MS)));
        const lists = [await own.getMetricsAsJSON(), ...got.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))];
        return AggregatorRegistry.aggregate(lists as never).metrics();
      },
    };
  }

  /**
   * Shut every process down (each drains as a single host does) and resolve when all exited.
   * A second call tells them to skip what is left of the drain delay.
   */
  stop(): Promise<void> {
    const again = this.#stopping;
    this.#stopping = true;
    for (const s of this.#slots) {
      // One still creating its host cannot take calls yet, and holds no connection: SIGTERM.
      if (s.state === 'starting') s.channel?.worker.process.kill('SIGTERM');
      else s.channel?.tell('shutdown', []);
    }
    if (again) return Promise.resolve();
    if (this.#slots.every((s) => s.channel === null)) return Promise.resolve();
    return new Promise<void>((resolve) => { this.#onAllExited = resolve; });
  }

  /** Kill every process still running (past the shutdown deadline). */
  kill(): void {
    for (const s of this.#slots) s.channel?.worker.process.kill('SIGKILL');
  }
}

/**
 * Run the primary of `fezz serve --workers N`: start the processes, open the port, serve the
 * admin API, and stop on SIGTERM/SIGINT. Resolves once serving.
 * @throws FezzError FEZZ_ERR_CONFIG_INVALID for bad options; Error when a process fails to start.
 */
export async function runPrimary(o: PrimaryOptions): Promise<{ url: string; adminUrl: string; cluster: ClusterHost; logger: Logger; token: string; adminSocket: string | null }> {
  const resolved = resolveOptions(o.host);
  const logger = createLogger({ level: resolved.logLevel, dev: resolved.dev, destination: resolved.logDestination });
  const reusePort = hasReusePort();
  // The processes run this same command line (process.argv) and know from node:cluster that
  // they are host processes. FEZZ_TOKEN was removed from the environment already.
  cluster.setupPrimary({ silent: false });
  if (reusePort && readSysctl('/proc/sys/net/ipv4/tcp_migrate_req') === '0') {
    logger.info('net.ipv4.tcp_migrate_req is 0: when a host process dies, the connections waiting in its SO_REUSEPORT queue are reset instead of moving to another process; set it to 1 for none to be lost (docs/scaling.md)');
  }
  const host = new ClusterHost(logger, o.workers);
  logger.info({ workers: o.workers, balancing: reusePort ? 'reusePort' : 'primary' }, `starting ${o.workers} host processes; ${reusePort
    ? 'each binds the public port with SO_REUSEPORT (the kernel spreads connections)'
    : 'this process accepts public connections and hands them out in turn (no reusePort before Node 22.12)'}`);
  try {
    await host.start();
  } catch (err) {
    host.kill();
    throw err;
  }
  if (o.beforeListen) {
    try {
      await o.beforeListen(host);
    } catch (err) {
      host.kill();
      throw err;
    }
  }
  const { url } = await host.listen(resolved.port, resolved.host, reusePort);
  const admin = new AdminServer({ host: resolved.adminHost, port: resolved.adminPort, token: resolved.token, logger, maxBodyBytes: ADMIN_MAX_BODY_BYTES, maxConnections: resolved.adminMaxConnections, socketPath: resolved.adminSocket });
  admin.add(apiRoutes(host, host.metricsSource()));
  await admin.listen();
  let stopping = false;
  let listenerTimer: NodeJS.Timeout | undefined;
  const stop = (signal: string): void => {
    if (stopping) {
      logger.info({ signal }, 'second signal: the host processes close their listeners now');
      clearTimeout(listenerTimer);
      void host.closeListener();
      void host.stop();
      return;
    }
    stopping = true;
    // Phase 1 (the drain delay) keeps accepting; phase 2 closes the listener (balancer mode:
    // this process's; with reusePort every process closes its own).
    listenerTimer = setTimeout(() => void host.closeListener(), o.drainDelayMs);
    logger.info({ signal, drainDelayMs: o.drainDelayMs, graceMs: o.graceMs }, 'shutting down: every host process drains its in-flight requests');
    setTimeout(() => {
      logger.error('host processes did not stop within the drain delay and grace period; killing them');
      host.kill();
      process.exit(1);
    }, o.drainDelayMs + o.graceMs + 3000).unref();
    void o.onStop?.().catch((err: unknown) => logger.error({ err }, 'stopping the source sync failed'));
    void host.stop().then(async () => {
      await admin.close();
      logger.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return { url, adminUrl: admin.url, cluster: host, logger, token: resolved.token, adminSocket: admin.socketPath };
}
