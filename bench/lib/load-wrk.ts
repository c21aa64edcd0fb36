/**
 * Load through wrk (a separate C process, so the load generator costs no JavaScript time).
 * Methods and bodies other than a plain GET go through bench/lib/wrk-request.lua, which reads
 * the method and a temporary body file from the environment.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { trackHelper } from "./child.js";
import { parseWrkOutput } from "./wrk-parse.js";
import type { LoadGenerator, LoadOptions, Measurement } from "./types.js";

const REQUEST_SCRIPT = fileURLToPath(new URL("./wrk-request.lua", import.meta.url));

/** The absolute path of `wrk` on PATH, or null. */
export function findWrk(): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "wrk");
    try {
      execFileSync(candidate, ["--version"], { stdio: "ignore", timeout: 5_000 });
      return candidate;
    } catch (error) {
      // wrk --version exits 1 after printing its banner: that still means it is there.
      if ((error as { status?: unknown }).status === 1) return candidate;
    }
  }
  return null;
}

/**
 * @param threads wrk threads (`-t`). One is the default: on a 2-core machine it leaves the
 *   other core to the server, and one wrk thread drives well over 100k req/s.
 */
export function wrkGenerator(wrk: string, threads = 1): LoadGenerator {
  return {
    name: `wrk (${threads} thread${threads === 1 ? "" : "s"})`,
    run: (options) => runWrk(wrk, threads, options),
  };
}

async function runWrk(wrk: string, threads: number, options: LoadOptions): Promise<Measurement> {
  const args = [
    `-t${Math.min(threads, options.connections)}`,
    `-c${options.connections}`,
    `-d${Math.max(1, Math.ceil(options.durationS))}s`, // wrk takes whole seconds only
    "--timeout", "10s",
    "--latency",
  ];
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push("-H", `${name}: ${value}`);
  let bodyDir: string | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (options.method !== "GET" || options.body !== undefined) {
    // bench/lib/wrk-request.lua reads the method and the body file from the environment.
    env.BENCH_WRK_METHOD = options.method;
    if (options.body !== undefined) {
      bodyDir = mkdtempSync(join(tmpdir(), "fezz-bench-wrk-"));
      env.BENCH_WRK_BODY_FILE = join(bodyDir, "body");
      writeFileSync(env.BENCH_WRK_BODY_FILE, options.body);
    }
    args.push("-s", REQUEST_SCRIPT);
  }
  args.push(options.url);
  try {
    const { code, stdout, stderr } = await run(wrk, args, env);
    if (code !== 0) throw new Error(`wrk exited with code ${code}: ${(stderr || stdout).trim().split("\n").at(-1) ?? ""}`);
    return parseWrkOutput(stdout);
  } finally {
    if (bodyDir !== undefined) rmSync(bodyDir, { recursive: true, force: true });
  }
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
    trackHelper(child);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
