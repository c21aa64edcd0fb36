/**
 * A table as headers plus rows of cells, rendered as fixed-width text (stdout) or as a
 * Markdown table (the report).
 */
export interface Grid {
  readonly headers: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Indexes of right-aligned (numeric) columns. */
  readonly right: ReadonlySet<number>;
}

export function textGrid(grid: Grid): string {
  const widths = grid.headers.map((header, i) => Math.max(header.length, ...grid.rows.map((row) => row[i]?.length ?? 0)));
  const line = (row: readonly string[]): string =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : grid.right.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(grid.headers), line(widths.map((w) => "-".repeat(w))), ...grid.rows.map(line)].join("\n");
}

export function markdownGrid(grid: Grid): string {
  const esc = (cell: string): string => cell.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const line = (row: readonly string[]): string => `| ${row.map(esc).join(" | ")} |`;
  const rule = grid.headers.map((_, i) => (grid.right.has(i) ? "---:" : "---"));
  return [line(grid.headers), `|${rule.join("|")}|`, ...grid.rows.map((row) => line(grid.headers.map((_, i) => row[i] ?? "")))].join("\n");
}
