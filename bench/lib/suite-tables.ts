/**
 * The cold start, density, soak and targets tables, as grids (printed as text on stdout and
 * as Markdown in the report).
 */
import type { Grid } from "./grid.js";
import type { ColdStartResult } from "./suite-coldstart.js";
import type { DensityResult, DensitySample } from "./suite-density.js";
import type { SoakResult } from "./suite-soak.js";
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

export function targetsGrid(targets: readonly TargetRow[]): Grid {
  return {
    headers: ["target", "goal", "measured", "met", "table"],
    right: new Set(),
    rows: targets.map((t) => [t.target, t.goal, t.measured, t.met === null ? "-" : t.met ? "yes" : "NO", t.where]),
  };
}
