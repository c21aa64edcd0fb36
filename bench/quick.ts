/**
 * The fezz benchmark suite (`npm run bench`): throughput against the peers (raw node:http,
 * Fastify, Hono, workerd, Bun, Deno) for every fezz runtime, multicore (node:cluster vs
 * `fezz serve --workers`), cold start, density, soak and server-sent events at 1,000 clients,
 * with the targets of issue 5 checked, tables on stdout and a JSON + Markdown + SVG report
 * under bench/results/. See bench/README.md.
 *
 *   node --import tsx bench/quick.ts [--smoke [--peers]] [--suite throughput,coldstart] [--servers node-http,fezz-inline]
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { childLogDir, killAllChildren } from "./lib/child.js";
import { pinCpus, type CpuPlan } from "./lib/cpu-pin.js";
import { autocannonGenerator } from "./lib/load-autocannon.js";
import { baseBuild } from "./lib/base-build.js";
import { findWrk, wrkGenerator } from "./lib/load-wrk.js";
import { parseQuickArgs, USAGE, type QuickOptions } from "./lib/args.js";
import { textGrid } from "./lib/grid.js";
import { ensurePeerPackages } from "./lib/peer-install.js";
import { REPO_ROOT } from "./lib/paths.js";
import { formatTable, isBad, type RunInfo } from "./lib/report.js";
import { resultsJson, writeResults, type BenchResults } from "./lib/results.js";
import { runMatrix } from "./lib/runner.js";
import { BASELINE, isFezz, peerNamed, servers as allServers, withBaseBuild } from "./lib/servers.js";
import { runColdStart, type ColdStartResult } from "./lib/suite-coldstart.js";
import { runDensity, type DensityResult } from "./lib/suite-density.js";
import { runMulticore, type MulticoreResult } from "./lib/suite-multicore.js";
import { runSoak, type SoakResult } from "./lib/suite-soak.js";
import { runSse, sseRowOk, type SseResult } from "./lib/suite-sse.js";
import { isUnavailable } from "./lib/sandbox-probe.js";
import {
  coldStartGrid,
  coldStartNote,
  densityGrid,
  densityNote,
  multicoreGrid,
  multicoreNote,
  soakGrid,
  sseGrid,
  sseNote,
  targetsGrid,
} from "./lib/suite-tables.js";
import { smokeIncludes } from "./lib/smoke-plan.js";
import { evaluateTargets } from "./lib/targets.js";
import type { LoadGenerator, PairOutcome, Row, ServerAdapter } from "./lib/types.js";
import { workloads as allWorkloads } from "./lib/workloads.js";

// Never leave a server behind: on Ctrl-C, on SIGTERM, on a crash, and at exit.
process.on("exit", killAllChildren);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAllChildren();
    process.exit(signal === "SIGINT" ? 130 : 143);
  });
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function select<T extends { name: string }>(kind: string, all: readonly T[], names: readonly string[] | undefined): T[] {
  if (names === undefined) return [...all];
  const unknown = names.filter((name) => !all.some((item) => item.name === name));
  if (unknown.length > 0) {
    throw new TypeError(`unknown ${kind} ${unknown.join(", ")}; known: ${all.map((item) => item.name).join(", ")}`);
  }
  return all.filter((item) => names.includes(item.name)); // table order, not flag order
}

function chooseGenerator(options: QuickOptions): LoadGenerator {
  if (options.load === "autocannon") return autocannonGenerator();
  const wrk = findWrk();
  if (wrk !== null) return wrkGenerator(wrk, options.threads);
  if (options.load === "wrk") throw new Error("--load wrk: wrk is not on PATH");
  return autocannonGenerator();
}

/** The throughput servers: all (or `--servers`); a smoke run leaves the 100 MB peers out unless `--peers`. */
function chooseServers(options: QuickOptions, skipped: string[]): ServerAdapter[] {
  if (options.baseBin !== undefined && options.baseRef !== undefined) throw new TypeError("--base-bin and --base-ref: give one");
  if (options.baseRef !== undefined) {
    return withBaseBuild(chooseBuildServers(options, skipped), baseBuild(options.baseRef, (line) => console.log(line)));
  }
  if (options.baseBin !== undefined) {
    if (!existsSync(options.baseBin)) throw new TypeError(`--base-bin: ${options.baseBin} does not exist`);
    return withBaseBuild(chooseBuildServers(options, skipped), resolve(options.baseBin));
  }
  return chooseBuildServers(options, skipped);
}

