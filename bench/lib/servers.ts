/**
 * The server table: the peers (peers.ts), then fezz once per runtime. Each adapter starts a
 * fresh server in its own child process, bound to 127.0.0.1 on a free port (a fresh process
 * per pair, so each peak RSS belongs to one workload), and maps a workload to its URL path.
 *
 * fezz runs `isolate`, `sandbox` (isolate with `"isolation": "sandbox"`) and `inline` on the
 * workload's handler module (or the todos example),
 * and the plugin runtimes `process` (a Go executable) and `native` (a C `.so`) on the hello
 * plugins, which bench/build-plugins.sh compiles first and which serve `hello` and `json`.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { runTool } from "./child.js";
import { serveFlags, startFezz } from "./fezz-host.js";
import { pluginFunctionsDir, workloadFunctionsDir, type JsRuntime } from "./fezz-functions.js";
import { requireSandbox } from "./sandbox-probe.js";
import { BENCH_DIR, REPO_ROOT, serverEnv } from "./paths.js";
import { peers, type PeerAdapter } from "./peers.js";
import type { RunningServer, ServerAdapter, Workload } from "./types.js";

export { BASELINE } from "./peers.js";

/** A fezz adapter: where its functions come from, and how a workload is addressed. */
function fezz(
  name: string,
  pathFor: (workload: Workload) => string | null,
  functionsDir: (workload: Workload) => string,
  prepare?: () => Promise<void>,
  bin?: string,
  workers?: number,
): ServerAdapter {
  return {
    name,
    pathFor,
    async start(workload: Workload): Promise<RunningServer> {
      await prepare?.(); // e.g. compile the plugin; its failure is this start's failure
      const dir = functionsDir(workload);
      try {
        const running = await startFezz({
          label: name.replace(/\s+/g, "-"),
          dir,
          ...(bin !== undefined ? { bin } : {}),
          ...(workers !== undefined ? { workers } : {}),
        });
        return {
          url: running.url,
          pid: running.pid,
          stop: async () => {
            await running.stop();
            rmSync(dir, { recursive: true, force: true });
          },
        };
      } catch (error) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    },
  };
}

/** `/rpc/<id>` for a handler module (it answers any path); the example's own route otherwise. */
function jsPath(workload: Workload): string {
  return workload.fezzExample === undefined ? `/rpc/${workload.fezzId}` : workload.path;
}

/**
 * `fezz-isolate`, `fezz-inline`, and `fezz-sandbox`: the isolate runtime with
 * `"isolation": "sandbox"`, whose every start first checks (once per run) that bubblewrap can
 * start a sandbox here; when it cannot, the rows say `failed to start: sandbox unavailable: <why>`.
 */
function jsFezz(runtime: JsRuntime, bin?: string): ServerAdapter {
  return fezz(
    `fezz-${runtime}${bin !== undefined ? "@base" : ""}`,
    jsPath,
    (workload) => workloadFunctionsDir(workload, runtime),
    runtime === "sandbox" ? (bin === undefined ? requireSandbox : () => requireSandboxTier(bin)) : undefined,
    bin,
  );
}

/** Another build's sandbox row: only if that build has the sandbox tier (issue 11), then as ours. */
async function requireSandboxTier(bin: string): Promise<void> {
  if (!serveFlags(bin).has("--isolation")) throw new Error("this fezz build has no sandbox tier (no fezz serve --isolation)");
  await requireSandbox();
}

/**
 * The multicore suite's fezz rows: the workload's handler on `runtime` as the throughput row
 * serves it, in one host process (`workers` undefined, named `fezz-<runtime>`) or in
 * `fezz serve --workers <n>` (named `fezz-<runtime> x<n>`).
 */
export function jsFezzProcesses(runtime: "isolate" | "inline", workers?: number): ServerAdapter {
  return fezz(
    `fezz-${runtime}${workers !== undefined ? ` x${workers}` : ""}`,
    jsPath,
    (workload) => workloadFunctionsDir(workload, runtime),
    undefined,
    undefined,
    workers,
  );
}

/**
 * The plugin functions (hello-go, hello-c) serve two workloads from one build: `hello` at
 * `/rpc/<id>` (the plugin sees `/`) and `json` at `/rpc/<id>/json`; the rest are "not supported".
 */
function pluginFezz(name: string, id: string, language: "c" | "go", bin?: string): ServerAdapter {
  const pathFor = (workload: Workload): string | null =>
    workload.name === "hello" ? `/rpc/${id}` : workload.name === "json" ? `/rpc/${id}/json` : null;
  return fezz(`${name}${bin !== undefined ? "@base" : ""}`, pathFor, () => pluginFunctionsDir(id), buildPlugins(language), bin);
}

/**
 * `bench/build-plugins.sh <language>`, run at most once per bench run and language (the
 * first start of fezz-process or fezz-native waits for it; later starts reuse the outcome,
 * so a failed build is not retried). Rejects with the script's reason, e.g. a missing
 * toolchain, and the runner then reports "failed to start: <reason>".
 */
const builds = new Map<string, Promise<void>>();
function buildPlugins(language: "c" | "go"): () => Promise<void> {
  return () => {
    let build = builds.get(language);
    if (build === undefined) {
      process.stderr.write(`building the ${language} bench plugin (bench/build-plugins.sh ${language})\n`);
      build = runTool({
        label: `build-plugins-${language}`,
        command: "bash",
        args: [join(BENCH_DIR, "build-plugins.sh"), language],
        cwd: REPO_ROOT,
        env: serverEnv(),
      }).catch((error: unknown) => {
        const why = (error instanceof Error ? error.message : String(error)).replace(": bench/build-plugins: ", ": ");
        throw new Error(`bench/build-plugins.sh ${language} ${why}`);
      });
      builds.set(language, build);
    }
    return build;
  };
}

/** fezz's servers on `bin` (another build, named `<name>@base`), or on this checkout's build. */
function fezzServersOn(bin?: string): ServerAdapter[] {
  return [
    jsFezz("isolate", bin),
    jsFezz("sandbox", bin),
    jsFezz("inline", bin),
    pluginFezz("fezz-process", "hello-go", "go", bin),
    pluginFezz("fezz-native", "hello-c", "c", bin),
  ];
}

export const fezzServers: readonly ServerAdapter[] = fezzServersOn();

/**
 * `--base-bin`: `chosen` with each fezz server followed by the same server on the build at
 * `bin` (`<name>@base`), so the two builds run back to back in every round, next to the
 * baseline, and each gets its own ratio to it.
 */
export function withBaseBuild(chosen: readonly ServerAdapter[], bin: string): ServerAdapter[] {
  const base = fezzServersOn(bin);
  return chosen.flatMap((server) => {
    const twin = base.find((b) => b.name === `${server.name}@base`);
    return twin === undefined ? [server] : [server, twin];
  });
}

/**
 * Every server, in table and run order: the baseline, fezz, then the other peers. fezz's rows
 * run right next to the baseline in every round (rounds alternate direction), so the ratio of
 * each round pairs measurements taken within seconds of each other.
 */
export const servers: readonly ServerAdapter[] = [...peers.slice(0, 1), ...fezzServers, ...peers.slice(1)];

/** Whether `server` is one of fezz's own rows (the ones a smoke run must not fail). */
export function isFezz(name: string): boolean {
  return name.startsWith("fezz-");
}

/** The peer adapter named `name`, if it is one. */
export function peerNamed(name: string): PeerAdapter | undefined {
  return peers.find((p) => p.name === name);
}
