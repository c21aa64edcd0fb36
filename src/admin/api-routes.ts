/**
 * The admin API (docs/admin-api.md) on the admin listener, behind the same bearer token as
 * the ABI: list functions and their state, stats, deploy, delete, reload, follow logs, and
 * `/metrics` in the Prometheus text format.
 */
import type { Registry as MetricsRegistry } from 'prom-client';
import { fezzError } from '../errors.js';
import type { WireResponse } from '../wire/types.js';
import type { AdminRoute } from './admin-server.js';
import type { FunctionInfo } from '../host/host.js';
import type { LoadProblem } from '../registry/registry.js';
import type { LogLine } from '../observability/log-hub.js';

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
    {
      method: 'GET', path: '/metrics',
      handle: async () => ({ status: 200, headers: ['content-type', metrics.contentType], body: await metrics.metrics() }),
    },
  ];
}
