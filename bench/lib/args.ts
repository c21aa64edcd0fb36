/**
 * Command-line flags of bench/quick.ts. `--smoke` only changes defaults: an explicit
 * `--duration` or `--rounds` still wins.
 */
import { parseArgs } from "node:util";
import type { PickRule } from "./types.js";

export interface QuickOptions {
  /** Seconds of measured load per pair. @default 10 (smoke: 1) */
  readonly durationS: number;
  /** Seconds of unmeasured load before each measurement (wrk rounds up to whole seconds). @default 1 */
  readonly warmupS: number;
  /** Concurrent connections. @default 64 */
  readonly connections: number;
  /** @default 2 (smoke: 1) */
  readonly rounds: number;
  /** @default "best" */
  readonly pick: PickRule;
  /** Server names to run, in table order; undefined: all. */
  readonly servers: readonly string[] | undefined;
  /** Workload names to run; undefined: all. */
  readonly workloads: readonly string[] | undefined;
  /** `auto`: wrk when it is on PATH, else autocannon. @default "auto" */
  readonly load: "auto" | "wrk" | "autocannon";
  /** wrk threads. @default 1 */
  readonly threads: number;
  /** Also write the results here. */
  readonly json: string | undefined;
  /** Exit 1 when any row failed or saw errors. @default false */
  readonly strict: boolean;
  readonly help: boolean;
}

export const USAGE = `Usage: node --import tsx bench/quick.ts [flags]

  --duration <s>         seconds of measured load per (server, workload) pair (default 10; smoke: 1)
  --warmup <s>           seconds of unmeasured load before each measurement   (default 1)
  --connections <n>      concurrent keep-alive connections                     (default 64)
  --rounds <n>           runs of every pair; odd rounds reverse the server order (default 2; smoke: 1)
  --pick best|median     which round a row shows                              (default best)
  --servers a,b          servers to run, e.g. node-http,fezz-inline            (default all)
  --workloads a,b        workloads to run, e.g. hello                          (default all)
  --load <generator>     auto | wrk | autocannon; auto = wrk if on PATH       (default auto)
  --threads <n>          wrk threads                                           (default 1)
  --smoke                quick check for CI: 1 s per pair, 1 round
  --json <file>          also write every round as JSON
  --strict               exit 1 if any row failed or saw non-2xx/socket errors
  --help                 this text
`;

export function parseQuickArgs(argv: readonly string[]): QuickOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      duration: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string" },
      rounds: { type: "string" },
      pick: { type: "string" },
      servers: { type: "string" },
      workloads: { type: "string" },
      load: { type: "string" },
      threads: { type: "string" },
      smoke: { type: "boolean", default: false },
      json: { type: "string" },
      strict: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const smoke = values.smoke === true;
  return {
    durationS: positive("--duration", values.duration, smoke ? 1 : 10, "a number of seconds > 0"),
    warmupS: nonNegative("--warmup", values.warmup, 1),
    connections: integer("--connections", values.connections, 64),
    rounds: integer("--rounds", values.rounds, smoke ? 1 : 2),
    pick: oneOf("--pick", values.pick, ["best", "median"] as const, "best"),
    servers: list(values.servers),
    workloads: list(values.workloads),
    load: oneOf("--load", values.load, ["auto", "wrk", "autocannon"] as const, "auto"),
    threads: integer("--threads", values.threads, 1),
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
