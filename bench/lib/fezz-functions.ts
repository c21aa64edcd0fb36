/**
 * The functions fezz serves in the bench, written into fresh temporary functions dirs (under
 * the run's log folder) so the host's RSS holds nothing else and nothing it writes lands in
 * the repository:
 * - a workload's handler module from bench/handlers/, copied as the function's entry, with a
 *   generated fezz.json for the runtime under test;
 * - an example from examples/functions/ (todos) with its own code and routes, its manifest
 *   changed only in `runtime` and `instances`;
 * - a compiled plugin from bench/functions/ (hello-go, hello-c), copied whole.
 */
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { childLogDir } from "./child.js";
import { EXAMPLES_DIR, FUNCTIONS_DIR, HANDLERS_DIR } from "./paths.js";
import type { Workload } from "./types.js";

/**
 * The bench's name of a JavaScript tier: the `isolate` and `inline` runtimes, and `sandbox`,
 * which is the `isolate` runtime with `"isolation": "sandbox"` (each instance its own Node
 * process under bubblewrap, see docs/security.md "The sandbox tier in detail").
 */
export type JsRuntime = "isolate" | "inline" | "sandbox";

/** The manifest keys that select `tier`: `runtime`, and `isolation` for the sandbox. */
export function tierManifest(tier: JsRuntime): { runtime: "isolate" | "inline"; isolation?: "sandbox" } {
  return tier === "sandbox" ? { runtime: "isolate", isolation: "sandbox" } : { runtime: tier };
}

/** A manifest as the bench writes it (see DESIGN.md "The manifest"). */
export interface BenchManifest {
  readonly id: string;
  readonly version: string;
  readonly entry: string;
  readonly runtime: "isolate" | "inline";
  /** `"sandbox"`: each instance a separate process under bubblewrap (runtime `isolate` only). */
  readonly isolation?: "thread" | "sandbox";
  readonly routes?: readonly { method: string; path: string; handler?: string }[];
  readonly instances?: { min: number; max: number };
  readonly limits?: Readonly<Record<string, number>>;
  readonly idleTtlSeconds?: number;
}

/**
 * The isolate runtime (either isolation) gets one instance, started with the host and kept: the bench measures a
 * warm function (cold starts have their own suite), and the todos store must live in one
 * instance for a GET to find what a POST made.
 */
const ONE_WARM_INSTANCE = { min: 1, max: 1 } as const;

/** A new, empty functions dir. */
export function newFunctionsDir(label: string): string {
  return mkdtempSync(join(childLogDir(), `functions-${label}-`));
}

/** Writes `<dir>/<id>@<version>/` with `fezz.json` and the given files (name -> contents). */
export function writeFunction(dir: string, manifest: BenchManifest, files: Readonly<Record<string, string>>): void {
  const fnDir = join(dir, `${manifest.id}@${manifest.version}`);
  mkdirSync(fnDir, { recursive: true });
  writeFileSync(join(fnDir, "fezz.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(fnDir, name), text);
}

/** A functions dir holding only the function that serves `workload` on `runtime`. */
export function workloadFunctionsDir(workload: Workload, runtime: JsRuntime): string {
  const dir = newFunctionsDir(`${runtime}-${workload.fezzId}`);
  const instances = runtime !== "inline" ? { instances: ONE_WARM_INSTANCE } : {};
  const limits = workload.fezzLimits === undefined ? {} : { limits: workload.fezzLimits };
  if (workload.fezzExample !== undefined) {
    const name = workload.fezzExample;
    cpSync(join(EXAMPLES_DIR, name), join(dir, name), { recursive: true });
    const manifestFile = join(dir, name, "fezz.json");
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8")) as Record<string, unknown>;
    writeFileSync(manifestFile, `${JSON.stringify({ ...manifest, ...tierManifest(runtime), ...instances, ...limits }, null, 2)}\n`);
    return dir;
  }
  const fnDir = join(dir, `${workload.fezzId}@1.0.0`);
  mkdirSync(fnDir);
  copyFileSync(join(HANDLERS_DIR, workload.handler), join(fnDir, "index.mjs"));
  const manifest: BenchManifest = { id: workload.fezzId, version: "1.0.0", entry: "index.mjs", ...tierManifest(runtime), routes: [], ...instances, ...limits };
  writeFileSync(join(fnDir, "fezz.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return dir;
}

/**
 * A functions dir with every version of bench/functions/<id>@*, built artifacts included
 * (cpSync keeps file modes, so the executable bit the `process` runtime checks survives).
 */
export function pluginFunctionsDir(id: string): string {
  const versions = readdirSync(FUNCTIONS_DIR).filter((entry) => entry.startsWith(`${id}@`));
  if (versions.length === 0) throw new Error(`no bench/functions/${id}@<version> directory`);
  const dir = newFunctionsDir(id);
  for (const version of versions) cpSync(join(FUNCTIONS_DIR, version), join(dir, version), { recursive: true });
  return dir;
}
