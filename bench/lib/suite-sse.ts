/**
 * SSE suite (issue 12): `clients` concurrent clients each hold a server-sent events stream
 * open (`GET /sse?events=<n>&interval=<ms>`, bench/handlers/sse.mjs; raw node:http natively)
 * and get `events` events that one ticker per server broadcasts every `interval` ms to every
 * open stream. Per server: clients completed, events received, the delivery latency of every
 * event (client receive time minus the send time the event carries, same machine clock),
 * the time until every client had its head and until the last one finished, and the peak RSS
 * of the server and its descendant processes (a fezz-sandbox's sandboxes).
 *
 * Each server is started fresh and checked first with one client and 2 events 10 ms apart (a
 * 404 or a wrong content type is then a `wrong answer`, not 1,000 failures). The client runs in
 * the bench process (sse-client.ts), so it needs a descriptor per client: checked up front.
 */
import { openFilesLimit } from "./fd-limit.js";
import { childrenPeakRss, peakRssMb } from "./peak-rss.js";
import { runSseClients, type SseLoadResult } from "./sse-client.js";
import type { PickRule, ServerAdapter, Workload } from "./types.js";

export interface SseOptions {
  readonly servers: readonly ServerAdapter[];
  readonly clients: number;
  readonly events: number;
  readonly intervalMs: number;
  /** Clients waiting for their response head at once. */
  readonly openConcurrency: number;
  /** Runs of every server; odd rounds run the servers in reverse order. */
  readonly rounds: number;
  /** `best`: the round with the lowest p99 (among those where every client completed, if any); `median`: the median p99. */
  readonly pick: PickRule;
}

export interface SseRow {
  readonly server: string;
  /** The run's figures; null when the server failed to start or answered wrong. */
  readonly result: SseLoadResult | null;
  /** Peak RSS (VmHWM) of the server process plus every descendant alive at the end, MB. */
  readonly peakRssMb: number | null;
  /** The server process's own VmHWM, MB. */
  readonly hostPeakRssMb: number | null;
  readonly children: readonly { readonly name: string; readonly peakRssMb: number }[];
  /** `failed to start: ...`, `wrong answer: ...`; null when it ran. */
  readonly error: string | null;
  /** The round shown (0-based); null without a result. */
  readonly round: number | null;
  /** Every round's p99 delivery latency, ms, in round order (null: that round failed). */
  readonly roundsP99Ms: readonly (number | null)[];
}

export interface SseResult {
  readonly clients: number;
  readonly events: number;
  readonly intervalMs: number;
  readonly openConcurrency: number;
  readonly rounds: number;
  readonly pick: PickRule;
  /** The bench process's soft open-files limit; null when unreadable. */
  readonly fdLimit: number | null;
  readonly rows: readonly SseRow[];
  /** Why the suite could not run at all (e.g. the fd limit); null when it ran. */
  readonly error: string | null;
}

/** Descriptors the bench keeps for itself beside one per client. */
const FD_MARGIN = 128;

/**
 * The workload every server serves for this suite. fezz: the handler as function `sse`, with
 * `limits.concurrency` past the client count (every open stream holds a slot until it ends) in
 * its one instance.
 */
export function sseWorkload(clients: number): Workload {
  return {
    name: "sse",
    path: "/sse",
    method: "GET",
    handler: "sse.mjs",
    fezzId: "sse",
    fezzLimits: { concurrency: Math.min(10_000, clients + 64) },
    expect: { status: 200, contentType: "text/event-stream", body: "" },
  };
}

/** Whether a row ran and every client completed. */
export function sseRowOk(row: SseRow): boolean {
  return row.error === null && row.result !== null && row.result.completed === row.result.clients;
}

