/**
 * Command-line flags of bench/quick.ts. `--smoke` only changes defaults: an explicit flag
 * still wins.
 */
import { parseArgs } from "node:util";
import type { JsRuntime } from "./fezz-functions.js";
import type { PickRule } from "./types.js";

export const SUITES = ["throughput", "multicore", "coldstart", "density", "soak", "sse"] as const;
export type SuiteName = (typeof SUITES)[number];

export interface QuickOptions {
  /** Suites to run, in this order. @default all */
  readonly suites: readonly SuiteName[];
  readonly smoke: boolean;
  /** Seconds of measured load per pair. @default 10 (smoke: 1) */
  readonly durationS: number;
  /** Seconds of unmeasured load before each measurement (wrk rounds up to whole seconds). @default 1 (smoke: 0) */
  readonly warmupS: number;
  /** Concurrent connections. @default 64 */
  readonly connections: number;
  /** @default 2 (smoke: 1) */
  readonly rounds: number;
  /** @default "best" */
  readonly pick: PickRule;
  /** Server names to run, in table order; undefined: all (smoke: all but workerd, bun, deno unless `peers`). */
  readonly servers: readonly string[] | undefined;
  /** Include workerd, Bun and Deno in a smoke run. @default false */
  readonly peers: boolean;
  /**
   * Workload names to run; undefined: all (smoke: every server runs hello, node-http and
   * fezz-isolate every workload, smoke-plan.ts).
   */
  readonly workloads: readonly string[] | undefined;
  /** `auto`: wrk when it is on PATH, else autocannon. @default "auto" */
  readonly load: "auto" | "wrk" | "autocannon";
  /** wrk threads. @default 1 */
  readonly threads: number;
  /** Load generator on CPU 0, servers on the other CPUs (taskset). @default false */
  readonly pin: boolean;
  /**
   * Another build's `bin/fezz.js`: each chosen fezz throughput server also runs on it, as a row
   * `<name>@base` right after its own. @default undefined (none)
   */
  readonly baseBin: string | undefined;
  /**
   * A git ref of this repository: like `baseBin`, on fezz built at that commit (base-build.ts).
   * e.g. `fa687cf`, the last commit before issue 11, for its thread-tier "no regression" target.
   * @default undefined (none)
   */
  readonly baseRef: string | undefined;
  /** Multicore: host processes of the xN rows (node:cluster workers, `fezz serve --workers`). @default 2 */
  readonly multicoreWorkers: number;
  /** Multicore: the fezz runtime of its rows (`--isolation thread`, one instance per process). @default "isolate" */
  readonly multicoreRuntime: "isolate" | "inline";
  /** Cold start: functions per runtime. @default 25 (smoke: 3) */
  readonly coldstartFunctions: number;
  /** Cold start: runtimes (`sandbox`: isolate with `"isolation": "sandbox"`). @default ["isolate", "inline", "sandbox"] */
  readonly coldstartRuntimes: readonly JsRuntime[];
  /** Cold start: functions per runtime whose first requests go at once (the burst rows). @default 10 (smoke: 3) */
  readonly coldstartBurst: number;
  /** Density: the isolate tiers measured, each on its own host. @default ["isolate", "sandbox"] */
  readonly densityTiers: readonly ("isolate" | "sandbox")[];
  /** Density: warm-function counts. @default [1, 10, 100] (smoke: [1, 3]) */
  readonly densityLevels: readonly number[];
  /** Soak: requests in all. @default 2_000_000 (smoke: 20_000) */
  readonly soakRequests: number;
  /** Soak: the server. @default "fezz-isolate" */
  readonly soakServer: string;
  /** Soak: the workload. @default "hello" */
  readonly soakWorkload: string;
  /** SSE: concurrent clients. @default 1000 (smoke: 50) */
  readonly sseClients: number;
  /** SSE: events per client. @default 10 (smoke: 3) */
  readonly sseEvents: number;
  /** SSE: ms between two events. @default 100 */
  readonly sseIntervalMs: number;
  /** SSE: clients waiting for their response head at once. @default 100 */
  readonly sseOpen: number;
  /**
   * SSE: server names; undefined: node-http, fezz-isolate, fezz-inline, fezz-sandbox, bun,
   * deno (smoke: without bun and deno unless `peers`).
   */
  readonly sseServers: readonly string[] | undefined;
  /** Folder the report goes to. @default "bench/results" */
  readonly out: string;
  /** Report file names: `<name>.json`, `<name>.md`, `<name>.svg`. @default "latest" (smoke: "smoke") */
  readonly name: string;
  /** Also write the JSON here. */
  readonly json: string | undefined;
  /** Exit 1 when any row or suite failed or saw errors. @default false */
  readonly strict: boolean;
  readonly help: boolean;
}

