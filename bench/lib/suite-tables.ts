/**
 * The cold start, density, soak and targets tables, as grids (printed as text on stdout and
 * as Markdown in the report).
 */
import type { Grid } from "./grid.js";
import type { ColdStartResult } from "./suite-coldstart.js";
import type { DensityResult, DensitySample } from "./suite-density.js";
import { whyNoResult } from "./report.js";
import type { MulticoreResult } from "./suite-multicore.js";
import type { SoakResult } from "./suite-soak.js";
import type { SseResult } from "./suite-sse.js";
import type { TargetRow } from "./targets.js";

const ms = (n: number | undefined): string => (n === undefined || Number.isNaN(n) ? "-" : n.toFixed(1));
const mb = (n: number | null | undefined): string => (n === null || n === undefined ? "-" : n.toFixed(1));

export function coldStartGrid(result: ColdStartResult): Grid {
  return {
    headers: ["runtime", "mode", "functions", "1st p50 ms", "1st p99 ms", "1st max ms", "2nd p50 ms", "2nd p99 ms", "notes"],
    right: new Set([2, 3, 4, 5, 6, 7]),
    rows: result.rows.map((row) => [
      row.runtime,
      row.mode ?? "spaced",
      String(row.functions),
      ms(row.first?.p50Ms),
      ms(row.first?.p99Ms),
      ms(row.first?.maxMs),
      ms(row.second?.p50Ms),
      ms(row.second?.p99Ms),
      row.error ?? "",
    ]),
  };
}

export function coldStartNote(result: ColdStartResult): string {
  if (result.error !== null) return `cold start: ${result.error}`;
  return (
    `One host, ${result.totalFunctions} functions, fresh --cache-dir: it bundled them all at load and was ready in ` +
    `${ms(result.hostStartMs ?? undefined)} ms. 1st = the request that starts the function's instance; 2nd = the next one. ` +
    `Client time to the last byte over a kept-alive connection. spaced: one function at a time, 250 ms apart; ` +
    `burst: every function of the row at once, one connection each. sandbox = isolate with "isolation": "sandbox" (a bwrap process per instance).`
  );
}

export function densityGrid(result: DensityResult): Grid {
  const sandbox = result.tier === "sandbox";
  const line = (label: string, s: DensitySample): string[] => [
    label,
    s.instances === null ? "-" : String(s.instances),
    mb(s.hostMb),
    mb(s.childrenMb),
    ...(sandbox ? [`${mb(s.sandboxMb)} (${s.sandboxProcesses})`] : []),
    mb(s.totalMb),
    mb(s.perFunctionMb),
  ];
  if (result.samples.length === 0 && result.error !== null) {
    return { headers: ["state", "notes"], right: new Set(), rows: [["-", result.error]] };
  }
  return {
    headers: ["state", "instances", "host MB", "children MB", ...(sandbox ? ["sandbox procs MB (count)"] : []), "total MB", "MB per warm fn"],
    right: new Set(sandbox ? [1, 2, 3, 4, 5, 6] : [1, 2, 3, 4, 5]),
    rows: [
      ...result.samples.map((s) => line(s.warm === 0 ? "fresh host" : `${s.warm} warm`, s)),
      ...(result.afterEviction === null ? [] : [line("after idle eviction", result.afterEviction)]),
    ],
  };
}

export function densityNote(result: DensityResult): string {
  const parts: string[] = [];
  const sandbox = result.tier === "sandbox";
  const what = sandbox ? "sandbox" : "isolate";
  if (result.perIsolateMb !== null) parts.push(`${result.perIsolateMb.toFixed(1)} MB per additional warm ${what} (total, slope between the lowest and highest level)`);
  if (result.perSandboxProcessMb !== null) parts.push(`of which ${result.perSandboxProcessMb.toFixed(1)} MB in the sandbox processes themselves`);
  if (result.returned !== null) parts.push(`eviction gave back ${(result.returned * 100).toFixed(0)}% of what the warm functions took`);
  if (result.evictionMs !== null) parts.push(`all evicted ${(result.evictionMs / 1000).toFixed(1)} s after the last request (idleTtlSeconds: 1)`);
  if (result.error !== null) parts.push(`error: ${result.error}`);
  const how = sandbox
    ? `Tier sandbox ("isolation": "sandbox"): every instance is a Node process under bwrap, a descendant of the host, so its memory is not in the host's VmRSS. ` +
      `RSS = VmRSS (/proc/<pid>/status) of the host + every descendant: esbuild's service and the sandbox processes ` +
      `(bwrap and the node inside it; the host's one pre-started spare is among them from the fresh host on).`
    : `Tier isolate: instances are worker threads, in the host's VmRSS. RSS = VmRSS of the host + its descendants (esbuild's service).`;
  return `${how} ${parts.join("; ")}.`;
}

