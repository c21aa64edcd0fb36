/**
 * The host process's own metrics for `/metrics`: prom-client's default set (CPU, RSS, heap
 * and heap spaces, event-loop lag, handles, file descriptors, Node version, start time)
 * except `nodejs_gc_duration_seconds`.
 *
 * That one is left out on purpose. It observes every garbage collection through a
 * PerformanceObserver, and each entry it creates survives into the old generation; at 30k
 * requests/s the host runs ~27 scavenges a second, so ~86 KB/s of old space accumulated until
 * a major GC, and the host's RSS climbed 145 -> 178 MB in 90 s under load (`--trace-gc-nvp`:
 * `promoted=3184` on every scavenge, 0 without the observer; RSS then stayed at 142 MB over
 * 3 million requests). prom-client offers no switch for it, so the other metrics are
 * registered one by one from its modules.
 */
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';

const require = createRequire(import.meta.url);

/** prom-client's default metric modules, minus `gc` (see above). */
const MODULES = [
  'processCpuTotal', 'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors',
  'processMaxFileDescriptors', 'eventLoopLag', 'processResources', 'processHandles',
  'processRequests', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version',
] as const;

type Collect = (registry: Registry, config: Record<string, unknown>) => void;

/**
 * Register the process metrics on `registry`.
 * @throws Error when prom-client's metric modules cannot be found (an incompatible version).
 */
export function registerProcessMetrics(registry: Registry): void {
  const config = { register: registry, eventLoopMonitoringPrecision: 10 };
  for (const name of MODULES) {
    // processResources needs process.getActiveResourcesInfo (Node >= 17), as in prom-client.
    if (name === 'processResources' && typeof (process as { getActiveResourcesInfo?: unknown }).getActiveResourcesInfo !== 'function') continue;
    const collect = require(`prom-client/lib/metrics/${name}`) as Collect;
    collect(registry, config);
  }
}
