/**
 * Host-wide counters of the limits that protect the listener (connection cap, timeouts,
 * malformed requests, clients that leave). Plain numbers bumped where the limit fires, read by
 * `/metrics` (`fezz_connections_dropped_total`, `fezz_client_errors_total{reason}`). Each
 * reason is also logged, at most once per 10 s with the running total, so a flood of bad
 * clients cannot flood the log.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';

/** Least time between two log lines of one reason, in ms. */
const LOG_EVERY_MS = 10_000;

export class HostCounters {
  /** Connections closed at accept because `maxConnections` was reached. */
  connectionsDropped = 0;
  /**
   * Requests refused or cut before a function saw them, by reason: `bad-request`,
   * `headers-too-large`, `request-timeout`, `body-stalled`, `send-timeout`, `duplicate-host`.
   */
  readonly clientErrors = new Map<string, number>();
  /**
   * Streamed response bodies by how they ended, per function: `complete`, `client` (it left),
   * `error` (the function's stream failed: connection reset), `idle` (`limits.streamIdleMs`),
   * `max` (`limits.streamMaxMs`), `send` (the client read nothing for the send timeout).
   * Keyed `fn + '\0' + end`.
   */
  readonly streamEnds = new Map<string, number>();
  readonly #logger: Logger | null;
  readonly #lastLog = new Map<string, number>();

  constructor(logger: Logger | null = null) {
    this.#logger = logger;
  }

  clientError(reason: string): void {
    const n = (this.clientErrors.get(reason) ?? 0) + 1;
    this.clientErrors.set(reason, n);
    this.logLimit(reason, n, { metric: 'fezz_client_errors_total' });
  }

  /** A streamed response ended `end` (see {@link streamEnds}); the limits among them are logged. */
  streamEnded(fn: string, end: string): void {
    const key = `${fn}\0${end}`;
    const n = (this.streamEnds.get(key) ?? 0) + 1;
    this.streamEnds.set(key, n);
    if (end === 'idle' || end === 'max' || end === 'send') this.logLimit(`stream-${end}`, n, { fn, metric: 'fezz_stream_ends_total' });
  }

  /** Log that the limit `reason` fired (`total` times so far), unless it was logged in the last 10 s. */
  logLimit(reason: string, total: number, fields: Record<string, unknown> = {}): void {
    if (this.#logger === null) return;
    const now = performance.now();
    const last = this.#lastLog.get(reason);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    this.#lastLog.set(reason, now);
    this.#logger.warn({ reason, total, ...fields }, `limit fired: ${reason} (see docs/operating.md; logged at most every 10 s)`);
  }
}
