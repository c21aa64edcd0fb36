/**
 * The report's bar chart, written by hand as SVG (no chart library): RPS relative to the
 * baseline (raw node:http), one group of bars per workload, one bar per server, a dashed line
 * at 1.0. A server with no figure for a workload (failed, not supported, baseline missing)
 * gets a small "n/a" where its bar would be, so a gap is never silent.
 */
import type { Row } from "./types.js";

/** One colour per server, in table order; fezz's rows get the warm colours at the end. */
const PALETTE = [
  "#4e79a7", "#76b7b2", "#59a14f", "#9c755f", "#b07aa1", "#bab0ac",
  "#f28e2b", "#e15759", "#edc948", "#ff9da7", "#8cd17d", "#86bcb6",
];

const FONT = `font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"`;

export interface ChartOptions {
  readonly title: string;
  /** Servers in legend order. */
  readonly servers: readonly string[];
  readonly workloads: readonly string[];
  readonly baseline: string;
}

export function ratioChartSvg(rows: readonly Row[], options: ChartOptions): string {
  const { servers, workloads } = options;
  const colour = (i: number): string => {
    // Peers take the cool colours from the start, fezz rows the warm ones from index 6, each
    // counted among its own kind (6 peers and 5 fezz rows fit the 12 colours without a repeat).
    const name = servers[i] ?? "";
    const fezz = name.startsWith("fezz-");
    const rank = servers.slice(0, i).filter((s) => s.startsWith("fezz-") === fezz).length;
    const index = fezz ? 6 + rank : rank;
    return PALETTE[index % PALETTE.length] ?? "#888";
  };
  const ratioOf = (server: string, workload: string): number | null =>
    rows.find((r) => r.server === server && r.workload === workload)?.ratio ?? null;

  const barW = 14;
  const barGap = 2;
  const groupGap = 26;
  const left = 52;
  const right = 16;
  const top = 48;
  const plotH = 240;
  const legendRowH = 18;
  const legendCols = Math.max(1, Math.min(servers.length, 5));
  const legendRows = Math.ceil(servers.length / legendCols);
  const groupW = servers.length * (barW + barGap) - barGap;
  const width = Math.max(560, left + right + workloads.length * (groupW + groupGap));
  const labelsH = 34;
  const height = top + plotH + labelsH + legendRows * legendRowH + 16;

  const values = workloads.flatMap((w) => servers.map((s) => ratioOf(s, w))).filter((v): v is number => v !== null);
  const yMax = Math.max(1.5, Math.ceil((Math.max(1, ...values) * 1.08) / 0.5) * 0.5);
  const y = (v: number): number => top + plotH - (v / yMax) * plotH;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(options.title)}">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${left}" y="22" ${FONT} font-size="15" font-weight="600" fill="#222">${esc(options.title)}</text>`,
    `<text x="${left}" y="38" ${FONT} font-size="11" fill="#666">RPS / ${esc(options.baseline)} RPS, same workload and round (median of rounds); higher is better</text>`,
  );
  // Grid lines and y labels every 0.5.
  for (let v = 0; v <= yMax + 1e-9; v += 0.5) {
    const yy = y(v).toFixed(1);
    out.push(
      `<line x1="${left}" x2="${width - right}" y1="${yy}" y2="${yy}" stroke="#e6e6e6" stroke-width="1"/>`,
      `<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" ${FONT} font-size="11" fill="#666" text-anchor="end">${v.toFixed(1)}</text>`,
    );
  }
  // Bars.
  workloads.forEach((workload, g) => {
    const x0 = left + groupGap / 2 + g * (groupW + groupGap);
    servers.forEach((server, i) => {
      const x = x0 + i * (barW + barGap);
      const value = ratioOf(server, workload);
      if (value === null) {
        out.push(
          `<text x="${(x + barW / 2).toFixed(1)}" y="${(top + plotH - 4).toFixed(1)}" ${FONT} font-size="8" fill="#999" text-anchor="middle" transform="rotate(-90 ${(x + barW / 2).toFixed(1)} ${(top + plotH - 4).toFixed(1)})">n/a</text>`,
        );
        return;
      }
      const yy = y(value);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${barW}" height="${(top + plotH - yy).toFixed(1)}" fill="${colour(i)}"><title>${esc(`${server} ${workload}: ${value.toFixed(2)}x`)}</title></rect>`,
        `<text x="${(x + barW / 2).toFixed(1)}" y="${(yy - 3).toFixed(1)}" ${FONT} font-size="8" fill="#333" text-anchor="start" transform="rotate(-90 ${(x + barW / 2).toFixed(1)} ${(yy - 3).toFixed(1)})">${value.toFixed(2)}</text>`,
      );
    });
    out.push(
      `<text x="${(x0 + groupW / 2).toFixed(1)}" y="${top + plotH + 18}" ${FONT} font-size="12" fill="#222" text-anchor="middle">${esc(workload)}</text>`,
    );
  });
  // The baseline at 1.0 and the axis.
  out.push(
    `<line x1="${left}" x2="${width - right}" y1="${y(1).toFixed(1)}" y2="${y(1).toFixed(1)}" stroke="#444" stroke-width="1" stroke-dasharray="5 4"/>`,
    `<line x1="${left}" x2="${width - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#444" stroke-width="1"/>`,
  );
  // Legend.
  const legendTop = top + plotH + labelsH;
  const cellW = (width - left - right) / legendCols;
  servers.forEach((server, i) => {
    const lx = left + (i % legendCols) * cellW;
    const ly = legendTop + Math.floor(i / legendCols) * legendRowH;
    out.push(
      `<rect x="${lx.toFixed(1)}" y="${ly}" width="11" height="11" fill="${colour(i)}"/>`,
      `<text x="${(lx + 16).toFixed(1)}" y="${ly + 10}" ${FONT} font-size="11" fill="#222">${esc(server)}</text>`,
    );
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