export function soakGrid(results: readonly SoakResult[]): Grid {
  return {
    headers: ["server", "workload", "requests", "RPS", "p99 ms", "RSS 10% MB", "RSS 50% MB", "RSS 100% MB", "100%/10%", "notes"],
    right: new Set([2, 3, 4, 5, 6, 7, 8]),
    rows: results.map((r) => {
      const at = (share: number): string => mb(r.samples.find((s) => s.at === share)?.totalMb);
      const m = r.measurement;
      return [
        r.server,
        r.workload,
        (m?.requests ?? r.requests).toLocaleString("en-US"),
        m === null ? "-" : Math.round(m.rps).toLocaleString("en-US"),
        m === null ? "-" : m.p99Ms.toFixed(2),
        at(0.1),
        at(0.5),
        at(1),
        r.ratio === null ? "-" : r.ratio.toFixed(3),
        [r.peakRssMb === null ? "" : `server peak (VmHWM, no children) ${r.peakRssMb.toFixed(1)} MB`, r.error ?? ""].filter(Boolean).join("; "),
      ];
    }),
  };
}

export function sseGrid(result: SseResult): Grid {
  if (result.error !== null) return { headers: ["server", "notes"], right: new Set(), rows: [["-", result.error]] };
  return {
    headers: ["server", "clients done", "events", "p50 ms", "p99 ms", "max ms", "p99 once open ms", "all open s", "all done s", "peak RSS MB", "notes"],
    right: new Set([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    rows: result.rows.map((row) => {
      const r = row.result;
      if (r === null) return [row.server, "-", "-", "-", "-", "-", "-", "-", "-", "-", row.error ?? ""];
      const notes: string[] = [];
      if (row.children.length > 0) {
        notes.push(`server ${mb(row.hostPeakRssMb)} + children: ${row.children.map((c) => `${c.name} ${c.peakRssMb.toFixed(1)}`).join(", ")} MB`);
      }
      const failures = Object.entries(r.failures);
      if (failures.length > 0) notes.push(`failed: ${failures.map(([why, n]) => `${n} ${why}`).join(", ")}`);
      if (row.roundsP99Ms.length > 1) {
        notes.push(`p99 by round: ${row.roundsP99Ms.map((p, i) => `${p === null ? "failed" : p.toFixed(1)}${i === row.round ? "*" : ""}`).join(" / ")}`);
      }
      return [
        row.server,
        `${r.completed.toLocaleString("en-US")}/${r.clients.toLocaleString("en-US")}`,
        `${r.events.toLocaleString("en-US")}/${r.expectedEvents.toLocaleString("en-US")}`,
        ms(r.p50Ms),
        ms(r.p99Ms),
        ms(r.maxMs),
        r.openEvents === 0 ? "-" : ms(r.openP99Ms),
        (r.openMs / 1000).toFixed(2),
        (r.allDoneMs / 1000).toFixed(2),
        mb(row.peakRssMb),
        notes.join("; "),
      ];
    }),
  };
}

export function sseNote(result: SseResult): string {
  return (
    `${result.rounds === 1 ? "1 round" : `${result.rounds} rounds, ${result.pick === "best" ? "the lowest-p99" : "the median-p99"} round shown (*)`}; ` +
    `${result.clients.toLocaleString("en-US")} clients (raw sockets in the bench process, at most ${result.openConcurrency} awaiting their head at once), ` +
    `each ${result.events} events broadcast every ${result.intervalMs} ms by one ticker per server to every open stream. ` +
    `Latency = client receive time - the tick's time carried in the event (same clock; the server's fan-out loop counts), over every event; ` +
    `"once open": only the events sent after every client had its head (no connection set-up competing). ` +
    `all open / all done = from the first connect until every client had its head / until the last stream ended. ` +
    `Peak RSS = VmHWM of the server + its descendants (sandboxes). fezz: one instance, limits.concurrency ${Math.min(10_000, result.clients + 64)}.`
  );
}

const ratio = (n: number | null): string => (n === null ? "-" : `${n.toFixed(2)}x`);

/** The multicore table: one-process rows, then the xN rows, each fezz row under its node:http row. */
export function multicoreGrid(result: MulticoreResult): Grid {
  return {
    headers: ["server", "processes", "RPS", "p50 ms", "p99 ms", "peak RSS MB", "vs node-http", `scaling x${result.workers}/x1`, "notes"],
    right: new Set([1, 2, 3, 4, 5, 6, 7]),
    rows: result.rows.map((r) => {
      const picked = r.row.picked;
      if (picked === null) return [r.server, String(r.processes), "-", "-", "-", "-", "-", "-", whyNoResult(r.row.rounds)];
      const m = picked.measurement;
      const notes: string[] = [];
      if (picked.children.length > 0) {
        notes.push(`server ${mb(picked.peakRssMb)} + children: ${picked.children.map((c) => `${c.name} ${c.peakRssMb.toFixed(1)}`).join(", ")} MB`);
      }
      if (r.scaling !== null && r.scaling > r.processes * 1.1) {
        notes.push(`scaling above ${r.processes}.0: the machine was busier during the x1 run than during this one; use more --rounds`);
      }
      if (m.non2xx > 0) notes.push(`${m.non2xx} non-2xx`);
      if (m.errors > 0) notes.push(`${m.errors} socket errors`);
      const failed = r.row.rounds.filter((o) => o.kind === "failed").length;
      if (failed > 0) notes.push(`${failed}/${r.row.rounds.length} rounds failed`);
      if (r.row.rounds.length > 1) {
        notes.push(`rounds: ${r.row.rounds.flatMap((o) => (o.kind === "ok" ? [Math.round(o.measurement.rps).toLocaleString("en-US")] : [])).join(" / ")}`);
      }
      return [
        r.server,
        String(r.processes),
        Math.round(m.rps).toLocaleString("en-US"),
        m.p50Ms.toFixed(2),
        m.p99Ms.toFixed(2),
        mb(r.treePeakMb),
        ratio(r.vsNode),
        r.processes === 1 ? "" : ratio(r.scaling),
        notes.join("; "),
      ];
    }),
  };
}

/**
 * What the multicore table measured and how to read it on this machine: the run's set-up,
 * how the port is shared, the ratios, and why xN / x1 stays below N when the load generator
 * shares the CPUs with the servers (or when --pin leaves them fewer CPUs than processes).
 */
export function multicoreNote(result: MulticoreResult): string {
  const n = result.workers;
  const rounds = result.rounds === 1 ? "1 round" : `${result.rounds} rounds, ${result.pick} round shown`;
  const sharing =
    result.portSharing === "SO_REUSEPORT"
      ? `each process binds the port with SO_REUSEPORT and the kernel spreads the connections`
      : `the primary process accepts each connection and hands it to a worker in turn (node:cluster round-robin; fezz's primary does the same)`;
  const parts = [
    `${result.workload}, ${result.loadGenerator}, ${result.connections} connections, ${result.warmupS} s warm-up + ${result.durationS} s per server, ${rounds}; ` +
      `node ${result.node}, ${result.cpus} CPU (${result.cpuModel ?? "unknown"}), load average ${result.loadavg.map((n) => n.toFixed(2)).join(" ")} at the start.`,
    `x1 = one process: raw node:http (the throughput baseline) and \`fezz serve\` as the throughput rows run it (--isolation thread, the ${result.runtime} runtime, one instance). ` +
      `x${n} = the same node:http handler in ${n} node:cluster workers, and \`fezz serve --workers ${n}\` (${n} host processes, one instance each). ` +
      `Port sharing on this Node: ${sharing}.`,
    `vs node-http = RPS / RPS of the node:http row with as many processes; scaling = x${n} RPS / x1 RPS of the same server; both per round, median over rounds. ` +
      `peak RSS = VmHWM of the server process + every descendant (workers, esbuild's service).`,
  ];
  parts.push(...multicoreCaveats(result));
  return parts.join(" ");
}

/** The honest part of the note: why this machine cannot show a scaling of N (empty when it can). */
export function multicoreCaveats(result: Pick<MulticoreResult, "workers" | "cpus" | "pinned" | "runtime" | "loadGenerator">): string[] {
  const n = result.workers;
  const out: string[] = [];
  if (result.pinned !== null) {
    const serverCpus = countCpus(result.pinned.servers);
    out.push(
      `Pinned: every server, all ${n} processes included, shares CPU ${result.pinned.servers} (${serverCpus} CPU) while the load generator has CPU ${result.pinned.generator}` +
        (serverCpus < n ? `, so x${n} / x1 cannot exceed about ${serverCpus}.0: it measures the cost of ${n} processes on ${serverCpus} CPU, not scaling.` : "."),
    );
  } else if (result.cpus <= n) {
    out.push(
      `Read the scaling with care: the load generator (${result.loadGenerator}) runs on this ${result.cpus}-CPU machine and takes about one core while it drives the load, ` +
        `so the x${n} servers get roughly ${result.cpus - 1} core${result.cpus - 1 === 1 ? "" : "s"} plus what it leaves: x${n} / x1 cannot reach ${n}.0 here. ` +
        `node:http's own scaling in the same run is what this machine allows; compare fezz's with it, not with ${n}.0.`,
    );
  } else {
    out.push(`The load generator runs on this machine too and takes up to one of its ${result.cpus} CPUs.`);
  }
  if (result.runtime === "isolate") {
    out.push(`fezz isolate: each host process runs two busy threads (its event loop and the function's worker thread), so even x1 uses more than one core.`);
  }
  return out;
}

/** CPUs in a `taskset -c` list, e.g. `"1"` -> 1, `"1-3"` -> 3, `"0,2-3"` -> 3. */
export function countCpus(list: string): number {
  let count = 0;
  for (const part of list.split(",")) {
    const [from, to] = part.split("-").map((x) => Number(x.trim()));
    if (from === undefined || !Number.isInteger(from)) continue;
    count += to === undefined || !Number.isInteger(to) ? 1 : Math.max(0, to - from + 1);
  }
  return count;
}

export function targetsGrid(targets: readonly TargetRow[]): Grid {
  return {
    headers: ["target", "goal", "measured", "met", "table"],
    right: new Set(),
    rows: targets.map((t) => [t.target, t.goal, t.measured, t.met === null ? "-" : t.met ? "yes" : "NO", t.where]),
  };
}
