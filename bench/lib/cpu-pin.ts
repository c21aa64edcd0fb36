/**
 * `--pin`: the load generator on one CPU, the servers on the others (Linux `taskset`).
 *
 * On a small machine the generator and the server otherwise share every core, and the
 * scheduler's choices move a ratio by more than the differences being measured (2 cores:
 * raw node:http from 20k to 45k RPS between rounds, the same fezz build from 0.82x to 1.11x).
 * Pinned, every server gets the same CPUs in every round, which is the per-core comparison for
 * single-threaded servers. It is not neutral for servers that use more threads: a fezz isolate
 * (main thread + worker thread) then shares its CPUs instead of taking a second core.
 *
 * The bench process pins itself (all its threads) to the generator CPU, so wrk, which it
 * spawns, and autocannon, which runs inside it, land there; servers are started through
 * `taskset -c <server CPUs>`, and whatever they spawn (plugin processes) inherits that set.
 */
import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";

/** CPU lists in `taskset -c` form, e.g. `{ generator: "0", servers: "1-3" }`. */
export interface CpuPlan {
  readonly generator: string;
  readonly servers: string;
}

let serverCpus: string | null = null;

/**
 * Pin this process to CPU 0 and make {@link pinnedCommand} start servers on CPUs 1..n-1.
 * @throws Error when `taskset` is missing or the machine has fewer than 2 CPUs.
 */
export function pinCpus(): CpuPlan {
  const n = availableParallelism();
  if (n < 2) throw new Error(`--pin needs at least 2 CPUs; this machine has ${n}`);
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore", timeout: 5_000 });
  } catch {
    throw new Error("--pin needs taskset (util-linux), which is not on PATH");
  }
  const plan: CpuPlan = { generator: "0", servers: n === 2 ? "1" : `1-${n - 1}` };
  // -a: every thread of the process (autocannon's workers, libuv's pool), not only the main one.
  execFileSync("taskset", ["-a", "-p", "-c", plan.generator, String(process.pid)], { stdio: "ignore", timeout: 5_000 });
  serverCpus = plan.servers;
  return plan;
}

/** `command args` as it should be spawned: wrapped in `taskset -c <server CPUs>` once {@link pinCpus} ran. */
export function pinnedCommand(command: string, args: readonly string[]): { command: string; args: string[] } {
  if (serverCpus === null) return { command, args: [...args] };
  return { command: "taskset", args: ["-c", serverCpus, command, ...args] };
}
