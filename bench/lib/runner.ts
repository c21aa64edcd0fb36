/**
 * The generic runner: every (server, workload) pair, for a number of rounds, each pair on a
 * freshly started server: check the answer, warm up, measure, read peak RSS, stop.
 *
 * Order: rounds are the outer loop, then workloads, then servers; odd rounds run the servers
 * in reverse, so no server is always the one that runs right after another's load (or always
 * first, on a cold machine). A server that fails to start is not retried in later pairs (each
 * try can cost the full readiness timeout); its rows all say why.
 */
import { httpCheck } from "./http-check.js";
import { childrenPeakRss, peakRssMb } from "./peak-rss.js";
import type { LoadGenerator, Measurement, PairOutcome, PickRule, Row, ServerAdapter, Workload } from "./types.js";

export interface RunOptions {
  readonly servers: readonly ServerAdapter[];
  readonly workloads: readonly Workload[];
  readonly generator: LoadGenerator;
  /** Seconds of measured load per pair and round. */
  readonly durationS: number;
  /** Seconds of unmeasured load before each measurement (0: none). */
  readonly warmupS: number;
  readonly connections: number;
  readonly rounds: number;
  readonly pick: PickRule;
  /** The server ratios are computed against, e.g. `"node-http"`. */
  readonly baseline: string;
  /** Called after each pair, for progress output. */
  readonly onOutcome?: (server: string, workload: string, outcome: PairOutcome) => void;
  /**
   * Which (server, workload) pairs run at all (a smoke run's shorter matrix, smoke-plan.ts);
   * a pair left out is neither run nor a row. Default: every pair.
   */
  readonly includes?: (server: string, workload: string) => boolean;
}

export async function runMatrix(options: RunOptions): Promise<Row[]> {
  const outcomes = new Map<string, PairOutcome[]>(); // key: server \0 workload
  const startFailures = new Map<string, string>(); // server name -> reason
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? options.servers : [...options.servers].reverse();
    for (const workload of options.workloads) {
      for (const server of order) {
        if (options.includes?.(server.name, workload.name) === false) continue;
        const previous = startFailures.get(server.name);
        const outcome: PairOutcome =
          previous === undefined
            ? await runPair(server, workload, round, options)
            : { kind: "failed", round, stage: "start", reason: previous };
        if (outcome.kind === "failed" && outcome.stage === "start") startFailures.set(server.name, outcome.reason);
        const key = `${server.name}\0${workload.name}`;
        outcomes.set(key, [...(outcomes.get(key) ?? []), outcome]);
        options.onOutcome?.(server.name, workload.name, outcome);
      }
    }
  }

  const rows: Row[] = [];
  for (const workload of options.workloads) {
    const picks = new Map<string, Row["picked"]>();
    for (const server of options.servers) {
      picks.set(server.name, pick(outcomes.get(`${server.name}\0${workload.name}`) ?? [], options.pick));
    }
    const baseRounds = outcomes.get(`${options.baseline}\0${workload.name}`) ?? [];
    for (const server of options.servers) {
      if (options.includes?.(server.name, workload.name) === false) continue;
      const picked = picks.get(server.name) ?? null;
      const rounds = outcomes.get(`${server.name}\0${workload.name}`) ?? [];
      rows.push({
        server: server.name,
        workload: workload.name,
        rounds,
        picked,
        ratio: picked === null ? null : pairedRatio(rounds, baseRounds),
        bodyBytes: Buffer.byteLength(workload.expect.body),
        mbRatio: picked === null ? null : pairedRatio(rounds, baseRounds, (m) => m.readMbPerS),
      });
    }
  }
  return rows;
}

/**
 * The ratio of a row to the baseline: per round, this server's RPS / the baseline's RPS in the
 * same round, then the median over the rounds where both succeeded (the lower middle with an
 * even count). Pairing by round cancels most of a shared machine's drift, which moves every
 * server of a round together (rounds here varied up to 2x); the servers of a round run back
 * to back, and fezz's rows sit next to the baseline (servers.ts). null without a pair.
 */
export function pairedRatio(
  rounds: readonly PairOutcome[],
  baseline: readonly PairOutcome[],
  metric: (m: Measurement) => number | undefined = (m) => m.rps,
): number | null {
  const ratios: number[] = [];
  for (const r of rounds) {
    if (r.kind !== "ok") continue;
    const b = baseline.find((x) => x.round === r.round);
    if (b === undefined || b.kind !== "ok") continue;
    const mine = metric(r.measurement);
    const base = metric(b.measurement);
    if (mine === undefined || base === undefined || !(base > 0)) continue;
    ratios.push(mine / base);
  }
  if (ratios.length === 0) return null;
  ratios.sort((a, b) => a - b);
  return ratios[Math.floor((ratios.length - 1) / 2)]!;
}

