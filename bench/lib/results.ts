/**
 * One run's results, all suites together, written as `<name>.json`, `<name>.md` (tables, the
 * chart, the targets) and `<name>.svg` (the RPS-ratio chart) under the output folder.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { basename, join } from "node:path";
import { ratioChartSvg } from "./chart-svg.js";
import { markdownGrid } from "./grid.js";
import { pinnedText, rowJson, throughputGrid, type RunInfo } from "./report.js";
import type { ColdStartResult } from "./suite-coldstart.js";
import type { DensityResult } from "./suite-density.js";
import type { MulticoreResult } from "./suite-multicore.js";
import type { SoakResult } from "./suite-soak.js";
import type { SseResult } from "./suite-sse.js";
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
} from "./suite-tables.js";
import type { TargetRow } from "./targets.js";
import type { Row } from "./types.js";

export interface BenchResults {
  /** The command line, e.g. `bench/quick.ts --smoke`. */
  readonly command: string;
  readonly startedAt: string;
  readonly smoke: boolean;
  /** Seconds each suite took, by name. */
  readonly durationsS: Readonly<Record<string, number>>;
  /** Peers left out of this run and why (e.g. smoke without --peers). */
  readonly skipped: readonly string[];
  readonly throughput: { readonly info: RunInfo; readonly rows: readonly Row[]; readonly servers: readonly string[]; readonly workloads: readonly string[] } | null;
  /** Issue 13: node:http and fezz in one process and in N; null when the suite did not run. */
  readonly multicore: MulticoreResult | null;
  readonly coldstart: ColdStartResult | null;
  /** One per tier measured (`isolate`, `sandbox`), each on its own host. */
  readonly density: readonly DensityResult[] | null;
  readonly soak: readonly SoakResult[] | null;
  readonly sse: SseResult | null;
  readonly targets: readonly TargetRow[];
}

export function machine(): Record<string, unknown> {
  const cpu = cpus();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model.trim() ?? null,
    memoryMb: Math.round(totalmem() / 2 ** 20),
    loadavg: loadavg(),
  };
}

export function resultsJson(results: BenchResults): string {
  const { throughput, multicore, ...rest } = results;
  return `${JSON.stringify(
    {
      ...rest,
      machine: machine(),
      throughput: throughput === null ? null : { info: throughput.info, rows: throughput.rows.map(rowJson) },
      multicore:
        multicore === null
          ? null
          : {
              ...multicore,
              rows: multicore.rows.map((r) => {
                // The runner's `ratio` is against one-process node-http: vsNode replaces it.
                const { server: _name, ratio: _ratio, ...row } = rowJson(r.row);
                return { server: r.server, processes: r.processes, vsNode: r.vsNode, scaling: r.scaling, treePeakMb: r.treePeakMb, ...row };
              }),
            },
    },
    null,
    2,
  )}\n`;
}

export function chartSvg(results: BenchResults): string | null {
  const t = results.throughput;
  if (t === null) return null;
  return ratioChartSvg(t.rows, {
    title: `fezz vs peers: requests/s relative to raw node:http`,
    servers: t.servers,
    workloads: t.workloads,
    baseline: t.info.baseline,
  });
}

export function resultsMarkdown(results: BenchResults, svgFile: string | null): string {
  const m = machine();
  const out: string[] = [
    `# fezz bench${results.smoke ? " (smoke: tiny sizes, not for comparing)" : ""}`,
    "",
    `Run ${results.startedAt} with \`${results.command}\`, on node ${String(m.node)}, ${String(m.cpus)} CPU (${String(m.cpuModel)}), ` +
      `${String(m.memoryMb)} MB. Suites: ${Object.entries(results.durationsS).map(([name, s]) => `${name} ${s.toFixed(0)} s`).join(", ")}. ` +
      "How each figure is taken: bench/README.md.",
    "",
  ];
  for (const note of results.skipped) out.push(`- ${note}`);
  if (results.skipped.length > 0) out.push("");
  out.push("## Targets (issues 5, 11, 12, 13)", "", markdownGrid(targetsGrid(results.targets)), "");
  const t = results.throughput;
  if (t !== null) {
    const i = t.info;
    out.push(
      "## Throughput",
      "",
      `${i.loadGenerator}, ${i.connections} connections, ${i.warmupS} s warm-up + ${i.durationS} s per pair, ` +
        `${i.rounds} round(s)${i.rounds > 1 ? `, ${i.pick} round shown` : ""}${pinnedText(i)}. vs ${i.baseline} = median over rounds of RPS / ${i.baseline} RPS in the same round, same workload.`,
      "",
    );
    if (svgFile !== null) out.push(`![RPS relative to raw node:http](${basename(svgFile)})`, "");
    out.push(markdownGrid(throughputGrid(t.rows)), "");
  }
  if (results.multicore !== null) {
    out.push("## Multicore (issue 13)", "", multicoreNote(results.multicore), "", markdownGrid(multicoreGrid(results.multicore)), "");
  }
  if (results.coldstart !== null) {
    out.push("## Cold start", "", coldStartNote(results.coldstart), "", markdownGrid(coldStartGrid(results.coldstart)), "");
  }
  for (const density of results.density ?? []) {
    out.push(`## Density (${density.tier})`, "", densityNote(density), "", markdownGrid(densityGrid(density)), "");
  }
  if (results.soak !== null) {
    out.push(
      "## Soak",
      "",
      "RSS = VmRSS of the server + its descendants, read at 10% and 50% of the responses (under load) and right after the last one. autocannon with an exact request count.",
      "",
      markdownGrid(soakGrid(results.soak)),
      "",
    );
  }
  if (results.sse !== null) out.push("## SSE", "", sseNote(results.sse), "", markdownGrid(sseGrid(results.sse)), "");
  return out.join("\n");
}

/** Writes `<out>/<name>.json`, `.md` and (with a throughput suite) `.svg`; returns the files. */
export function writeResults(results: BenchResults, outDir: string, name: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  const svg = chartSvg(results);
  const svgFile = svg === null ? null : join(outDir, `${name}.svg`);
  if (svg !== null && svgFile !== null) {
    writeFileSync(svgFile, svg);
    files.push(svgFile);
  }
  const jsonFile = join(outDir, `${name}.json`);
  writeFileSync(jsonFile, resultsJson(results));
  const mdFile = join(outDir, `${name}.md`);
  writeFileSync(mdFile, `${resultsMarkdown(results, svgFile)}\n`);
  files.unshift(jsonFile, mdFile);
  return files;
}
