/**
 * The throughput pairs of a `--smoke` run (when `--workloads` is not given): a real check that
 * every server starts, answers and gets a number, and that every workload works, without the
 * whole server x workload matrix (7 workloads x 8 servers took ~200 s of CI on 2 cores).
 *
 * - the baseline (`node-http`) and `fezz-isolate` run every workload: every handler of the
 *   baseline, and every workload through fezz's default runtime, with a ratio;
 * - `fezz-sandbox` and `fezz-inline` run `hello`, `echo` and `stream-1m`: the paths that
 *   differ per tier (a plain answer, a 64 KiB request body, a streamed response);
 * - every other server (the plugin runtimes, the peers) runs `hello`.
 *
 * A `--base-bin` twin (`fezz-isolate@base`) runs what its own build's server runs. A full run
 * (no `--smoke`) runs every pair.
 */

/** Workloads per server name in a smoke run; `"all"`: every workload. Others: {@link SMOKE_DEFAULT}. */
export const SMOKE_WORKLOADS: Readonly<Record<string, "all" | readonly string[]>> = {
  "node-http": "all",
  "fezz-isolate": "all",
  "fezz-sandbox": ["hello", "echo", "stream-1m"],
  "fezz-inline": ["hello", "echo", "stream-1m"],
};

/** What a server not in {@link SMOKE_WORKLOADS} runs in a smoke run. */
export const SMOKE_DEFAULT: readonly string[] = ["hello"];

/**
 * Whether a smoke run measures `workload` on `server` (names as in the table, e.g.
 * `"fezz-inline"`, `"stream-1m"`; a `@base` suffix is ignored).
 */
export function smokeIncludes(server: string, workload: string): boolean {
  const own = server.endsWith("@base") ? server.slice(0, -"@base".length) : server;
  const plan = Object.hasOwn(SMOKE_WORKLOADS, own) ? SMOKE_WORKLOADS[own]! : SMOKE_DEFAULT;
  return plan === "all" || plan.includes(workload);
}
