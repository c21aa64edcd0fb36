/**
 * The admin API (docs/admin-api.md) on the admin listener, behind the same bearer token as
 * the ABI: list functions and their state, stats, deploy, delete, reload, follow logs, and
 * `/metrics` in the Prometheus text format.
 */
import type { Registry as MetricsRegistry } from 'prom-client';
import { fezzError } from '../errors.js';
import type { WireResponse } from '../wire/types.js';
import type { AdminRoute } from './admin-server.js';
import type { Host } from '../host/host.js';

const json = (status: number, value: unknown): WireResponse => ({ status, headers: ['content-type', 'application/json'], body: JSON.stringify(value) });

export function apiRoutes(host: Host, metrics: MetricsRegistry): AdminRoute[] {
  return [
    {
      method: 'GET', path: '/admin/functions',
      handle: () => json(200, { functions: host.functions(), problems: host.problems }),
    },
    {
      method: 'GET', path: '/admin/functions/:id',
      handle: ({ params }) => {
        const versions = host.functions().filter((f) => f.id === params.id);
        if (versions.length === 0) throw fezzError('FEZZ_ERR_FUNCTION_NOT_FOUND', [params.id]);
        return json(200, { id: params.id, versions });
      },
    },
    {
      method: 'GET', path: '/admin/stats',
      handle: () => {
        const out: Record<string, unknown> = {};
        for (const f of host.functions()) {
          const s = f.stats;
          out[f.key] = { requests: s.requests, errors: s.errors, p50Ms: s.p50Ms, p99Ms: s.p99Ms, coldStarts: s.coldStarts, evictions: s.evictions, crashes: s.crashes, timeouts: s.timeouts, instances: s.instances, inflight: s.inflight, queued: s.queued };
        }
        return json(200, { functions: out, pendingAbiRequests: host.pendingRequests });
      },
    },
    {
      method: 'POST', path: '/admin/deploy',
      handle: async ({ body }) => {
        let pkg: unknown;
        try {
          pkg = JSON.parse(body.toString('utf8'));
        } catch (err) {
          throw fezzError('FEZZ_ERR_ABI_BAD_BODY', ['deploy', `not valid JSON (${(err as Error).message})`]);
        }
        const { key } = await host.deploy(pkg);
        return json(201, { key, status: 'serving' });
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
        return json(200, { functions: host.functions().map((f) => f.key), problems });
      },
    },
    {
      method: 'GET', path: '/admin/logs',
      handle: ({ search, res }) => {
        const fn = search.get('fn');
        if (fn === null || fn === '') throw fezzError('FEZZ_ERR_BAD_REQUEST', ['query parameter fn (a function id) is required']);
        const id = fn.includes('@') ? fn.slice(0, fn.indexOf('@')) : fn;
        const since = Math.max(0, Math.min(10_000, Number(search.get('since') ?? 100) || 0));
        const follow = search.get('follow') === '1' || search.get('follow') === 'true';
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        for (const line of host.logs.recent(id, since)) res.write(JSON.stringify(line) + '\n');
        if (!follow) { res.end(); return null; }
        // Headers now, not with the first line: a quiet function must not look like a hung host.
        res.flushHeaders();
        const stop = host.logs.follow(id, (line) => { res.write(JSON.stringify(line) + '\n'); });
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