function chooseBuildServers(options: QuickOptions, skipped: string[]): ServerAdapter[] {
  const chosen = select("server", allServers, options.servers);
  if (options.servers !== undefined || !options.smoke || options.peers) return chosen;
  const heavy = chosen.filter((server) => peerNamed(server.name)?.heavy === true);
  if (heavy.length > 0) {
    skipped.push(
      `${heavy.map((s) => s.name).join(", ")} not run: --smoke leaves out the peers that are ~100 MB npm packages each; add --peers to run them.`,
    );
  }
  return chosen.filter((server) => !heavy.includes(server));
}

/** The servers the SSE suite can run (they serve bench/handlers/sse.mjs or its native twin). */
const SSE_SERVERS = ["node-http", "fezz-isolate", "fezz-inline", "fezz-sandbox", "hono", "bun", "deno"];
const SSE_DEFAULT = SSE_SERVERS.filter((name) => name !== "hono");

/** The SSE suite's servers: `--sse-servers`, else the default (smoke: bun and deno only with --peers). */
function chooseSseServers(options: QuickOptions, skipped: string[]): ServerAdapter[] {
  const names = options.sseServers ?? SSE_DEFAULT;
  const unknown = names.filter((name) => !SSE_SERVERS.includes(name));
  if (unknown.length > 0) throw new TypeError(`--sse-servers: unknown ${unknown.join(", ")}; known: ${SSE_SERVERS.join(", ")}`);
  const chosen = select("server", allServers, names);
  if (options.sseServers !== undefined || !options.smoke || options.peers) return chosen;
  const heavy = chosen.filter((server) => peerNamed(server.name)?.heavy === true);
  if (heavy.length > 0) skipped.push(`sse: ${heavy.map((s) => s.name).join(", ")} not run (--smoke without --peers).`);
  return chosen.filter((server) => !heavy.includes(server));
}

