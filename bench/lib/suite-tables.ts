/**
 * The cold start, density, soak and targets tables, as grids (printed as text on stdout and
 * as Markdown in the report).
 */
import type { Grid } from "./grid.js";
import type { ColdStartResult } from "./suite-coldstart.js";
import type { DensityResult, DensitySample } from "./suite-density.js";
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

export function targetsGrid(targets: readonly TargetRow[]): Grid {
  return {
    headers: ["target", "goal", "measured", "met", "table"],
    right: new Set(),
    rows: targets.map((t) => [t.target, t.goal, t.measured, t.met === null ? "-" : t.met ? "yes" : "NO", t.where]),
  };
}
