/**
 * The cron scheduler of one host (docs/triggers.md): it follows the registry snapshots and,
 * for the latest version of every function whose manifest has `triggers.crons`, runs the
 * function's scheduled handler on each tick of each cron. croner parses the expressions and
 * computes the ticks (manifest/schema.ts compileCron); the timers are this file's, so that a
 * run knows the tick it was due at (`controller.scheduledTime`) and the host decides about
 * overlap, timeouts, logging and counting.
 *
 * - A run is one call through the function's runtime (runtime/types.ts SCHEDULED_HANDLER):
 *   `scheduled(controller, env, ctx)` for JS, `POST /__fezz/scheduled` for a plugin. It is
 *   bounded by the function's `limits.timeoutMs` (the runtime's own deadline; here also a
 *   guard past it and the start deadline).
 * - Overlap: unless `triggers.overlap`, a tick that comes while the previous run of the same
 *   cron (of the same version) still runs is skipped, and logged and counted as such.
 * - Each run is logged with the function (`fn`, so `fezz logs` shows it), its cron, due time,
 *   duration and outcome, and counted for `fezz_scheduled_runs_total{fn,outcome}`.
 * - Missed ticks are not replayed: a tick due while the host was down never runs; after a
 *   stall (a blocked event loop, a suspended machine) the tick that was due runs once, late.
 * - Reloads: a new latest version takes over at once (its own jobs; the old version's running
 *   runs finish on their own); a function that lost its crons or its directory stops.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Cron } from 'croner';
import type { FunctionVersion, Registry } from '../registry/registry.js';
import { compileCron } from '../manifest/schema.js';
import { scheduledWire, SCHEDULED_HANDLER, type InvokeRequest } from '../runtime/types.js';
import { newRequestId } from '../host/request-id.js';
import { outcomeOf, type RunError, type RunOutcome } from './outcome.js';

export type { RunOutcome, RunError } from './outcome.js';

/** A timer waits at most this long before it looks at the clock again, in ms (so a wall-clock change is followed within it). */
const MAX_WAIT_MS = 60_000;
/** The guard past a run's own deadlines (limits.timeoutMs, the start deadline), in ms. */
const GUARD_MARGIN_MS = 1000;

/** One scheduled run, as logged and as the admin API answers (`POST /admin/functions/:id/scheduled`). */
export interface ScheduledRun {
  /** `id@version` that ran. */
  fn: string;
  /** The cron expression it ran for (`""`: a manual run of a function without crons). */
  cron: string;
  /** When it was due, epoch ms (for a manual run: when it was asked for). */
  scheduledTime: number;
  outcome: RunOutcome;
  /** How long the run took, in ms (0 when skipped). */
  ms: number;
  /** Started by `fezz trigger` / the admin API rather than by a tick. */
  manual: boolean;
  /** The host's request id of the run (its console lines carry it). Absent when skipped. */
  requestId?: string;
  /** Why it failed (outcomes `error`, `timeout`). */
  error?: RunError;
}

export interface SchedulerOptions {
  logger: Logger;
  /** Whether ticks fire in this process (option `schedule`; one process of a `--workers` host). Manual runs work either way. */
  fire: boolean;
  /** The host's start deadline (options.startTimeoutMs), in ms: a cold run may take that on top of limits.timeoutMs. */
  startTimeoutMs: number;
}

/** One cron of one version. */
interface Job {
  readonly expr: string;
  readonly cron: Cron;
  readonly version: FunctionVersion;
  /** The tick the timer waits for, epoch ms. */
  due: number;
  timer: NodeJS.Timeout | null;
  /** Runs of this job going now. */
  running: number;
  stopped: boolean;
}

export class Scheduler {
  readonly #o: SchedulerOptions;
  /** By function id: the version whose crons run, and its jobs. */
  readonly #jobs = new Map<string, { version: FunctionVersion; jobs: Job[] }>();
  /** Runs by `id@version`, then outcome (kept across reloads, like request stats). */
  readonly #counts = new Map<string, Map<RunOutcome, number>>();
  #closed = false;

  constructor(options: SchedulerOptions) {
    this.#o = options;
  }