export const USAGE = `Usage: npm run bench -- [flags]     (or: node --import tsx bench/quick.ts [flags])

  --suite a,b              throughput, multicore, coldstart, density, soak, sse (default all)
  --smoke                  every suite once, tiny sizes (CI); skips workerd, bun, deno unless --peers;
                           exits 1 only when a fezz row or suite fails
  --peers                  with --smoke: also run workerd, bun and deno (about 100 MB each to install)

 throughput
  --servers a,b            e.g. node-http,fastify,fezz-isolate                 (default all)
  --workloads a,b          hello, json, todos-get, todos-post, echo, table, stream-1m (default all;
                           smoke: hello on every server, every workload on node-http and fezz-isolate,
                           hello/echo/stream-1m on fezz-sandbox and fezz-inline)
  --duration <s>           seconds of measured load per (server, workload) pair (default 10; smoke: 1)
  --warmup <s>             seconds of unmeasured load before each measurement   (default 1; smoke: 0)
  --connections <n>        concurrent keep-alive connections                     (default 64)
  --rounds <n>             runs of every pair; odd rounds reverse the server order (default 2; smoke: 1)
  --pick best|median       which round a row shows                              (default best)
  --load <generator>       auto | wrk | autocannon; auto = wrk if on PATH       (default auto)
  --threads <n>            wrk threads                                           (default 1)
  --pin                    load generator on CPU 0, servers on the other CPUs (taskset; every suite)
  --base-bin <fezz.js>     also run each chosen fezz server on this build, as <name>@base (A/B)
  --base-ref <git ref>     the same, on fezz built at that commit (a git worktree in the temp dir)

 multicore (hello; node:http x1 and under node:cluster xN, fezz x1 and serve --workers N;
 --duration, --warmup, --connections, --rounds, --pick, --load as for throughput)
  --multicore-workers <n>  processes of the xN rows                            (default 2)
  --multicore-runtime <r>  isolate | inline: the fezz function's runtime       (default isolate)

 coldstart
  --coldstart-functions <n>  distinct functions per runtime                    (default 25; smoke: 3)
  --coldstart-runtimes a,b   isolate, inline, sandbox (isolate, "isolation": "sandbox") (default all three)
  --coldstart-burst <n>      functions per runtime cold-started at once, the burst rows (default 10; smoke: 3)

 density
  --density-levels a,b     warm-function counts                                (default 1,10,100; smoke: 1,3)
  --density-tiers a,b      isolate (worker threads), sandbox (bwrap processes), one host each (default both)

 soak
  --soak-requests <n>      requests in all                                     (default 2000000; smoke: 20000)
  --soak-server <name>     any server name                                     (default fezz-isolate)
  --soak-workload <name>   any workload name                                   (default hello)

 sse
  --sse-clients <n>        concurrent SSE clients                              (default 1000; smoke: 50)
  --sse-events <n>         events each client gets                             (default 10; smoke: 3)
  --sse-interval <ms>      ms between two events                               (default 100)
  --sse-open <n>           clients awaiting their response head at once        (default 100)
  --sse-servers a,b        node-http, fezz-isolate, fezz-inline, fezz-sandbox, hono, bun, deno
                           (default all but hono; smoke: bun and deno only with --peers)

 report
  --out <dir>              where the report goes                               (default bench/results)
  --name <base>            <base>.json, <base>.md, <base>.svg                  (default latest; smoke: smoke)
  --json <file>            also write the JSON here
  --strict                 exit 1 if any row or suite failed or saw non-2xx/socket errors
  --help                   this text
`;