/**
 * `best`: the successful round with the highest RPS (noise on a shared machine only ever
 * slows a run down, so the fastest round is the closest to what the code can do).
 * `median`: the successful round with the median RPS; with an even count, the lower of the two
 * middle ones. Either way one real round is picked whole, so its p50, p99 and RSS go with it.
 */
export function pick(rounds: readonly PairOutcome[], rule: PickRule): Row["picked"] {
  const ok = rounds
    .filter((outcome): outcome is Extract<PairOutcome, { kind: "ok" }> => outcome.kind === "ok")
    .sort((a, b) => a.measurement.rps - b.measurement.rps);
  if (ok.length === 0) return null;
  return (rule === "best" ? ok.at(-1) : ok[Math.floor((ok.length - 1) / 2)]) ?? null;
}

async function runPair(server: ServerAdapter, workload: Workload, round: number, options: RunOptions): Promise<PairOutcome> {
  const path = server.pathFor ? server.pathFor(workload) : workload.path;
  if (path === null) return { kind: "unsupported", round };

  let running;
  try {
    running = await server.start(workload);
  } catch (error) {
    return { kind: "failed", round, stage: "start", reason: message(error) };
  }
  try {
    const url = running.url + path;
    const request = {
      method: workload.method,
      ...(workload.body === undefined ? {} : { body: workload.body }),
      ...(workload.headers === undefined ? {} : { headers: workload.headers }),
    };

    // Seeding (e.g. 100 todos), the same requests on every server.
    for (const spec of workload.setup ?? []) {
      const what = `setup ${spec.method} ${spec.path}`;
      const res = await httpCheck(running.url + spec.path, { ...spec, timeoutMs: 10_000 }).catch((error: unknown) => {
        throw new StageError("check", `${what}: ${message(error)}`);
      });
      if (res.status < 200 || res.status > 299) {
        return { kind: "failed", round, stage: "check", reason: `${what}: status ${res.status} (body: ${clip(res.body)})` };
      }
    }

    // The first request doubles as the check that this server answers like the others.
    const first = await httpCheck(url, { ...request, timeoutMs: 10_000 }).catch((error: unknown) => {
      throw new StageError("check", `${workload.method} ${path}: ${message(error)}`);
    });
    const wrong = describeMismatch(workload, first);
    if (wrong !== null) return { kind: "failed", round, stage: "check", reason: `${workload.method} ${path}: ${wrong}` };

    const load = { url, ...request, connections: options.connections };
    if (options.warmupS > 0) await options.generator.run({ ...load, durationS: options.warmupS });
    const measurement = await options.generator.run({ ...load, durationS: options.durationS });
    if (!isAlive(running.pid)) {
      return { kind: "failed", round, stage: "load", reason: "the server process exited during the run" };
    }
    return {
      kind: "ok",
      round,
      measurement,
      peakRssMb: peakRssMb(running.pid),
      children: childrenPeakRss(running.pid),
    };
  } catch (error) {
    return { kind: "failed", round, stage: error instanceof StageError ? error.stage : "load", reason: message(error) };
  } finally {
    await running.stop();
  }
}

class StageError extends Error {
  constructor(
    readonly stage: "check" | "load",
    text: string,
  ) {
    super(text);
  }
}

function describeMismatch(workload: Workload, got: { status: number; contentType: string; body: string }): string | null {
  const want = workload.expect;
  if (got.status !== want.status) return `status ${got.status}, expected ${want.status} (body: ${clip(got.body)})`;
  if (!sameContentType(got.contentType, want.contentType)) {
    return `content-type ${JSON.stringify(got.contentType)}, expected ${JSON.stringify(want.contentType)}`;
  }
  if (got.body !== want.body) return `body ${clip(got.body)}, expected ${clip(want.body)}`;
  return null;
}

/**
 * Whether two content types say the same: the same media type (case-insensitive), and the
 * same charset, where no charset counts as UTF-8 (every body here is UTF-8). So Bun's
 * `application/json;charset=utf-8` and Hono's `text/plain; charset=UTF-8` match the
 * `application/json` and `text/plain;charset=UTF-8` of undici's Response.
 */
export function sameContentType(a: string, b: string): boolean {
  const parse = (value: string): [string, string] => {
    const [type = "", ...params] = value.split(";").map((part) => part.trim().toLowerCase());
    const charset = params.find((p) => p.startsWith("charset="))?.slice(8).replace(/"/g, "") ?? "utf-8";
    return [type, charset === "utf8" ? "utf-8" : charset];
  };
  const [typeA, charsetA] = parse(a);
  const [typeB, charsetB] = parse(b);
  return typeA === typeB && charsetA === charsetB;
}

function clip(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only
    return true;
  } catch {
    return false;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
