/**
 * The server table. Each adapter starts a fresh server in its own child process, bound to
 * 127.0.0.1 on a free port (a fresh process per run, so each peak RSS belongs to one
 * workload), and maps a workload to its URL path. To add a peer (Fastify, Hono, Bun, Deno,
 * workerd...), put its program in bench/servers/ and add a row here.
 *
 * fezz runs once per runtime: `isolate`, `inline`, and the two plugin runtimes `process` (a Go
 * executable) and `native` (a C `.so`), whose functions bench/build-plugins.sh compiles first.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join, relative } from "node:path";
import { childLogDir, freePort, LOOPBACK, runTool, startChild } from "./child.js";
import type { RunningServer, ServerAdapter, Workload } from "./types.js";

/** The repository root (this file is bench/lib/servers.ts). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BENCH_DIR = join(REPO_ROOT, "bench");
const FUNCTIONS_DIR = join(BENCH_DIR, "functions");

/** The server every ratio is computed against. */
export const BASELINE = "node-http";

/** Environment for servers: the bench's own, minus anything that would change fezz's mode. */
function serverEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "production" };
  for (const name of Object.keys(env)) {
    if (name.startsWith("FEZZ_")) delete env[name];
  }
  delete env.NODE_OPTIONS; // e.g. a `--import tsx` meant for the bench, not for the server
  return { ...env, ...extra };
}

/** A Node program from bench/servers/ that takes `--port` and answers any path. */
function nodeProgram(name: string, file: string, pathFor: (workload: Workload) => string | null): ServerAdapter {
  return {
    name,
    pathFor,
    async start(): Promise<RunningServer> {
      const port = await freePort();
      return startChild({
        label: name,
        command: process.execPath,
        args: [join(BENCH_DIR, "servers", file), "--port", String(port), "--host", LOOPBACK],
        cwd: REPO_ROOT,
        env: serverEnv(),
        url: `http://${LOOPBACK}:${port}`,
        readyPath: "/healthz",
      });
    },
  };
}

/**
 * The real host: `node bin/fezz.js serve` (`BENCH_FEZZ_BIN=/path/to/fezz.js` runs another
 * build, e.g. a second checkout to compare branches). Each start serves a fresh copy of only
 * the function the workload addresses (taken from bench/functions/), so the server's peak RSS
 * holds nothing else and nothing the host writes lands in the repository.
 */
function fezz(name: string, pathFor: (workload: Workload) => string | null, prepare?: () => Promise<void>): ServerAdapter {
  return {
    name,
    pathFor,
    async start(workload: Workload): Promise<RunningServer> {
      const bin = process.env.BENCH_FEZZ_BIN ?? join(REPO_ROOT, "bin", "fezz.js");
      if (!existsSync(bin)) {
        throw new Error(`${bin.startsWith(REPO_ROOT) ? relative(REPO_ROOT, bin) : bin} does not exist yet`);
      }
      await prepare?.(); // e.g. compile the plugin; its failure is this start's failure
      const dir = copyFunctionFor(pathFor(workload) ?? workload.path);
      const port = await freePort();
      // Port 0 keeps the admin listener off 3001, where another host may be running.
      const admin = serveFlags(bin).has("--admin-port") ? ["--admin-port", "0"] : [];
      try {
        const running = await startChild({
          label: name,
          command: process.execPath,
          args: [bin, "serve", "--dir", dir, "--port", String(port), ...admin],
          cwd: REPO_ROOT,
          env: serverEnv({ FEZZ_LISTEN_HOST: LOOPBACK }),
          url: `http://${LOOPBACK}:${port}`,
          readyPath: "/healthz",
          readyTimeoutMs: 20_000,
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

const flagCache = new Map<string, Set<string>>();

/**
 * The long flags `fezz serve --help` lists, read once per binary, so the bench passes only
 * flags this build knows (an older build without an admin listener rejects `--admin-port`).
 * An empty set if the help cannot be read: the start then fails with the real reason.
 */
function serveFlags(bin: string): Set<string> {
  let flags = flagCache.get(bin);
  if (flags === undefined) {
    let help = "";
    try {
      help = execFileSync(process.execPath, [bin, "serve", "--help"], { encoding: "utf8", timeout: 20_000, cwd: REPO_ROOT });
    } catch {
      // leave empty
    }
    flags = new Set(help.match(/--[a-z][a-z0-9-]*/g) ?? []);
    flagCache.set(bin, flags);
  }
  return flags;
}

/**
 * Copies every version of the function `/rpc/<id>...` names into a new functions dir, built
 * artifacts included (a plugin's executable or `.so`; cpSync keeps file modes, so the
 * executable bit the `process` runtime checks survives).
 */
function copyFunctionFor(path: string): string {
  const id = /^\/rpc\/([a-z0-9][a-z0-9-]*)/.exec(path)?.[1];
  if (id === undefined) throw new Error(`${path} is not an /rpc/<id> path`);
  const versions = readdirSync(FUNCTIONS_DIR).filter((entry) => entry.startsWith(`${id}@`));
  if (versions.length === 0) throw new Error(`no bench/functions/${id}@<version> directory`);
  const dir = mkdtempSync(join(childLogDir(), `functions-${id}-`));
  for (const version of versions) cpSync(join(FUNCTIONS_DIR, version), join(dir, version), { recursive: true });
  return dir;
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

/**
 * The plugin functions (hello-go, hello-c) serve both workloads from one build: `hello` at
 * `/rpc/<id>` (the plugin sees `/`) and `json` at `/rpc/<id>/json` (it sees `/json`).
 */
function pluginPath(id: string): (workload: Workload) => string | null {
  return (workload) => (workload.name === "hello" ? `/rpc/${id}` : workload.name === "json" ? `/rpc/${id}/json` : null);
}

/** `/rpc/hello` -> `/rpc/hello-inline`, `/rpc/hello-json` -> `/rpc/hello-inline-json`. */
function inlinePath(workload: Workload): string {
  return workload.path.replace(/^\/rpc\/hello/, "/rpc/hello-inline");
}

export const servers: readonly ServerAdapter[] = [
  nodeProgram(BASELINE, "raw-node.mjs", (workload) => (workload.name === "json" ? "/json" : "/")),
  fezz("fezz-isolate", (workload) => workload.path),
  fezz("fezz-inline", inlinePath),
  fezz("fezz-process", pluginPath("hello-go"), buildPlugins("go")),
  fezz("fezz-native", pluginPath("hello-c"), buildPlugins("c")),
];
