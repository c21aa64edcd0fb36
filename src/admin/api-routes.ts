/**
 * The admin API (docs/admin-api.md) on the admin listener, behind the same bearer token as
 * the ABI: list functions and their state, stats, deploy, delete, reload, follow logs, and
 * `/metrics` in the Prometheus text format.
 */
import type { Registry as MetricsRegistry } from 'prom-client';
import { fezzError, statusText } from '../errors.js';
import type { WireResponse } from '../wire/types.js';
import type { AdminRoute } from './admin-server.js';
import type { FunctionInfo } from '../host/host.js';
import type { LoadProblem } from '../registry/registry.js';
import type { LogLine } from '../observability/log-hub.js';
import type { ScheduledRun } from '../triggers/scheduler.js';
import type { SecretInfo } from '../secrets/store.js';

/** What `PUT` and `DELETE /admin/secrets/:id/:name` report after the change. */
export interface SecretChange {
  id: string;
  name: string;
  /** The versions of `id` that restarted with the new environment (`id@version`). */
  reloaded: string[];
  /** Versions of `id` not served after the reload, and why. */
  problems: LoadProblem[];
}

/** One host process of a `--workers N` host (src/cluster/), as `/admin/stats` reports it. */
export interface WorkerInfo {
  /** 1..N, stable across restarts of that slot. */
  index: number;
  pid: number;
  /** Requests this process answered, all functions, since it started. */
  requests: number;
  /** Times this slot's process was started again after it died. */
  restarts: number;
  /** `starting`; `loaded` (functions loaded, the port not open yet); `serving`; `draining` (SIGTERM to it alone: it finishes, exits and is started again); `down` (died; restarting). */
  state: 'starting' | 'loaded' | 'serving' | 'draining' | 'down';
}

/** What the admin API reports of a host (one process, or all of a `--workers` host). */
export interface HostSnapshot {
  /** Every loaded version; with workers, merged by key (counters summed, p50/p99 the highest of the processes). */
  functions: FunctionInfo[];
  problems: readonly LoadProblem[];
  /** Requests waiting for a plugin's answer now. */
  pendingRequests: number;
  /** With `--workers`: each host process. */
  workers?: WorkerInfo[];
}

/**
 * What the admin routes need of a host: src/host/host.ts Host for one process, the cluster
 * primary (src/cluster/primary.ts) for `--workers N`, which asks its processes over IPC.
 */
export interface AdminApiHost {
  snapshot(): Promise<HostSnapshot>;
  /** See Host.deploy: 201 once serving (200 with `unchanged` for the same content again); 400/409/422 FezzErrors. */
  deploy(pkg: unknown, opts?: { replace?: boolean }): Promise<{ key: string; unchanged?: boolean }>;
  /** See Host.remove. */
  remove(id: string, version: string): Promise<{ key: string }>;
  /** See Host.reload: the problems after it. */
  reload(): Promise<readonly LoadProblem[]>;
  /** The last `n` log lines of function `id`. */
  recentLogs(id: string, n: number): Promise<LogLine[]>;
  /** Call `push` with each new log line of function `id`; returns the unsubscribe function. */
  followLogs(id: string, push: (line: LogLine) => void): () => void;
  /** See Host.runScheduled: run `id`'s scheduled handler now; 404/400 FezzErrors, else the run (its outcome). */
  runScheduled(id: string, cron: string | null): Promise<ScheduledRun>;
  /** See Host.listSecrets: names and update times only. */
  listSecrets(id: string): Promise<SecretInfo[]>;
  /** See Host.putSecret: store, then hot-reload the versions of `id`. */
  putSecret(id: string, name: string, value: Uint8Array): Promise<SecretChange & { updatedAt: string; created: boolean }>;
  /** See Host.deleteSecret. */
  deleteSecret(id: string, name: string): Promise<SecretChange>;
}

/** `/metrics`: a prom-client registry, or the merge of several (cluster). */
export interface MetricsSource { contentType: string; metrics(): Promise<string> }

const json = (status: number, value: unknown): WireResponse => ({ status, headers: ['content-type', 'application/json'], body: JSON.stringify(value) });