export function parseQuickArgs(argv: readonly string[]): QuickOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      suite: { type: "string" },
      smoke: { type: "boolean", default: false },
      peers: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string" },
      rounds: { type: "string" },
      pick: { type: "string" },
      servers: { type: "string" },
      workloads: { type: "string" },
      load: { type: "string" },
      threads: { type: "string" },
      pin: { type: "boolean", default: false },
      "base-bin": { type: "string" },
      "base-ref": { type: "string" },
      "multicore-workers": { type: "string" },
      "multicore-runtime": { type: "string" },
      "coldstart-functions": { type: "string" },
      "coldstart-runtimes": { type: "string" },
      "coldstart-burst": { type: "string" },
      "density-tiers": { type: "string" },
      "density-levels": { type: "string" },
      "soak-requests": { type: "string" },
      "soak-server": { type: "string" },
      "soak-workload": { type: "string" },
      "sse-clients": { type: "string" },
      "sse-events": { type: "string" },
      "sse-interval": { type: "string" },
      "sse-open": { type: "string" },
      "sse-servers": { type: "string" },
      out: { type: "string" },
      name: { type: "string" },
      json: { type: "string" },
      strict: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const smoke = values.smoke === true;
  const suites = list(values.suite);
  const unknownSuites = (suites ?? []).filter((s) => !(SUITES as readonly string[]).includes(s));
  if (unknownSuites.length > 0) throw new TypeError(`--suite: unknown ${unknownSuites.join(", ")}; known: ${SUITES.join(", ")}`);
  const runtimes = list(values["coldstart-runtimes"]) ?? ["isolate", "inline", "sandbox"];
  const badRuntime = runtimes.find((r) => r !== "isolate" && r !== "inline" && r !== "sandbox");
  if (badRuntime !== undefined) throw new TypeError(`--coldstart-runtimes: ${JSON.stringify(badRuntime)} is not isolate, inline or sandbox`);
  const tiers = list(values["density-tiers"]) ?? ["isolate", "sandbox"];
  const badTier = tiers.find((t) => t !== "isolate" && t !== "sandbox");
  if (badTier !== undefined) throw new TypeError(`--density-tiers: ${JSON.stringify(badTier)} is not isolate or sandbox`);
  const levels = (list(values["density-levels"]) ?? (smoke ? ["1", "3"] : ["1", "10", "100"])).map((raw) =>
    integer("--density-levels", raw, 1),
  );
  return {
    suites: suites === undefined ? [...SUITES] : SUITES.filter((s) => suites.includes(s)),
    smoke,
    durationS: positive("--duration", values.duration, smoke ? 1 : 10, "a number of seconds > 0"),
    warmupS: nonNegative("--warmup", values.warmup, smoke ? 0 : 1),
    connections: integer("--connections", values.connections, 64),
    rounds: integer("--rounds", values.rounds, smoke ? 1 : 2),
    pick: oneOf("--pick", values.pick, ["best", "median"] as const, "best"),
    servers: list(values.servers),
    peers: values.peers === true,
    workloads: list(values.workloads),
    load: oneOf("--load", values.load, ["auto", "wrk", "autocannon"] as const, "auto"),
    threads: integer("--threads", values.threads, 1),
    pin: values.pin === true,
    baseBin: values["base-bin"],
    baseRef: values["base-ref"],
    multicoreWorkers: workerCount(values["multicore-workers"]),
    multicoreRuntime: oneOf("--multicore-runtime", values["multicore-runtime"], ["isolate", "inline"] as const, "isolate"),
    coldstartFunctions: integer("--coldstart-functions", values["coldstart-functions"], smoke ? 3 : 25),
    coldstartRuntimes: [...new Set(runtimes)] as JsRuntime[],
    coldstartBurst: integer("--coldstart-burst", values["coldstart-burst"], smoke ? 3 : 10),
    densityTiers: [...new Set(tiers)] as ("isolate" | "sandbox")[],
    densityLevels: [...new Set(levels)].sort((a, b) => a - b),
    soakRequests: integer("--soak-requests", values["soak-requests"], smoke ? 20_000 : 2_000_000),
    soakServer: values["soak-server"] ?? "fezz-isolate",
    soakWorkload: values["soak-workload"] ?? "hello",
    sseClients: integer("--sse-clients", values["sse-clients"], smoke ? 50 : 1000),
    sseEvents: integer("--sse-events", values["sse-events"], smoke ? 3 : 10),
    sseIntervalMs: integer("--sse-interval", values["sse-interval"], 100),
    sseOpen: integer("--sse-open", values["sse-open"], 100),
    sseServers: list(values["sse-servers"]),
    out: values.out ?? "bench/results",
    name: values.name ?? (smoke ? "smoke" : "latest"),
    json: values.json,
    strict: values.strict === true,
    help: values.help === true,
  };
}

function positive(flag: string, raw: string | undefined, fallback: number, expected: string): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`${flag} must be ${expected}, got ${JSON.stringify(raw)}`);
  return n;
}

function nonNegative(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new TypeError(`${flag} must be a number of seconds >= 0, got ${JSON.stringify(raw)}`);
  return n;
}

function integer(flag: string, raw: string | undefined, fallback: number): number {
  const n = positive(flag, raw, fallback, "a positive integer");
  if (!Number.isInteger(n)) throw new TypeError(`${flag} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** `--multicore-workers`: 2..64 processes (1 would compare a server with itself). */
function workerCount(raw: string | undefined): number {
  const n = integer("--multicore-workers", raw, 2);
  if (n < 2 || n > 64) throw new TypeError(`--multicore-workers must be an integer from 2 to 64, got ${JSON.stringify(raw)}`);
  return n;
}

function oneOf<T extends string>(flag: string, raw: string | undefined, allowed: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback;
  const found = allowed.find((value) => value === raw);
  if (found === undefined) throw new TypeError(`${flag} must be one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
  return found;
}

function list(raw: string | undefined): string[] | undefined {
  if (raw === undefined) return undefined;
  return raw.split(",").map((name) => name.trim()).filter(Boolean);
}
