/**
 * The quick benchmark: requests/s, p50/p99 and peak RSS of `/rpc/hello` (and its JSON twin)
 * on fezz through each runtime (isolate, inline, and the plugin runtimes process and native),
 * beside raw node:http answering the same bytes, all in one run, with ratios to node:http.
 * See bench/README.md.
 *
 *   node --import tsx bench/quick.ts [--smoke] [--servers node-http,fezz-inline] [--json out.json]
 */
import { rmSync } from "node:fs";
import { childLogDir, killAllChildren } from "./lib/child.js";
import { autocannonGenerator } from "./lib/load-autocannon.js";
import { findWrk, wrkGenerator } from "./lib/load-wrk.js";
import { parseQuickArgs, USAGE, type QuickOptions } from "./lib/args.js";
import { formatTable, isBad, writeJson, type RunInfo } from "./lib/report.js";
import { runMatrix } from "./lib/runner.js";
import { BASELINE, servers as allServers } from "./lib/servers.js";
import type { LoadGenerator } from "./lib/types.js";
import { workloads as allWorkloads } from "./lib/workloads.js";

// Never leave a server behind: on Ctrl-C, on SIGTERM, on a crash, and at exit.
process.on("exit", killAllChildren);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAllChildren();
    process.exit(signal === "SIGINT" ? 130 : 143);
  });
}

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

async function main(): Promise<number> {
  const options = parseQuickArgs(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const servers = select("server", allServers, options.servers);
  const workloads = select("workload", allWorkloads, options.workloads);
  const generator = chooseGenerator(options);
  const settings = {
    loadGenerator: generator.name,
    durationS: options.durationS,
    warmupS: options.warmupS,
    connections: options.connections,
    rounds: options.rounds,
    pick: options.pick,
    baseline: BASELINE,
    startedAt: new Date().toISOString(),
  };
  const pairs = servers.length * workloads.length * options.rounds;
  process.stderr.write(`running ${pairs} pair(s) with ${generator.name}\n`);

  let done = 0;
  const rows = await runMatrix({
    servers,
    workloads,
    generator,
    durationS: options.durationS,
    warmupS: options.warmupS,
    connections: options.connections,
    rounds: options.rounds,
    pick: options.pick,
    baseline: BASELINE,
    onOutcome: (server, workload, outcome) => {
      const what =
        outcome.kind === "ok"
          ? `${Math.round(outcome.measurement.rps).toLocaleString("en-US")} req/s, p99 ${outcome.measurement.p99Ms.toFixed(2)} ms`
          : outcome.kind === "failed"
            ? `failed (${outcome.stage}): ${outcome.reason}`
            : "not supported";
      process.stderr.write(`[${++done}/${pairs}] round ${outcome.round + 1} ${server} ${workload}: ${what}\n`);
    },
  });

  // Server logs only matter when something went wrong: keep them then, else clean up.
  const bad = rows.some(isBad);
  if (!bad) rmSync(childLogDir(), { recursive: true, force: true });
  const info: RunInfo = { ...settings, logDir: bad ? childLogDir() : null };
  process.stdout.write(`\n${formatTable(rows, info)}\n`);
  if (options.json !== undefined) {
    writeJson(options.json, rows, info);
    process.stderr.write(`wrote ${options.json}\n`);
  }
  return options.strict && bad ? 1 : 0;
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
