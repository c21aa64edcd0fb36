/**
 * Density suite: the RSS of one fezz host (plus its child processes) with 0, then 1, 10, 100
 * warm functions, and again after the idle TTL has evicted them all; once per tier, each on a
 * host of its own: `isolate` (an instance is a worker thread of the host, so its memory is in
 * the host's VmRSS) and `sandbox` (`"isolation": "sandbox"`: an instance is a Node process
 * under bubblewrap, a descendant of the host, so its memory is NOT in the host's VmRSS: the
 * suite sums the VmRSS, from /proc/<pid>/status, of every descendant of the host but esbuild's
 * service, i.e. bwrap and the sandboxed node, pre-started spare included).
 *
 * It writes max(levels) distinct small isolate functions, each with `"idleTtlSeconds": 1` and
 * `"instances": { "min": 0, "max": 1 }`, and starts one host on them. It warms functions by
 * sending each its first request, up to each level in turn; meanwhile a keeper sends every
 * warm function a request every 250 ms, so none reaches its 1 s idle TTL before the last
 * level is measured. At each level it waits `settleMs`, reads the instance count from the
 * admin API (`/admin/stats`) and the RSS (`VmRSS`) of the host and of its descendants. Then the
 * keeper stops, the suite waits until `/admin/stats` shows no instance left, waits
 * `settleMs` again, and reads the RSS once more.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { childLogDir } from "./child.js";
import { startFezz, type RunningFezz } from "./fezz-host.js";
import { newFunctionsDir, tierManifest, writeFunction } from "./fezz-functions.js";
import { KeepAliveClient } from "./keepalive-client.js";
import { treeRss, type TreeRss } from "./peak-rss.js";
import { sandboxAvailability, UNAVAILABLE } from "./sandbox-probe.js";

export type DensityTier = "isolate" | "sandbox";

export interface DensityOptions {
  /** Warm-function counts to measure at, ascending, e.g. [1, 10, 100]. */
  readonly levels: readonly number[];
  /** @default "isolate" */
  readonly tier?: DensityTier;
  /** Wait before each RSS reading, ms. @default 1000 */
  readonly settleMs?: number;
}

/** One RSS reading. */
export interface DensitySample {
  /** Functions warmed so far (0: the host just started). */
  readonly warm: number;
  /** Instances alive per /admin/stats (null if it could not be read). */
  readonly instances: number | null;
  readonly hostMb: number | null;
  /** Descendant processes (esbuild's service), MB. */
  readonly childrenMb: number;
  /** The sandbox processes among the descendants (all but esbuild: bwrap and the node in it), MB, and how many. */
  readonly sandboxMb: number;
  readonly sandboxProcesses: number;
  readonly totalMb: number;
  /** `(totalMb - base totalMb) / warm`: MB per warm function, from 0. Null at 0. */
  readonly perFunctionMb: number | null;
}

export interface DensityResult {
  readonly tier: DensityTier;
  /** The fresh host, then one per level. */
  readonly samples: readonly DensitySample[];
  /** After every instance was evicted (warm: 0). */
  readonly afterEviction: DensitySample | null;
  /** How long eviction took after the keeper stopped, ms (TTL 1 s plus the sweep). */
  readonly evictionMs: number | null;
  /** MB per additional warm isolate: the slope between the lowest and the highest level. */
  readonly perIsolateMb: number | null;
  /** Sandbox tier: the slope of the sandbox processes' own RSS alone (without the host's share), MB per warm sandbox. */
  readonly perSandboxProcessMb: number | null;
  /** Share of the memory the warm functions took that eviction gave back, 0..1. */
  readonly returned: number | null;
  readonly error: string | null;
}

const IDLE_TTL_S = 1;
const KEEP_EVERY_MS = 250;
const idOf = (i: number): string => `dense-${String(i).padStart(3, "0")}`;
const NO_RESULT = { afterEviction: null, evictionMs: null, perIsolateMb: null, perSandboxProcessMb: null, returned: null } as const;

