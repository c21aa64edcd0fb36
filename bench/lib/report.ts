/**
 * The throughput table: plain text (fixed-width columns, a failure spanning the numeric
 * columns) for stdout, and a grid for the Markdown report.
 */
import { cpus, loadavg } from "node:os";
import type { Grid } from "./grid.js";
import type { PairOutcome, PickRule, Row } from "./types.js";

/** Everything about a run that is not a row: printed above the table and kept in the JSON. */
export interface RunInfo {
  readonly loadGenerator: string;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly rounds: number;
  readonly pick: PickRule;
  readonly baseline: string;
  readonly startedAt: string;
  /** Folder of the servers' stdout/stderr logs; null when it was removed (every row was good). */
  readonly logDir: string | null;
  /** `--pin`: the CPUs (taskset lists) of the load generator and of the servers; null unpinned. */
  readonly pinned: { readonly generator: string; readonly servers: string } | null;
}

const HEADERS = ["server", "workload", "RPS", "MB/s", "p50 ms", "p99 ms", "peak RSS MB", "vs node-http", "notes"] as const;
/** Columns that hold numbers are right-aligned. */
const RIGHT = new Set([2, 3, 4, 5, 6, 7]);

/**
 * MiB/s of a row: what wrk read per second (headers, framing and partly received bodies
 * included, so a 1 s run of 1 MiB streams that all end after 1 s still shows its pace), else
 * RPS x the workload's body bytes; null without either.
 */
export function bodyMbPerS(row: Row): number | null {
  const m = row.picked?.measurement;
  if (m === undefined) return null;
  if (m.readMbPerS !== undefined) return m.readMbPerS;
  return row.bodyBytes === undefined ? null : (m.rps * row.bodyBytes) / 2 ** 20;
}

function mbPerSCell(row: Row): string {
  const v = bodyMbPerS(row);
  return v === null ? "-" : v >= 10 ? v.toFixed(0) : v.toFixed(2);
}

export function formatTable(rows: readonly Row[], info: RunInfo): string {
  const cells: string[][] = rows.map((row) => {
    const picked = row.picked;
    if (picked === null) return [row.server, row.workload, clipCell(whyNoResult(row.rounds))];
    const m = picked.measurement;
    return [
      row.server,
      row.workload,
      Math.round(m.rps).toLocaleString("en-US"),
      mbPerSCell(row),
      m.p50Ms.toFixed(2),
      m.p99Ms.toFixed(2),
      picked.peakRssMb === null ? "-" : picked.peakRssMb.toFixed(1),
      row.ratio === null ? "-" : `${row.ratio.toFixed(2)}x`,
      notes(row),
    ];
  });
  // A failure message spans the columns after `workload`, so it does not widen them.
  const widths = HEADERS.map((header, i) =>
    Math.max(header.length, ...cells.filter((c) => i < 2 || c.length === HEADERS.length).map((c) => c[i]?.length ?? 0)),
  );
  const line = (row: readonly string[]): string =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : RIGHT.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();

  const roundsText =
    info.rounds === 1 ? "1 round" : `${info.rounds} rounds, ${info.pick === "best" ? "best" : "median"} round shown`;
  const cpu = cpus();
  return [
    `throughput: ${info.loadGenerator}, ${info.connections} connections, ` +
      `${info.warmupS} s warm-up + ${info.durationS} s per pair, ${roundsText}${pinnedText(info)}`,
    `node ${process.version}, ${cpu.length} CPU (${cpu[0]?.model.trim() ?? "unknown"}), load average ${loadavg().map((n) => n.toFixed(2)).join(" ")}`,
    "",
    line(HEADERS),
    line(widths.map((w) => "-".repeat(w))),
    ...cells.map(line),
    "",
    `vs ${info.baseline} = median over rounds of RPS / ${info.baseline} RPS in the same round, same workload ` +
      `MB/s = MiB/s the load generator read (wrk: Transfer/sec; autocannon: RPS x body bytes).` +
      (info.logDir === null ? "" : ` Server logs: ${info.logDir}`),
  ].join("\n");
}