async function main(): Promise<number> {
  const options = parseQuickArgs(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const startedAt = new Date().toISOString();
  const skipped: string[] = [];
  const run = new Set(options.suites);
  const servers = run.has("throughput") ? chooseServers(options, skipped) : [];
  const workloads = select("workload", allWorkloads, options.workloads);
  // A smoke run without --workloads: every server runs hello, not every workload (smoke-plan.ts).
  const includes = options.smoke && options.workloads === undefined ? smokeIncludes : undefined;
  if (includes !== undefined && run.has("throughput")) {
    skipped.push("throughput: --smoke runs hello on every server, every workload on node-http and fezz-isolate, hello/echo/stream-1m on fezz-sandbox and fezz-inline; --workloads runs them all.");
  }
  const soakServer = select("server", allServers, [options.soakServer])[0]!;
  const soakWorkload = select("workload", allWorkloads, [options.soakWorkload])[0]!;
  const sseServers = run.has("sse") ? chooseSseServers(options, skipped) : [];
  for (const note of skipped) log(`bench: ${note}`);
  let pinned: CpuPlan | null = null;
  if (options.pin) {
    pinned = pinCpus();
    log(`bench: pinned: load generator on CPU ${pinned.generator}, servers on CPU ${pinned.servers}`);
  }
  log(`bench: suites ${options.suites.join(", ")}${options.smoke ? " (smoke)" : ""}`);

  // Install every peer package this run needs at once (one npm run); a failure is reported by
  // each peer that needed it, in its row, and the run goes on.
  const needed = new Set<string>();
  for (const server of [...(run.has("throughput") ? servers : []), ...(run.has("multicore") ? [peerNamed(BASELINE)!] : []), ...(run.has("soak") ? [soakServer] : []), ...sseServers]) {
    for (const name of peerNamed(server.name)?.packages ?? []) needed.add(name);
  }
  await ensurePeerPackages([...needed]).catch(() => undefined);

  const durationsS: Record<string, number> = {};
  const timed = async <T>(suite: string, body: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await body();
    } finally {
      durationsS[suite] = (performance.now() - t0) / 1000;
      log(`bench: ${suite} took ${durationsS[suite]!.toFixed(1)} s`);
    }
  };

  let throughput: BenchResults["throughput"] = null;
  if (run.has("throughput")) {
    const generator = chooseGenerator(options);
    const info: RunInfo = {
      loadGenerator: generator.name,
      durationS: options.durationS,
      warmupS: options.warmupS,
      connections: options.connections,
      rounds: options.rounds,
      pick: options.pick,
      baseline: BASELINE,
      startedAt,
      logDir: null,
      pinned,
    };
    const pairs = servers.reduce((n, s) => n + workloads.filter((w) => includes?.(s.name, w.name) !== false).length, 0) * options.rounds;
    log(`throughput: ${pairs} pair(s) with ${generator.name}`);
    let done = 0;
    const rows = await timed("throughput", () =>
      runMatrix({
        servers,
        workloads,
        generator,
        durationS: options.durationS,
        warmupS: options.warmupS,
        connections: options.connections,
        rounds: options.rounds,
        pick: options.pick,
        baseline: BASELINE,
        ...(includes !== undefined ? { includes } : {}),
        onOutcome: (server, workload, outcome) => log(`[${++done}/${pairs}] round ${outcome.round + 1} ${server} ${workload}: ${describe(outcome)}`),
      }),
    );
    throughput = { info, rows, servers: servers.map((s) => s.name), workloads: workloads.map((w) => w.name) };
    process.stdout.write(`\n${formatTable(rows, info)}\n`);
  }

  let multicore: MulticoreResult | null = null;
  if (run.has("multicore")) {
    const generator = chooseGenerator(options);
    const hello = select("workload", allWorkloads, ["hello"])[0]!;
    const pairs = 4 * options.rounds;
    log(`multicore: ${pairs} run(s) with ${generator.name}: node-http and fezz-${options.multicoreRuntime}, x1 and x${options.multicoreWorkers}`);
    let done = 0;
    multicore = await timed("multicore", () =>
      runMulticore({
        workers: options.multicoreWorkers,
        runtime: options.multicoreRuntime,
        workload: hello,
        generator,
        durationS: options.durationS,
        warmupS: options.warmupS,
        connections: options.connections,
        rounds: options.rounds,
        pick: options.pick,
        pinned,
        onOutcome: (server, workload, outcome) => log(`[${++done}/${pairs}] round ${outcome.round + 1} ${server} ${workload}: ${describe(outcome)}`),
      }),
    );
    process.stdout.write(`\nmulticore: ${multicoreNote(multicore)}\n\n${textGrid(multicoreGrid(multicore))}\n`);
  }

  let coldstart: ColdStartResult | null = null;
  if (run.has("coldstart")) {
    coldstart = await timed("coldstart", () =>
      runColdStart({ functions: options.coldstartFunctions, runtimes: options.coldstartRuntimes, burst: options.coldstartBurst }, log),
    );
    process.stdout.write(`\ncold start: ${coldStartNote(coldstart)}\n\n${textGrid(coldStartGrid(coldstart))}\n`);
  }

  let density: DensityResult[] | null = null;
  if (run.has("density")) {
    const tiers = options.densityTiers;
    density = await timed("density", async () => {
      const out: DensityResult[] = [];
      // Smoke: 250 ms before each RSS reading instead of 1 s (its figures are not for comparing).
      const settle = options.smoke ? { settleMs: 250 } : {};
      for (const tier of tiers) out.push(await runDensity({ levels: options.densityLevels, tier, ...settle }, log));
      return out;
    });
    for (const result of density) {
      process.stdout.write(`\ndensity (${result.tier}): ${densityNote(result)}\n\n${textGrid(densityGrid(result))}\n`);
    }
  }

  let soak: SoakResult[] | null = null;
  if (run.has("soak")) {
    const result = await timed("soak", () =>
      runSoak({ server: soakServer, workload: soakWorkload, requests: options.soakRequests, connections: options.connections }, log),
    );
    soak = [result];
    process.stdout.write(`\nsoak (autocannon, ${options.connections} connections):\n\n${textGrid(soakGrid(soak))}\n`);
  }

  let sse: SseResult | null = null;
  if (run.has("sse")) {
    sse = await timed("sse", () =>
      runSse(
        { servers: sseServers, clients: options.sseClients, events: options.sseEvents, intervalMs: options.sseIntervalMs, openConcurrency: options.sseOpen, rounds: options.rounds, pick: options.pick },
        log,
      ),
    );
    process.stdout.write(`\nsse: ${sseNote(sse)}\n\n${textGrid(sseGrid(sse))}\n`);
  }

  const targets = evaluateTargets({ baseline: BASELINE, throughput: throughput?.rows ?? null, coldstart, density, soak, sse, multicore });
  process.stdout.write(`\n${textGrid(targetsGrid(targets))}\n`);

  const problems = failures(throughput?.rows ?? [], multicore, coldstart, density, soak, sse);
  // Server logs only matter when something went wrong: keep them then, else clean up.
  const anyBad = problems.all.length > 0;
  if (throughput !== null) throughput = { ...throughput, info: { ...throughput.info, logDir: anyBad ? childLogDir() : null } };
  if (anyBad) log(`bench: server logs kept in ${childLogDir()}`);
  else rmSync(childLogDir(), { recursive: true, force: true });

  const results: BenchResults = {
    command: `bench/quick.ts ${process.argv.slice(2).join(" ")}`.trim(),
    startedAt,
    smoke: options.smoke,
    durationsS,
    skipped,
    throughput,
    multicore,
    coldstart,
    density,
    soak,
    sse,
    targets,
  };
  const files = writeResults(results, resolve(REPO_ROOT, options.out), options.name);
  if (options.json !== undefined) {
    writeFileSync(options.json, resultsJson(results));
    files.push(options.json);
  }
  process.stdout.write(`\nwrote ${files.join(", ")}\n`);
  for (const note of skipped) process.stdout.write(`note: ${note}\n`);

  if (options.smoke && problems.fezz.length > 0) {
    log(`bench: smoke failed: ${problems.fezz.join("; ")}`);
    return 1;
  }
  if (options.strict && anyBad) return 1;
  return 0;
}