  /**
   * Follow registry snapshot `registry`: start the crons of latest versions that are new,
   * stop those of versions that are no longer the latest (or gone, or have no crons). Jobs
   * of a version that stays the latest keep running undisturbed. No-op once closed or when
   * ticks do not fire in this process.
   */
  sync(registry: Registry): void {
    if (this.#closed || !this.#o.fire) return;
    const wanted = new Map<string, FunctionVersion>();
    for (const [id, v] of registry.latest) if ((v.fn.manifest.triggers?.crons.length ?? 0) > 0) wanted.set(id, v);
    for (const [id, entry] of this.#jobs) {
      if (wanted.get(id) === entry.version) continue;
      for (const j of entry.jobs) this.#stop(j);
      this.#jobs.delete(id);
      this.#o.logger.info({ fn: entry.version.fn.key }, 'cron triggers stopped (a new version, or no crons any more)');
    }
    for (const [id, v] of wanted) {
      if (this.#jobs.has(id)) continue;
      const t = v.fn.manifest.triggers!;
      const jobs: Job[] = [];
      for (const expr of t.crons) {
        let cron: Cron;
        try {
          cron = compileCron(expr, t.timezone);
        } catch (err) {
          // The manifest check rejects these; this is a guard, not a path.
          this.#o.logger.error({ fn: v.fn.key, cron: expr, err }, 'cron expression rejected; it does not fire');
          continue;
        }
        const job: Job = { expr, cron, version: v, due: 0, timer: null, running: 0, stopped: false };
        jobs.push(job);
        this.#arm(job);
      }
      this.#jobs.set(id, { version: v, jobs });
      this.#o.logger.info({ fn: v.fn.key, crons: t.crons, timezone: t.timezone, overlap: t.overlap, next: jobs.map((j) => (j.due > 0 ? new Date(j.due).toISOString() : null)) }, 'cron triggers scheduled');
    }
  }

  /**
   * Run version `v`'s scheduled handler now, outside any tick (`fezz trigger`), with
   * `controller.cron` = `cron` and `controller.scheduledTime` = now. Not subject to the
   * overlap rule (the operator asked for it); logged and counted like a tick's run.
   * Never rejects: failures are in the result's outcome.
   */
  runNow(v: FunctionVersion, cron: string): Promise<ScheduledRun> {
    return this.#run(v, cron, Date.now(), true);
  }

  /** `[id@version, outcome, runs]` for `/metrics` (fezz_scheduled_runs_total). */
  *counts(): Iterable<[string, RunOutcome, number]> {
    for (const [fn, by] of this.#counts) for (const [outcome, n] of by) yield [fn, outcome, n];
  }

  /** Stop every cron (shutdown). Runs going now finish within their own deadlines. */
  close(): void {
    this.#closed = true;
    for (const entry of this.#jobs.values()) for (const j of entry.jobs) this.#stop(j);
    this.#jobs.clear();
  }

  /** Wait for the job's next tick after now (and after the tick it last waited for). */
  #arm(job: Job): void {
    if (job.stopped) return;
    const from = Math.max(Date.now(), job.due);
    const next = job.cron.nextRun(new Date(from));
    if (next === null) {
      this.#o.logger.warn({ fn: job.version.fn.key, cron: job.expr }, 'cron has no further tick; it stops');
      return;
    }
    job.due = next.getTime();
    this.#wait(job);
  }

  #wait(job: Job): void {
    const wait = Math.min(MAX_WAIT_MS, Math.max(0, job.due - Date.now()));
    job.timer = setTimeout(() => this.#tick(job), wait);
    job.timer.unref();
  }

  #tick(job: Job): void {
    job.timer = null;
    if (job.stopped || this.#closed) return;
    // Woken before the tick (a capped wait, or the clock moved back): wait again.
    if (Date.now() < job.due) { this.#wait(job); return; }
    const due = job.due;
    this.#arm(job);
    const v = job.version;
    if (job.running > 0 && !v.fn.manifest.triggers!.overlap) {
      this.#count(v.fn.key, 'skipped-overlap');
      this.#o.logger.warn({ fn: v.fn.key, cron: job.expr, scheduledTime: due, outcome: 'skipped-overlap', running: job.running },
        'scheduled run skipped: the previous run of this cron is still going (triggers.overlap is false)');
      return;
    }
    job.running++;
    void this.#run(v, job.expr, due, false).finally(() => { job.running--; });
  }

  #stop(job: Job): void {
    job.stopped = true;
    if (job.timer !== null) clearTimeout(job.timer);
    job.timer = null;
  }

  async #run(v: FunctionVersion, cron: string, scheduledTime: number, manual: boolean): Promise<ScheduledRun> {
    const fn = v.fn.key;
    const requestId = newRequestId();
    const req: InvokeRequest = { requestId, wire: scheduledWire(cron, scheduledTime), handler: SCHEDULED_HANDLER, params: null, slot: null };
    const t0 = performance.now();
    let guard: NodeJS.Timeout | undefined;
    let result: { outcome: 'ok' | 'error' | 'timeout'; error?: RunError };
    try {
      const limit = v.fn.manifest.limits.timeoutMs + this.#o.startTimeoutMs + GUARD_MARGIN_MS;
      const res = await Promise.race([
        Promise.resolve(v.runtime.invoke(req)),
        new Promise<null>((resolve) => { guard = setTimeout(() => resolve(null), limit); }),
      ]);
      if (res === null) {
        v.runtime.cancel?.(req);
        result = { outcome: 'timeout', error: { code: 'FEZZ_ERR_HANDLER_TIMEOUT', message: `no answer within ${limit} ms` } };
      } else {
        result = await outcomeOf(res);
      }
    } catch (err) {
      // Runtimes never reject (runtime/types.ts); a guard all the same.
      result = { outcome: 'error', error: { code: 'FEZZ_ERR_SCHEDULED_FAILED', message: String((err as Error)?.message ?? err) } };
    } finally {
      clearTimeout(guard);
    }
    const run: ScheduledRun = { fn, cron, scheduledTime, outcome: result.outcome, ms: Math.round((performance.now() - t0) * 10) / 10, manual, requestId };
    if (result.error !== undefined) run.error = result.error;
    this.#count(fn, run.outcome);
    const fields = { fn, cron, scheduledTime, ms: run.ms, outcome: run.outcome, requestId, ...(manual ? { manual } : {}) };
    if (run.outcome === 'ok') {
      this.#o.logger.info(fields, 'scheduled run ok');
    } else {
      const e = run.error!;
      this.#o.logger.error({ ...fields, code: e.code, err: { message: e.message, ...(e.stack !== undefined ? { stack: e.stack } : {}) } },
        run.outcome === 'timeout' ? `scheduled run timed out: ${e.message}` : `scheduled run failed: ${e.message}`);
    }
    return run;
  }

  #count(fn: string, outcome: RunOutcome): void {
    let by = this.#counts.get(fn);
    if (by === undefined) { by = new Map(); this.#counts.set(fn, by); }
    by.set(outcome, (by.get(outcome) ?? 0) + 1);
  }
}
