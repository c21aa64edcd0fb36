/**
 * Host-wide counters of the limits that protect the listener (connection cap, timeouts,
 * malformed requests). Plain numbers bumped where the limit fires, read by `/metrics`
 * (`fezz_connections_dropped_total`, `fezz_client_errors_total{reason}`).
 */
export class HostCounters {
  /** Connections closed at accept because `maxConnections` was reached. */
  connectionsDropped = 0;
  /**
   * Requests refused or cut before a function saw them, by reason: `bad-request`,
   * `headers-too-large`, `request-timeout`, `body-stalled`, `send-timeout`, `duplicate-host`.
   */
  readonly clientErrors = new Map<string, number>();

  clientError(reason: string): void {
    this.clientErrors.set(reason, (this.clientErrors.get(reason) ?? 0) + 1);
  }
}