/** One progress line's verdict on a pair: `31,200 req/s, p99 2.10 ms`, `failed (start): ...`, `not supported`. */
function describe(outcome: PairOutcome): string {
  if (outcome.kind === "ok") {
    return `${Math.round(outcome.measurement.rps).toLocaleString("en-US")} req/s, p99 ${outcome.measurement.p99Ms.toFixed(2)} ms`;
  }
  return outcome.kind === "failed" ? `failed (${outcome.stage}): ${outcome.reason}` : "not supported";
}

/** What went wrong: everything, and the part that is fezz's (what fails a smoke run). */
function failures(
  rows: readonly Row[],
  multicore: MulticoreResult | null,
  coldstart: ColdStartResult | null,
  density: readonly DensityResult[] | null,
  soak: readonly SoakResult[] | null,
  sse: SseResult | null,
): { all: string[]; fezz: string[] } {
  const all: string[] = [];
  const fezz: string[] = [];
  const add = (text: string, mine: boolean): void => {
    all.push(text);
    if (mine) fezz.push(text);
  };
  // A sandbox row where bubblewrap cannot run here ("sandbox unavailable: ...") is reported, but
  // is not fezz's failure: CI machines often forbid the user namespaces it needs.
  for (const row of rows) {
    if (isBad(row)) add(`throughput ${row.server} ${row.workload}`, isFezz(row.server) && !sandboxUnavailable(row));
  }
  for (const r of multicore?.rows ?? []) {
    if (isBad(r.row)) add(`multicore ${r.row.server}`, isFezz(r.row.server));
  }
  if (coldstart !== null) {
    if (coldstart.error !== null) add(`coldstart: ${coldstart.error}`, true);
    for (const row of coldstart.rows) {
      if (row.error !== null || row.first === null) add(`coldstart ${row.runtime} ${row.mode}: ${row.error ?? "no sample"}`, !isUnavailable(row.error));
    }
  }
  for (const d of density ?? []) if (d.error !== null) add(`density ${d.tier}: ${d.error}`, !isUnavailable(d.error));
  for (const s of soak ?? []) if (s.error !== null || s.ratio === null) add(`soak ${s.server}: ${s.error ?? "no ratio"}`, isFezz(s.server));
  if (sse !== null && sse.error !== null) add(`sse: ${sse.error}`, true);
  for (const row of sse?.rows ?? []) {
    if (sseRowOk(row)) continue;
    const why = row.error ?? `${row.result?.completed ?? 0}/${row.result?.clients ?? 0} clients completed`;
    add(`sse ${row.server}: ${why}`, isFezz(row.server) && !isUnavailable(row.error?.replace(/^failed to start: /, "")));
  }
  return { all, fezz };
}

/** Every round of the row failed to start because the sandbox tier cannot run on this machine. */
function sandboxUnavailable(row: Row): boolean {
  return row.rounds.length > 0 && row.rounds.every((o) => o.kind === "failed" && o.stage === "start" && isUnavailable(o.reason));
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    killAllChildren();
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);
