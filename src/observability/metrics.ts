/**
 * `/metrics` in the Prometheus text format (prom-client): process metrics (all of prom-client's
 * defaults but the GC histogram, see process-metrics.ts), and per-function
 * request counts by status, duration histograms, cold starts, crashes, timeouts, evictions,
 * queue depth, live and busy instances, WebSockets (open, buffered bytes, backpressure, closes by reason). Function metrics are computed at scrape time from
 * {@link StatsBook} and the runtimes' stats, so the request path pays nothing for them.
 */
import { Registry, type MetricValue } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.js';
import { DURATION_BUCKETS_S, type StatsBook } from './function-stats.js';
import type { RuntimeStats } from '../runtime/types.js';
import type { HostCounters } from './host-counters.js';

/** What the metrics read at scrape time. */
export interface MetricsSource {
  stats: StatsBook;
  /** Live runtimes by `id@version`. */
  runtimes(): Iterable<[string, RuntimeStats]>;
  /** Requests waiting for a plugin's answer. */
  pendingAbi(): number;
  /** The listener's limits that fired. */
  counters: HostCounters;
  /** Scheduled runs (cron triggers, `fezz trigger`) as `[id@version, outcome, runs]` (src/triggers/scheduler.ts). */
  scheduledRuns?: () => Iterable<[string, string, number]>;
}

type Kind = 'counter' | 'gauge' | 'histogram';

/** A metric whose values are computed when scraped. */
function computed(name: string, help: string, type: Kind, values: () => Array<MetricValue<string> & { metricName?: string }>) {
  return {
    name, help, type, aggregator: 'sum' as const,
    get: async () => ({ name, help, type, aggregator: 'sum' as const, values: values() }),
    reset() {},
  };
}

export function createMetrics(source: MetricsSource): Registry {
  const registry = new Registry();
  registerProcessMetrics(registry);
  const perRuntime = (pick: (s: RuntimeStats) => number) => () => {
    const out: MetricValue<string>[] = [];
    for (const [fn, s] of source.runtimes()) out.push({ labels: { fn }, value: pick(s) });
    return out;
  };
  const metrics = [
    computed('fezz_requests_total', 'Requests answered, by function and HTTP status.', 'counter', () => {
      const out: MetricValue<string>[] = [];
      for (const [fn, s] of source.stats.entries()) for (const [status, n] of s.byStatus) out.push({ labels: { fn, status: String(status) }, value: n });
      return out;
    }),
    computed('fezz_request_duration_seconds', 'Time from arrival to response, by function.', 'histogram', () => {
      const out: Array<MetricValue<string> & { metricName: string }> = [];
      for (const [fn, s] of source.stats.entries()) {
        let cum = 0;
        for (let i = 0; i < DURATION_BUCKETS_S.length; i++) {
          cum += s.buckets[i]!;
          out.push({ metricName: 'fezz_request_duration_seconds_bucket', labels: { fn, le: String(DURATION_BUCKETS_S[i]) }, value: cum });
        }
        cum += s.buckets[DURATION_BUCKETS_S.length]!;
        out.push({ metricName: 'fezz_request_duration_seconds_bucket', labels: { fn, le: '+Inf' }, value: cum });
        out.push({ metricName: 'fezz_request_duration_seconds_sum', labels: { fn }, value: s.sumSeconds });
        out.push({ metricName: 'fezz_request_duration_seconds_count', labels: { fn }, value: s.requests });
      }
      return out;
    }),
    computed('fezz_cold_starts_total', 'Instances started (cold starts), by function (since its last load).', 'counter', perRuntime((s) => s.coldStarts)),
    computed('fezz_instance_crashes_total', 'Instances lost to a crash, exit, out-of-memory or a stuck event loop.', 'counter', perRuntime((s) => s.crashes)),
    computed('fezz_uncaught_errors_total', 'Errors a function left unhandled (a throw in a timer, an unhandled rejection); the instance kept serving.', 'counter', perRuntime((s) => s.uncaughtErrors ?? 0)),
    computed('fezz_timeouts_total', 'Requests answered 504 after limits.timeoutMs.', 'counter', perRuntime((s) => s.timeouts)),
    computed('fezz_evictions_total', 'Idle instances stopped after the idle TTL.', 'counter', perRuntime((s) => s.evictions)),
    computed('fezz_queue_depth', 'Requests waiting for a free instance slot.', 'gauge', perRuntime((s) => s.queued)),
    computed('fezz_instances', 'Live instances (starting or warm).', 'gauge', perRuntime((s) => s.instances)),
    computed('fezz_inflight_requests', 'Requests running now.', 'gauge', perRuntime((s) => s.inflight)),
    computed('fezz_client_aborts_total', 'Requests whose client went away before the response (dropped from the queue, or request.signal aborted).', 'counter', () => {
      const out: MetricValue<string>[] = [];
      for (const [fn, s] of source.stats.entries()) out.push({ labels: { fn }, value: s.clientAborts });
      return out;
    }),
    computed('fezz_connections_dropped_total', 'Public connections closed at accept because maxConnections was reached.', 'counter', () => [{ labels: {}, value: source.counters.connectionsDropped }]),
    computed('fezz_client_errors_total', 'Requests refused or cut before a function saw them, by reason (bad-request, headers-too-large, request-timeout, body-stalled, send-timeout, duplicate-host).', 'counter', () =>
      [...source.counters.clientErrors].map(([reason, n]) => ({ labels: { reason }, value: n }))),
    computed('fezz_stream_ends_total', 'Streamed response bodies by function and how they ended: complete, client (left), error (reset), idle, max, send (limits).', 'counter', () =>
      [...source.counters.streamEnds].map(([key, n]) => { const [fn, end] = key.split('\0'); return { labels: { fn: fn!, end: end! }, value: n }; })),
    computed('fezz_abi_pending_requests', 'Requests waiting for a plugin to push its answer.', 'gauge', () => [{ labels: {}, value: source.pendingAbi() }]),
    computed('fezz_websockets_open', 'WebSockets open now, by function (src/websocket/).', 'gauge', perRuntime((s) => s.webSockets?.open ?? 0)),
    computed('fezz_websocket_buffered_bytes', 'Bytes the host holds for open WebSockets now (client messages not yet taken by the function, function messages not yet written to the client), by function.', 'gauge', perRuntime((s) => s.webSockets?.bufferedBytes ?? 0)),
    computed('fezz_websocket_backpressure_total', 'Times the host stopped reading a WebSocket client because its function had a window of messages not taken, by function.', 'counter', perRuntime((s) => s.webSockets?.pauses ?? 0)),
    computed('fezz_websocket_closes_total', 'WebSockets ended, by function and reason: client, abnormal, function, instance, idle, shutdown, retired, message-too-big, protocol, violation; and upgrades refused at limits.maxWebSockets (refused-cap).', 'counter', () => {
      const out: MetricValue<string>[] = [];
      for (const [fn, s] of source.runtimes()) for (const [reason, n] of Object.entries(s.webSockets?.closes ?? {})) out.push({ labels: { fn, reason }, value: n });
      return out;
    }),
    computed('fezz_scheduled_runs_total', 'Scheduled runs (cron triggers and fezz trigger) by function and outcome: ok, error, timeout, skipped-overlap.', 'counter', () =>
      [...(source.scheduledRuns?.() ?? [])].map(([fn, outcome, value]) => ({ labels: { fn, outcome }, value }))),
  ];
  for (const m of metrics) registry.registerMetric(m as never);
  return registry;
}