export function apiRoutes(host: AdminApiHost, metrics: MetricsSource | MetricsRegistry): AdminRoute[] {
  return [
    {
      method: 'GET', path: '/admin/functions',
      handle: async () => {
        const snap = await host.snapshot();
        return json(200, { functions: snap.functions, problems: snap.problems });
      },
    },
    {
      method: 'GET', path: '/admin/functions/:id',
      handle: async ({ params }) => {
        const versions = (await host.snapshot()).functions.filter((f) => f.id === params.id);
        if (versions.length === 0) throw fezzError('FEZZ_ERR_FUNCTION_NOT_FOUND', [params.id]);
        return json(200, { id: params.id, versions });
      },
    },
    {
      method: 'GET', path: '/admin/stats',
      handle: async () => {
        const snap = await host.snapshot();
        const out: Record<string, unknown> = {};
        for (const f of snap.functions) {
          const s = f.stats;
          out[f.key] = { requests: s.requests, errors: s.errors, p50Ms: s.p50Ms, p99Ms: s.p99Ms, coldStarts: s.coldStarts, evictions: s.evictions, crashes: s.crashes, timeouts: s.timeouts, instances: s.instances, inflight: s.inflight, queued: s.queued };
        }
        return json(200, { functions: out, pendingAbiRequests: snap.pendingRequests, ...(snap.workers ? { workers: snap.workers } : {}) });
      },
    },
    {
      method: 'POST', path: '/admin/deploy',
      // ?replace=1 replaces a version already there with other content (else 409); the
      // same content again is a 200 that changes nothing.
      handle: async ({ body, search }) => {
        const replaceParam = search.get('replace');
        if (replaceParam !== null && !['1', 'true', '0', 'false'].includes(replaceParam)) {
          throw fezzError('FEZZ_ERR_BAD_REQUEST', [`query parameter replace must be 1 or 0, received ${JSON.stringify(replaceParam.slice(0, 20))}`]);
        }
        let pkg: unknown;
        try {
          pkg = JSON.parse(body.toString('utf8'));
        } catch (err) {
          throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `not valid JSON (${(err as Error).message})`]);
        }
        const { key, unchanged } = await host.deploy(pkg, { replace: replaceParam === '1' || replaceParam === 'true' });
        return unchanged === true ? json(200, { key, status: 'serving', unchanged: true }) : json(201, { key, status: 'serving' });
      },
    },
    {
      method: 'DELETE', path: '/admin/functions/:id/:version',
      handle: async ({ params }) => {
        const { key } = await host.remove(params.id!, params.version!);
        return json(200, { key, status: 'deleted' });
      },
    },
    {
      method: 'POST', path: '/admin/reload',
      handle: async () => {
        const problems = await host.reload();
        return json(200, { functions: (await host.snapshot()).functions.map((f) => f.key), problems });
      },
    },
    {
      method: 'GET', path: '/admin/logs',
      handle: async ({ search, res }) => {
        const fn = search.get('fn');
        if (fn === null || fn === '') throw fezzError('FEZZ_ERR_BAD_REQUEST', ['query parameter fn (a function id) is required']);
        const id = fn.includes('@') ? fn.slice(0, fn.indexOf('@')) : fn;
        const since = Math.max(0, Math.min(10_000, Number(search.get('since') ?? 100) || 0));
        const follow = search.get('follow') === '1' || search.get('follow') === 'true';
        const recent = await host.recentLogs(id, since);
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        for (const line of recent) res.write(JSON.stringify(line) + '\n');
        if (!follow) { res.end(); return null; }
        // Headers now, not with the first line: a quiet function must not look like a hung host.
        res.flushHeaders();
        const stop = host.followLogs(id, (line) => { res.write(JSON.stringify(line) + '\n'); });
        res.on('close', stop);
        return null;
      },
    },
    // Secrets (docs/secrets.md): admin token only (no `abi` mark: a plugin's token gets 403).
    // Values go in, never out.
    {
      method: 'GET', path: '/admin/secrets/:id',
      handle: async ({ params }) => json(200, { id: params.id, secrets: await host.listSecrets(params.id!) }),
    },
    {
      method: 'PUT', path: '/admin/secrets/:id/:name',
      // The body is the value itself (any content type), at most 64 KiB of UTF-8.
      handle: async ({ params, body }) => {
        try {
          const out = await host.putSecret(params.id!, params.name!, body);
          return json(out.created ? 201 : 200, out);
        } finally {
          body.fill(0); // the value does not linger in this buffer until it is collected
        }
      },
    },
    {
      method: 'DELETE', path: '/admin/secrets/:id/:name',
      handle: async ({ params }) => json(200, { ...(await host.deleteSecret(params.id!, params.name!)), status: 'deleted' }),
    },
    {
      // Run the function's scheduled handler now (`fezz trigger`, docs/triggers.md): 200 ok,
      // 500 it failed, 504 it timed out, 409 it has no scheduled handler; 404 unknown function.
      method: 'POST', path: '/admin/functions/:id/scheduled',
      handle: async ({ params, search }) => {
        const cron = search.get('cron');
        const run = await host.runScheduled(params.id!, cron === null || cron === '' ? null : cron);
        return scheduledAnswer(run);
      },
    },
    {
      method: 'GET', path: '/metrics',
      handle: async () => ({ status: 200, headers: ['content-type', metrics.contentType], body: await metrics.metrics() }),
    },
  ];
}

/**
 * The admin answer for a scheduled run: 200 with the run when it went well; else the host's
 * error shape `{ error, code, message, statusCode }` plus `run`: 409
 * FEZZ_ERR_SCHEDULED_MISSING (no scheduled handler), 504 (timeout), 500 (it failed; the code
 * is FEZZ_ERR_SCHEDULED_FAILED for a throw, or the runtime's, e.g. FEZZ_ERR_INSTANCE_START_FAILED).
 */
function scheduledAnswer(run: ScheduledRun): WireResponse {
  if (run.outcome === 'ok' || run.error === undefined) return json(200, run);
  const e = run.error;
  const cron = run.cron === '' ? '(none)' : JSON.stringify(run.cron);
  if (e.code === 'FEZZ_ERR_SCHEDULED_MISSING') {
    const err = fezzError('FEZZ_ERR_SCHEDULED_MISSING', [run.fn]);
    return json(409, { error: statusText(409), code: err.code, message: err.message, statusCode: 409, run });
  }
  const status = run.outcome === 'timeout' ? 504 : 500;
  const message = fezzError('FEZZ_ERR_SCHEDULED_FAILED', [run.fn, cron, run.outcome === 'timeout' ? `timed out (${e.message})` : e.message]).message;
  const code = e.code.startsWith('FEZZ_ERR_') ? e.code : 'FEZZ_ERR_SCHEDULED_FAILED';
  return json(status, { error: statusText(status), code, message, statusCode: status, run });
}