/** `, pinned (load generator on CPU 0, servers on CPU 1)` for a `--pin` run, else `""`. */
export function pinnedText(info: RunInfo): string {
  return info.pinned === null ? "" : `, pinned (load generator on CPU ${info.pinned.generator}, servers on CPU ${info.pinned.servers})`;
}

/** The throughput rows for the Markdown report; a row with no result has its reason in notes. */
export function throughputGrid(rows: readonly Row[]): Grid {
  return {
    headers: [...HEADERS],
    right: RIGHT,
    rows: rows.map((row) => {
      const picked = row.picked;
      if (picked === null) return [row.server, row.workload, "-", "-", "-", "-", "-", "-", whyNoResult(row.rounds)];
      const m = picked.measurement;
      return [
        row.server,
        row.workload,
        Math.round(m.rps).toLocaleString("en-US"),
        mbPerSCell(row),
        m.p50Ms.toFixed(2),
        m.p99Ms.toFixed(2),
        picked.peakRssMb === null ? "-" : picked.peakRssMb.toFixed(1),
        row.ratio === null ? "-" : `${row.ratio.toFixed(2)}x`,
        notes(row),
      ];
    }),
  };
}

/** The cell of a row that has no successful round: the first failure's stage and reason. */
export function whyNoResult(rounds: readonly PairOutcome[]): string {
  const failure = rounds.find((outcome) => outcome.kind === "failed");
  if (failure === undefined || failure.kind !== "failed") return "not supported";
  const label = { start: "failed to start", check: "wrong answer", load: "load failed" }[failure.stage];
  return `${label}: ${failure.reason}`;
}

/** Keeps a table cell readable; the full text is in the progress lines and the JSON. */
function clipCell(text: string, max = 160): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function notes(row: Row): string {
  const out: string[] = [];
  const m = row.picked?.measurement;
  const children = row.picked?.children ?? [];
  if (children.length > 0) {
    out.push(`children: ${children.map((child) => `${child.name} ${child.peakRssMb.toFixed(1)}`).join(", ")} MB`);
  }
  // Streamed bodies: the MB/s ratio, which a short run's RPS can miss (all streams ending together after the window).
  if (row.mbRatio != null && (row.bodyBytes ?? 0) >= 1024 * 1024) out.push(`MB/s vs node-http ${row.mbRatio.toFixed(2)}x`);
  if (m !== undefined && m.non2xx > 0) out.push(`${m.non2xx} non-2xx`);
  if (m !== undefined && m.errors > 0) out.push(`${m.errors} socket errors`);
  const failed = row.rounds.filter((outcome) => outcome.kind === "failed");
  if (failed.length > 0) out.push(`${failed.length}/${row.rounds.length} rounds failed`);
  if (row.rounds.length > 1) {
    const all = row.rounds.flatMap((o) => (o.kind === "ok" ? [Math.round(o.measurement.rps).toLocaleString("en-US")] : []));
    out.push(`rounds: ${all.join(" / ")}`);
  }
  return out.join("; ");
}

/** True when a row has no valid measurement (failed, or answered non-2xx under load). */
export function isBad(row: Row): boolean {
  if (row.rounds.every((outcome) => outcome.kind === "unsupported")) return false;
  return row.picked === null || row.picked.measurement.non2xx > 0 || row.picked.measurement.errors > 0;
}

/** A row as stored in the JSON report: the picked figures, plus every round. */
export function rowJson(row: Row): Record<string, unknown> {
  return {
    server: row.server,
    workload: row.workload,
    rps: row.picked?.measurement.rps ?? null,
    mbPerS: bodyMbPerS(row),
    mbRatio: row.mbRatio ?? null,
    p50Ms: row.picked?.measurement.p50Ms ?? null,
    p99Ms: row.picked?.measurement.p99Ms ?? null,
    peakRssMb: row.picked?.peakRssMb ?? null,
    children: row.picked?.children ?? [],
    ratio: row.ratio,
    pickedRound: row.picked?.round ?? null,
    error: row.picked === null ? whyNoResult(row.rounds) : null,
    rounds: row.rounds,
  };
}