export async function runSse(options: SseOptions, log: (line: string) => void): Promise<SseResult> {
  const fdLimit = openFilesLimit();
  const base = {
    clients: options.clients,
    events: options.events,
    intervalMs: options.intervalMs,
    openConcurrency: options.openConcurrency,
    rounds: options.rounds,
    pick: options.pick,
    fdLimit,
  };
  if (fdLimit !== null && fdLimit < options.clients + FD_MARGIN) {
    return {
      ...base,
      rows: [],
      error:
        `the open-files limit is ${fdLimit}, and ${options.clients} clients need ${options.clients + FD_MARGIN}: ` +
        `raise it (ulimit -n ${options.clients + FD_MARGIN} or more, up to the hard limit: ulimit -Hn) or pass fewer --sse-clients`,
    };
  }
  const workload = sseWorkload(options.clients);
  const runs = new Map<string, SseRow[]>();
  const startFailures = new Map<string, SseRow>();
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? options.servers : [...options.servers].reverse();
    for (const server of order) {
      const row = startFailures.get(server.name) ?? (await runOne(server, workload, options, round));
      if (row.error?.startsWith("failed to start") === true) startFailures.set(server.name, row);
      runs.set(server.name, [...(runs.get(server.name) ?? []), row]);
      const r = row.result;
      log(
        `sse round ${round + 1} ${server.name}: ` +
          (row.error !== null
            ? row.error
            : r === null
              ? "no result"
              : `${r.completed}/${r.clients} clients, ${r.events} events, p99 ${r.p99Ms.toFixed(1)} ms, all done ${(r.allDoneMs / 1000).toFixed(2)} s`),
      );
    }
  }
  const rows = options.servers.map((server) => pickSse(runs.get(server.name) ?? [], options.pick));
  return { ...base, rows, error: null };
}

/**
 * The row shown for one server: `best`, the round with the lowest p99 among those where every
 * client completed (else among those with a result); `median`, the median p99 of those (the
 * lower middle with an even count); the first round's failure when none has a result.
 */
export function pickSse(rounds: readonly SseRow[], rule: PickRule): SseRow {
  const roundsP99Ms = rounds.map((r) => (r.result === null || r.result.events === 0 ? null : r.result.p99Ms));
  const withResult = rounds.filter((r) => r.result !== null && r.result.events > 0);
  const complete = withResult.filter(sseRowOk);
  const pool = (complete.length > 0 ? complete : withResult).sort((a, b) => a.result!.p99Ms - b.result!.p99Ms);
  const chosen = rule === "best" ? pool[0] : pool[Math.floor((pool.length - 1) / 2)];
  const fallback = rounds[0];
  if (chosen === undefined) {
    if (fallback === undefined) return { server: "?", result: null, peakRssMb: null, hostPeakRssMb: null, children: [], error: "no rounds", round: null, roundsP99Ms };
    return { ...fallback, roundsP99Ms };
  }
  return { ...chosen, roundsP99Ms };
}

async function runOne(server: ServerAdapter, workload: Workload, options: SseOptions, round: number): Promise<SseRow> {
  const failed = (error: string): SseRow => ({
    server: server.name,
    result: null,
    peakRssMb: null,
    hostPeakRssMb: null,
    children: [],
    error,
    round: null,
    roundsP99Ms: [],
  });
  const path = server.pathFor ? server.pathFor(workload) : workload.path;
  if (path === null) return failed("not supported");
  let running;
  try {
    running = await server.start(workload);
  } catch (error) {
    return failed(`failed to start: ${message(error)}`);
  }
  try {
    const check = await runSseClients({ url: running.url, path: `${path}?events=2&interval=10`, clients: 1, events: 2, timeoutMs: 10_000 });
    if (check.completed !== 1) return failed(`wrong answer: GET ${path}: ${Object.keys(check.failures).join(", ") || "no events"}`);
    const result = await runSseClients({
      url: running.url,
      path: `${path}?events=${options.events}&interval=${options.intervalMs}`,
      clients: options.clients,
      events: options.events,
      openConcurrency: options.openConcurrency,
      // Opening at least 1 ms per client, the events, and a generous margin on a busy machine.
      timeoutMs: options.clients + options.events * options.intervalMs + 30_000,
    });
    const host = peakRssMb(running.pid);
    const children = childrenPeakRss(running.pid).map((c) => ({ name: c.name, peakRssMb: c.peakRssMb }));
    return {
      server: server.name,
      result,
      hostPeakRssMb: host,
      peakRssMb: host === null ? null : host + children.reduce((sum, c) => sum + c.peakRssMb, 0),
      children,
      error: null,
      round,
      roundsP99Ms: [],
    };
  } catch (error) {
    return failed(`load failed: ${message(error)}`);
  } finally {
    await running.stop();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
