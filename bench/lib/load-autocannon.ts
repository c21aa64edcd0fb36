/**
 * Load through autocannon's programmatic API, in the bench process itself (the servers are
 * child processes, so it never shares their event loop). autocannon has no type declarations;
 * the few fields used here are typed locally and it is loaded with `createRequire`.
 */
import { createRequire } from "node:module";
import { LatencySamples } from "./percentile.js";
import type { LoadGenerator, LoadOptions, Measurement } from "./types.js";

interface AutocannonOptions {
  url: string;
  method: string;
  body?: string;
  headers?: Record<string, string>;
  connections: number;
  duration?: number;
  amount?: number;
  pipelining: number;
  timeout: number;
}

interface AutocannonResult {
  duration: number; // seconds
  errors: number;
  non2xx: number;
  requests: { total: number };
}

interface AutocannonInstance {
  on(event: "response", listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}

type Autocannon = (
  options: AutocannonOptions,
  callback: (error: Error | null, result: AutocannonResult) => void,
) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

export function autocannonGenerator(): LoadGenerator {
  const version = (createRequire(import.meta.url)("autocannon/package.json") as { version: string }).version;
  return {
    name: `autocannon ${version} (in process)`,
    run: runAutocannon,
  };
}

function runAutocannon(options: LoadOptions): Promise<Measurement> {
  const samples = new LatencySamples();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        method: options.method,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
        connections: options.connections,
        duration: options.durationS,
        pipelining: 1,
        timeout: 10, // seconds
      },
      (error, result) => {
        if (error) {
          reject(error);
          return;
        }
        const [p50 = Number.NaN, p99 = Number.NaN] = samples.percentiles([50, 99]);
        resolve({
          rps: result.duration > 0 ? result.requests.total / result.duration : 0,
          p50Ms: p50,
          p99Ms: p99,
          requests: result.requests.total,
          durationS: result.duration,
          non2xx: result.non2xx,
          errors: result.errors, // autocannon counts timeouts here too
        });
      },
    );
    // Like autocannon's own histogram (and wrk), only successful responses count for latency.
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) samples.add(ms);
    });
  });
}

/** A run of exactly `amount` requests (autocannon's `amount`), for the soak suite. */
export interface AmountOptions extends Omit<LoadOptions, "durationS"> {
  /** Requests to send in all. */
  readonly amount: number;
  /** Called with the running count of responses, after each one (keep it cheap). */
  readonly onResponse?: (count: number) => void;
}

/**
 * Sends exactly `amount` requests over `connections` keep-alive connections and measures
 * them like `run` does. wrk has no request count, so the soak suite always uses this.
 */
export function runAutocannonAmount(options: AmountOptions): Promise<Measurement> {
  const samples = new LatencySamples();
  let count = 0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        method: options.method,
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
        connections: options.connections,
        amount: options.amount,
        pipelining: 1,
        timeout: 10, // seconds
      },
      (error, result) => {
        if (error) {
          reject(error);
          return;
        }
        const [p50 = Number.NaN, p99 = Number.NaN] = samples.percentiles([50, 99]);
        resolve({
          rps: result.duration > 0 ? result.requests.total / result.duration : 0,
          p50Ms: p50,
          p99Ms: p99,
          requests: result.requests.total,
          durationS: result.duration,
          non2xx: result.non2xx,
          errors: result.errors,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) samples.add(ms);
      options.onResponse?.(++count);
    });
  });
}
