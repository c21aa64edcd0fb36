/**
 * Sequential requests over one kept-alive connection, timed from the call until the last
 * byte of the response. The cold start and density suites use it so that a TCP handshake is
 * never part of a measured request (the connection is opened by a first `/healthz`).
 */
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";

export interface TimedResponse {
  readonly status: number;
  readonly body: string;
  /** Milliseconds from sending the request to the end of the response. */
  readonly ms: number;
}

export class KeepAliveClient {
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 });
  readonly #base: string;

  /** @param base e.g. `"http://127.0.0.1:40123"` */
  constructor(base: string) {
    this.#base = base;
  }

  /** One request; rejects on a connection error or after `timeoutMs` (default 30 s). */
  send(path: string, options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<TimedResponse> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const req = request(
        this.#base + path,
        { method: options.method ?? "GET", headers: options.headers, agent: this.#agent, timeout: options.timeoutMs ?? 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), ms: performance.now() - started }),
          );
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer to ${path} within ${options.timeoutMs ?? 30_000} ms`)));
      req.on("error", reject);
      req.end(options.body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** Nearest-rank percentile of `values` (p in 0..100); NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
}
