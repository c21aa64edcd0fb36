/**
 * One host process of a `--workers N` host (the primary is src/cluster/primary.ts). It runs a
 * whole Host of its own — its isolates, plugins and ABI store; a plugin talks to the process
 * that started it, on this process's own admin listener (an ephemeral loopback port whose
 * token nobody else has: the operator's admin API is the primary's). It serves the public
 * port together with the other processes, and answers the primary's calls (ipc.ts).
 *
 * Start-up: create and prepare the host, send `loaded`, open the public listener when the
 * primary says `listen` (after a source sync, with the port the first process bound).
 * Shutdown: `shutdown` from the primary, or SIGTERM sent to this process alone (then the
 * primary starts it again: a rolling restart of one process). SIGINT is ignored: a Ctrl-C
 * reaches the whole process group, and the primary coordinates.
 */
import type { HostOptions } from '../config/options.js';
import type { AdminApiHost } from '../admin/api-routes.js';
import type { LogLine } from '../observability/log-hub.js';
import net from 'node:net';
import { isFezzMessage, sendEvent, serveCalls } from './ipc.js';
import { shutdownOnce } from '../cli/serve-lifecycle.js';

/**
 * Run this process as a host process of a cluster.
 * @param options the host's options as `fezz serve` parsed them (its admin listener settings
 *   and token are replaced: see above).
 */
export async function runWorker(options: HostOptions, lifecycle: { graceMs: number; drainDelayMs: number }): Promise<void> {
  const { createHost } = await import('../host/host.js');
  // Cron triggers fire in the first host process only (each tick runs once per machine; docs/triggers.md).
  const host = await createHost({ ...options, adminPort: 0, adminHost: '127.0.0.1', adminSocket: undefined, token: undefined, tokenFile: undefined, schedule: options.schedule !== false && process.env.FEZZ_WORKER_INDEX === '1' });
  const api: AdminApiHost = host;
  const follows = new Map<number, () => void>();
  const stop = shutdownOnce(host.logger, (g, d) => host.close(g, d), lifecycle.graceMs, lifecycle.drainDelayMs);
  serveCalls({
    snapshot: () => api.snapshot(),
    deploy: (pkg: unknown, opts: { replace?: boolean } | null) => api.deploy(pkg, opts ?? {}),
    remove: (id: string, version: string) => api.remove(id, version),
    reload: () => api.reload(),
    secrets: (action: 'list' | 'put' | 'delete', id: string, name: string, valueBase64: string) => {
      if (action === 'list') return api.listSecrets(id);
      if (action === 'delete') return api.deleteSecret(id, name);
      const value = Buffer.from(String(valueBase64), 'base64');
      return api.putSecret(id, name, value).finally(() => value.fill(0));
    },
    scheduled: (id: string, cron: string | null) => api.runScheduled(String(id), typeof cron === 'string' ? cron : null),
    logs: (id: string, n: number) => api.recentLogs(id, n),
    metrics: () => host.metrics.getMetricsAsJSON(),
    follow: (sub: number, id: string) => {
      follows.get(sub)?.();
      follows.set(sub, api.followLogs(id, (line: LogLine) => sendEvent({ fezz: 'log', sub, line })));
    },
    unfollow: (sub: number) => { follows.get(sub)?.(); follows.delete(sub); },
    listen: async (port: number, mode: 'reusePort' | 'handed') => {
      const a = await host.listen({ port, reusePort: mode === 'reusePort', handed: mode === 'handed' });
      return { port: a.port, url: a.url };
    },
    // The primary's drain settings are this process's too; a second `shutdown` skips the delay.
    shutdown: () => stop('primary'),
  });
  process.on('unhandledRejection', (err) => host.logger.error({ err }, 'unhandled rejection in the host thread (an inline function?)'));
  // Connections the primary accepted (balancer.ts, where Node has no reusePort).
  process.on('message', (m: unknown, handle: unknown) => {
    if (!isFezzMessage(m) || m.fezz !== 'conn') return;
    if (handle instanceof net.Socket) host.acceptConnection(handle);
    if (process.connected) process.send!({ fezz: 'took', id: (m as unknown as { id: number }).id }, undefined, undefined, () => undefined);
  });
  process.on('SIGTERM', () => {
    sendEvent({ fezz: 'draining' });
    stop('SIGTERM');
  });
  process.on('SIGINT', () => undefined);
  await host.prepare();
  sendEvent({ fezz: 'loaded', pid: process.pid });
}
