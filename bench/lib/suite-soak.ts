/**
 * Soak suite (seed 004): N requests at one function, with the RSS of the server and its
 * descendants (`VmRSS`) read when 10%, 50% and 100% of the responses are in; the figure that
 * matters is RSS at 100% / RSS at 10% (flat memory: at most 1.10).
 *
 * It uses autocannon with an exact request count (wrk has none), whatever `--load` says, in
 * the bench process. The 10% and 50% readings are taken under load, from the response
 * callback; the 100% one right after the last response.
 */
import { httpCheck } from "./http-check.js";
import { runAutocannonAmount } from "./load-autocannon.js";
import { peakRssMb, treeRss } from "./peak-rss.js";
import type { Measurement, ServerAdapter, Workload } from "./types.js";

export interface SoakOptions {
  readonly server: ServerAdapter;
  readonly workload: Workload;
  /** Requests in all, e.g. 2_000_000. */
  readonly requests: number;
  readonly connections: number;
}

export interface SoakSample {
  /** Share of the requests answered when read: 0.1, 0.5 or 1. */
  readonly at: number;
  readonly requests: number;
  readonly hostMb: number | null;
  readonly childrenMb: number;
  readonly totalMb: number;
}

export interface SoakResult {
  readonly server: string;
  readonly workload: string;
  readonly requests: number;
  readonly measurement: Measurement | null;
  readonly samples: readonly SoakSample[];
  /** totalMb at 100% / totalMb at 10%. */
  readonly ratio: number | null;
  /** Peak RSS (VmHWM) of the server process over the whole run, MB. */
  readonly peakRssMb: number | null;
  readonly error: string | null;
}

const MARKS = [0.1, 0.5] as const;

export async function runSoak(options: SoakOptions, log: (line: string) => void): Promise<SoakResult> {
  const { server, workload, requests } = options;
  const base = { server: server.name, workload: workload.name, requests };
  const failed = (error: string): SoakResult => ({ ...base, measurement: null, samples: [], ratio: null, peakRssMb: null, error });
  const path = server.pathFor ? server.pathFor(workload) : workload.path;
  if (path === null) return failed(`${server.name} does not serve ${workload.name}`);
  let running;
  try {
    running = await server.start(workload);
  } catch (error) {
    return failed(`failed to start: ${message(error)}`);
  }
  try {
    const request = {
      method: workload.method,
      ...(workload.body === undefined ? {} : { body: workload.body }),
      ...(workload.headers === undefined ? {} : { headers: workload.headers }),
    };
    for (const spec of workload.setup ?? []) await httpCheck(running.url + spec.path, { ...spec, timeoutMs: 10_000 });
    const first = await httpCheck(running.url + path, { ...request, timeoutMs: 10_000 });
    if (first.status !== workload.expect.status || first.body !== workload.expect.body) {
      return failed(`wrong answer: status ${first.status}, body ${JSON.stringify(first.body.slice(0, 80))}`);
    }
    const pid = running.pid;
    const samples: SoakSample[] = [];
    const sample = (at: number, count: number): void => {
      const rss = treeRss(pid);
      const childrenMb = rss.children.reduce((sum, c) => sum + c.rssMb, 0);
      samples.push({ at, requests: count, hostMb: rss.hostMb, childrenMb, totalMb: rss.totalMb });
      log(`soak ${server.name} ${workload.name}: ${Math.round(at * 100)}% (${count.toLocaleString("en-US")} requests) RSS ${rss.totalMb.toFixed(1)} MB`);
    };
    const marks = MARKS.map((at) => ({ at, count: Math.max(1, Math.round(requests * at)) }));
    let next = 0;
    const measurement = await runAutocannonAmount({
      url: running.url + path,
      ...request,
      connections: options.connections,
      amount: requests,
      onResponse: (count) => {
        const mark = marks[next];
        if (mark !== undefined && count >= mark.count) {
          next++;
          sample(mark.at, count);
        }
      },
    });
    sample(1, measurement.requests);
    const at10 = samples.find((s) => s.at === 0.1)?.totalMb;
    const at100 = samples.find((s) => s.at === 1)?.totalMb;
    const problems =
      measurement.non2xx + measurement.errors > 0 ? `${measurement.non2xx} non-2xx, ${measurement.errors} socket errors` : null;
    return {
      ...base,
      measurement,
      samples,
      ratio: at10 !== undefined && at100 !== undefined && at10 > 0 ? at100 / at10 : null,
      peakRssMb: peakRssMb(pid),
      error: problems,
    };
  } catch (error) {
    return failed(message(error));
  } finally {
    await running.stop();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