export async function runDensity(options: DensityOptions, log: (line: string) => void): Promise<DensityResult> {
  const tier = options.tier ?? "isolate";
  if (tier === "sandbox") {
    const availability = await sandboxAvailability();
    if (!availability.ok) {
      log(`density sandbox: ${UNAVAILABLE} ${availability.reason}`);
      return { tier, samples: [], ...NO_RESULT, error: `${UNAVAILABLE} ${availability.reason}` };
    }
  }
  log = ((inner) => (line: string) => inner(line.replace(/^density: /, `density ${tier}: `)))(log);
  const levels = [...options.levels].sort((a, b) => a - b);
  const max = levels.at(-1) ?? 0;
  const settleMs = options.settleMs ?? 1000;
  const dir = newFunctionsDir(`density-${tier}`);
  for (let i = 1; i <= max; i++) {
    writeFunction(
      dir,
      { id: idOf(i), version: "1.0.0", entry: "index.mjs", ...tierManifest(tier), routes: [], instances: { min: 0, max: 1 }, idleTtlSeconds: IDLE_TTL_S },
      {
        "index.mjs":
          `// Generated by bench/lib/suite-density.ts.\n` +
          `const answer = ${JSON.stringify(`density #${i}`)};\n` +
          `export default {\n  fetch() {\n    return new Response(answer);\n  },\n};\n`,
      },
    );
  }
  const cacheDir = mkdtempSync(join(childLogDir(), `density-${tier}-cache-`));
  const samples: DensitySample[] = [];
  let host: RunningFezz | undefined;
  const clients: KeepAliveClient[] = [];
  let keeping = false;
  let keeper: Promise<void> = Promise.resolve();
  try {
    try {
      host = await startFezz({ label: `density-${tier}`, dir, cacheDir, admin: true, readyTimeoutMs: 30_000 + max * 500 });
    } catch (error) {
      return { tier, samples, ...NO_RESULT, error: `fezz failed to start: ${message(error)}` };
    }
    const h = host;
    const warmer = new KeepAliveClient(h.url);
    const keepClient = new KeepAliveClient(h.url);
    const admin = h.adminUrl === null ? null : new KeepAliveClient(h.adminUrl);
    clients.push(warmer, keepClient, ...(admin === null ? [] : [admin]));
    const instances = async (): Promise<number | null> => {
      if (admin === null) return null;
      try {
        const res = await admin.send("/admin/stats", { headers: { authorization: `Bearer ${h.token}` } });
        if (res.status !== 200) return null;
        const stats = JSON.parse(res.body) as { functions: Record<string, { instances?: number }> };
        return Object.values(stats.functions).reduce((sum, f) => sum + (f.instances ?? 0), 0);
      } catch {
        return null;
      }
    };
    const sampleAt = async (level: number, from: DensitySample | null): Promise<DensitySample> => {
      await sleep(settleMs);
      const count = await instances();
      const rss: TreeRss = treeRss(h.pid);
      const childrenMb = rss.children.reduce((sum, c) => sum + c.rssMb, 0);
      const sandboxes = rss.children.filter((c) => c.name !== "esbuild");
      return {
        warm: level,
        instances: count,
        hostMb: rss.hostMb,
        childrenMb,
        sandboxMb: sandboxes.reduce((sum, c) => sum + c.rssMb, 0),
        sandboxProcesses: sandboxes.length,
        totalMb: rss.totalMb,
        perFunctionMb: from === null || level === 0 ? null : (rss.totalMb - from.totalMb) / level,
      };
    };
    const base = await sampleAt(0, null);
    samples.push(base);
    log(`density: fresh host ${base.totalMb.toFixed(1)} MB (host ${fmtMb(base.hostMb)} + children ${base.childrenMb.toFixed(1)})`);

    const warm: string[] = [];
    keeping = true;
    keeper = (async () => {
      while (keeping) {
        const round = performance.now();
        for (const path of [...warm]) {
          if (!keeping) break;
          await keepClient.send(path).catch(() => undefined);
        }
        await sleep(Math.max(0, KEEP_EVERY_MS - (performance.now() - round)));
      }
    })();

    for (const level of levels) {
      while (warm.length < level) {
        const path = `/rpc/${idOf(warm.length + 1)}`;
        const res = await warmer.send(path);
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${res.body.slice(0, 120)}`);
        warm.push(path);
      }
      const sample = await sampleAt(level, base);
      samples.push(sample);
      log(`density: ${level} warm -> ${sample.totalMb.toFixed(1)} MB, ${fmtMb(sample.perFunctionMb)} MB each (instances: ${sample.instances ?? "?"})`);
    }

    keeping = false;
    await keeper;
    const stopped = performance.now();
    const deadline = stopped + (IDLE_TTL_S * 1000 + 15_000);
    let left = await instances();
    while (left !== null && left > 0 && performance.now() < deadline) {
      await sleep(100);
      left = await instances();
    }
    const evictionMs = left === 0 ? performance.now() - stopped : null;
    if (left === null) await sleep(IDLE_TTL_S * 1000 + 2000); // no admin API: wait past TTL + sweep
    const after = await sampleAt(0, null);
    log(`density: after eviction ${after.totalMb.toFixed(1)} MB (instances: ${after.instances ?? "?"}, evicted in ${evictionMs === null ? "?" : evictionMs.toFixed(0)} ms)`);

    const low = samples.find((s) => s.warm === levels[0]);
    const high = samples.at(-1);
    const perIsolateMb =
      low !== undefined && high !== undefined && high.warm > low.warm
        ? (high.totalMb - low.totalMb) / (high.warm - low.warm)
        : high?.perFunctionMb ?? null;
    const grown = high === undefined ? 0 : high.totalMb - base.totalMb;
    const perSandboxProcessMb =
      tier === "sandbox" && low !== undefined && high !== undefined && high.warm > low.warm
        ? (high.sandboxMb - low.sandboxMb) / (high.warm - low.warm)
        : null;
    return {
      tier,
      samples,
      perSandboxProcessMb,
      afterEviction: after,
      evictionMs,
      perIsolateMb,
      returned: grown > 0 && high !== undefined ? (high.totalMb - after.totalMb) / grown : null,
      error: left !== null && left > 0 ? `${left} instance(s) still alive ${((deadline - stopped) / 1000).toFixed(0)} s after the last request` : null,
    };

  } catch (error) {
    return { tier, samples, ...NO_RESULT, error: message(error) };
  } finally {
    keeping = false;
    await keeper.catch(() => undefined);
    for (const client of clients) client.close();
    await host?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

const fmtMb = (n: number | null): string => (n === null ? "-" : n.toFixed(1));

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
