/**
 * The multicore suite (issue 13): does a server get faster with more processes on this
 * machine, and does fezz scale like raw node:http does?
 *
 * Four servers, the `hello` workload, in the same rounds (the throughput runner, so the same
 * check, warm-up, measurement, pick rule and round order):
 * - `node-http`: raw node:http in one process (servers/raw-node.mjs, the throughput baseline);
 * - `node-http xN`: the same handler in N node:cluster workers (servers/raw-node-cluster.mjs);
 * - `fezz-<runtime>`: `fezz serve` as the throughput row runs it (`--isolation thread`, one
 *   instance of the function);
 * - `fezz-<runtime> xN`: the same with `--workers N` (N host processes sharing the port, each
 *   with its own instance).
 * Run order node-http, fezz, fezz xN, node-http xN (odd rounds reversed), so each fezz row runs
 * right next to the node:http row it is compared with.
 *
 * Each row gets its RPS over the node:http row with as many processes (`vs node-http`) and,
 * for the xN rows, its RPS over its own x1 row (`scaling`): both paired by round, then the
 * median over rounds (runner.ts pairedRatio).
 */
import { availableParallelism, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { freePort, LOOPBACK, startChild } from "./child.js";
import type { CpuPlan } from "./cpu-pin.js";
import { REPO_ROOT, SERVERS_DIR, serverEnv } from "./paths.js";
import { BASELINE, peers } from "./peers.js";
import { pairedRatio, runMatrix } from "./runner.js";
import { jsFezzProcesses } from "./servers.js";
import type { LoadGenerator, PairOutcome, PickRule, Row, RunningServer, ServerAdapter, Workload } from "./types.js";

export interface MulticoreOptions {
  /** Processes of the xN rows (node:cluster workers, `fezz serve --workers`), >= 2. */
  readonly workers: number;
  /** The fezz function's runtime. */
  readonly runtime: "isolate" | "inline";
  /** The workload (hello). */
  readonly workload: Workload;
  readonly generator: LoadGenerator;
  /** Seconds of measured load per pair and round. */
  readonly durationS: number;
  /** Seconds of unmeasured load before each measurement. */
  readonly warmupS: number;
  readonly connections: number;
  readonly rounds: number;
  readonly pick: PickRule;
  /** `--pin`'s CPU plan, or null. */
  readonly pinned: CpuPlan | null;
  /** Called after each pair, for progress output. */
  readonly onOutcome?: (server: string, workload: string, outcome: PairOutcome) => void;
}

/** One row of the multicore table. */
export interface MulticoreRow {
  /** `node-http` or `fezz-<runtime>`. */
  readonly server: string;
  /** Processes serving the port: 1, or the suite's N. */
  readonly processes: number;
  /** The runner's row (every round; `ratio` there is against the one-process node-http). */
  readonly row: Row;
  /** RPS / RPS of the node-http row with as many processes, paired by round; null without a pair. */
  readonly vsNode: number | null;
  /** RPS / RPS of the same server's one-process row, paired by round (the xN rows); null otherwise. */
  readonly scaling: number | null;
  /**
   * Peak RSS of everything serving, MB (2^20 bytes): VmHWM of the server process plus that of
   * each descendant alive after the run (cluster workers, fezz's host processes, esbuild's
   * service); null without a measurement.
   */
  readonly treePeakMb: number | null;
}

export interface MulticoreResult {
  readonly workers: number;
  readonly runtime: "isolate" | "inline";
  readonly workload: string;
  /** CPUs of this machine (os.availableParallelism()). */
  readonly cpus: number;
  readonly cpuModel: string | null;
  readonly node: string;
  /** The machine's 1, 5 and 15 minute load averages when the suite started. */
  readonly loadavg: readonly number[];
  /** How the N processes share the port on this Node (fezz and the node:cluster server alike). */
  readonly portSharing: "SO_REUSEPORT" | "round-robin";
  readonly loadGenerator: string;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly rounds: number;
  readonly pick: PickRule;
  readonly pinned: CpuPlan | null;
  /** node-http, fezz, node-http xN, fezz xN. */
  readonly rows: readonly MulticoreRow[];
}

/** The runner's names of the four servers. */
export function multicoreNames(runtime: "isolate" | "inline", workers: number): {
  readonly node1: string;
  readonly nodeN: string;
  readonly fezz1: string;
  readonly fezzN: string;
} {
  return { node1: BASELINE, nodeN: `${BASELINE} x${workers}`, fezz1: `fezz-${runtime}`, fezzN: `fezz-${runtime} x${workers}` };
}

/** Whether this Node binds with `listen({ reusePort })` (22.12+, 23.1+), as src/cluster/primary.ts decides. */
export function hasReusePort(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * The table's rows from the runner's: one-process rows first, each followed by the fezz row of
 * the same size, with `vsNode` and `scaling` paired by round. A server missing from `rows`
 * (not run) gets no row; a row that never succeeded keeps null ratios.
 */
export function multicoreRows(rows: readonly Row[], runtime: "isolate" | "inline", workers: number): MulticoreRow[] {
  const names = multicoreNames(runtime, workers);
  const find = (name: string): Row | undefined => rows.find((r) => r.server === name);
  const node1 = find(names.node1);
  const nodeN = find(names.nodeN);
  const fezz1 = find(names.fezz1);
  const fezzN = find(names.fezzN);
  const ratio = (mine: Row, base: Row | undefined): number | null =>
    mine.picked === null || base === undefined ? null : pairedRatio(mine.rounds, base.rounds);
  const out: MulticoreRow[] = [];
  const add = (row: Row | undefined, server: string, processes: number, node: Row | undefined, single: Row | undefined): void => {
    if (row === undefined) return;
    out.push({
      server,
      processes,
      row,
      vsNode: ratio(row, node),
      scaling: single === undefined ? null : ratio(row, single),
      treePeakMb: treePeak(row),
    });
  };
  add(node1, names.node1, 1, node1, undefined);
  add(fezz1, names.fezz1, 1, node1, undefined);
  add(nodeN, names.node1, workers, nodeN, node1);
  add(fezzN, names.fezz1, workers, nodeN, fezz1);
  return out;
}

/** VmHWM of the picked round's server process plus its live descendants', MB; null without one. */
export function treePeak(row: Row): number | null {
  const picked = row.picked;
  if (picked === null || picked.peakRssMb === null) return null;
  return picked.peakRssMb + picked.children.reduce((sum, child) => sum + child.peakRssMb, 0);
}

/**
 * raw node:http in `workers` node:cluster workers (servers/raw-node-cluster.mjs), on a free
 * loopback port; ready once every worker listens.
 */
export function nodeCluster(workers: number): ServerAdapter {
  return {
    name: multicoreNames("isolate", workers).nodeN,
    async start(): Promise<RunningServer> {
      const port = await freePort();
      return startChild({
        label: `node-http-x${workers}`,
        command: process.execPath,
        args: [join(SERVERS_DIR, "raw-node-cluster.mjs"), "--workers", String(workers), "--port", String(port), "--host", LOOPBACK],
        cwd: REPO_ROOT,
        env: serverEnv(),
        url: `http://${LOOPBACK}:${port}`,
        readyPath: "/healthz",
      });
    },
  };
}

/** Runs the four servers for `options.rounds` rounds and returns the table. Never rejects for a server's failure: its row says why. */
export async function runMulticore(options: MulticoreOptions): Promise<MulticoreResult> {
  const baseline = peers.find((p) => p.name === BASELINE);
  if (baseline === undefined) throw new Error(`no ${BASELINE} peer`);
  // Run order: each fezz row next to the node:http row of its size (rounds alternate direction).
  const load = loadavg();
  const servers = [baseline, jsFezzProcesses(options.runtime), jsFezzProcesses(options.runtime, options.workers), nodeCluster(options.workers)];
  const rows = await runMatrix({
    servers,
    workloads: [options.workload],
    generator: options.generator,
    durationS: options.durationS,
    warmupS: options.warmupS,
    connections: options.connections,
    rounds: options.rounds,
    pick: options.pick,
    baseline: BASELINE,
    ...(options.onOutcome !== undefined ? { onOutcome: options.onOutcome } : {}),
  });
  return {
    workers: options.workers,
    runtime: options.runtime,
    workload: options.workload.name,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? null,
    node: process.version,
    loadavg: load,
    portSharing: hasReusePort() ? "SO_REUSEPORT" : "round-robin",
    loadGenerator: options.generator.name,
    durationS: options.durationS,
    warmupS: options.warmupS,
    connections: options.connections,
    rounds: options.rounds,
    pick: options.pick,
    pinned: options.pinned,
    rows: multicoreRows(rows, options.runtime, options.workers),
  };
}
