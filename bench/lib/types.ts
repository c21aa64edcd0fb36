/**
 * The shapes shared by the benchmark harness: the server and workload tables, what a load
 * generator measures, and what the runner records for each (server, workload) pair.
 */

/** One request, e.g. a seeding `POST /todos` sent before a workload's check. */
export interface RequestSpec {
  /** HTTP method, e.g. `"POST"`. */
  readonly method: string;
  /** URL path, the same on every server, e.g. `"/todos"`. */
  readonly path: string;
  /** Request body, sent as is (UTF-8). */
  readonly body?: string;
  /** Extra request headers, e.g. `{ "content-type": "application/json" }`. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** One kind of request the bench sends, e.g. `hello` (plain text) or `echo` (a 64 KiB POST). */
export interface Workload {
  /** Short name shown in the table, e.g. `"hello"`. */
  readonly name: string;
  /**
   * URL path on the servers that route by path (raw node:http, Fastify, the fetch-style peers),
   * e.g. `"/hello"` or `"/todos/50"`; fezz adapters map it (`/rpc/<id>`).
   */
  readonly path: string;
  /** HTTP method, e.g. `"GET"`. */
  readonly method: string;
  /** Request body, sent as is (UTF-8). */
  readonly body?: string;
  /** Extra request headers, e.g. `{ "content-type": "application/json" }`. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * What the fetch-style servers run: a module in bench/handlers/ (e.g. `"hello.mjs"`) whose
   * default export answers the workload. fezz serves it as a function named `fezzId`, except
   * when `fezzExample` names an example function to serve instead.
   */
  readonly handler: string;
  /** The fezz function id the handler module is served as, e.g. `"hello"` (`/rpc/hello`). */
  readonly fezzId: string;
  /**
   * An example under examples/functions/ that fezz serves instead of the handler module, with
   * its own routes (the workload's `path` is then the same on fezz), e.g. `"todos@1.0.0"`.
   */
  readonly fezzExample?: string;
  /**
   * `limits` for the fezz function's manifest, e.g. `{ concurrency: 1024 }` where a streaming
   * response holds its slot until it ends. Default: fezz's defaults.
   */
  readonly fezzLimits?: Readonly<Record<string, number>>;
  /** Requests sent once, in order, on each fresh server before the check (each must answer 2xx). */
  readonly setup?: readonly RequestSpec[];
  /** What every server must answer, checked once before any load: same status, type and bytes. */
  readonly expect: {
    readonly status: number;
    readonly contentType: string;
    readonly body: string;
  };
}

/** A server child process that is up and answering. */
export interface RunningServer {
  /** Base URL without a trailing slash, e.g. `"http://127.0.0.1:40123"`. */
  readonly url: string;
  /** PID of the server process (its VmHWM is the peak RSS column). */
  readonly pid: number;
  /** Stops the process (SIGTERM, then SIGKILL after a grace period). Never rejects. */
  stop(): Promise<void>;
}

/**
 * A competitor. The 2-field adapter of the issue (`name`, `start`), plus an optional path map
 * for servers that address workloads differently.
 */
export interface ServerAdapter {
  /** Short name shown in the table and accepted by `--servers`, e.g. `"node-http"`. */
  readonly name: string;
  /**
   * Starts a fresh server in its own process on a free loopback port; rejects with the reason.
   * It is told the workload it is about to serve, so a host can load only the function under
   * test (its peak RSS then holds nothing else); a server that answers everything ignores it.
   */
  start(workload: Workload): Promise<RunningServer>;
  /**
   * The URL path that serves `workload` on this server, or `null` when the server has no
   * equivalent (the row then says "not supported"). Default: `workload.path`.
   */
  pathFor?(workload: Workload): string | null;
}

/** What one load run asks for. */
export interface LoadOptions {
  readonly url: string;
  readonly method: string;
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Seconds of load. */
  readonly durationS: number;
  /** Concurrent keep-alive connections. */
  readonly connections: number;
}

/** What one load run measured. */
export interface Measurement {
  /** Completed requests per second over the whole run. */
  readonly rps: number;
  /** Median latency, in milliseconds. */
  readonly p50Ms: number;
  /** 99th percentile latency, in milliseconds. */
  readonly p99Ms: number;
  /** Completed requests. */
  readonly requests: number;
  /** Measured duration, in seconds. */
  readonly durationS: number;
  /** Responses whose status was not 2xx (wrk: not 2xx or 3xx). */
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  /**
   * MiB/s the generator read (wrk's `Transfer/sec`: headers, chunk framing and partly received
   * bodies included); undefined when it does not say (autocannon).
   */
  readonly readMbPerS?: number;
}

/** A load generator: autocannon (in process) or wrk (a child process). */
export interface LoadGenerator {
  /** e.g. `"wrk 4.1.0 (1 thread)"`, printed above the table. */
  readonly name: string;
  run(options: LoadOptions): Promise<Measurement>;
}

/** The outcome of one (server, workload, round). */
export type PairOutcome =
  | {
      readonly kind: "ok";
      readonly round: number;
      readonly measurement: Measurement;
      /** Peak RSS of the server process (VmHWM), in MB (2^20 bytes); null if unreadable. */
      readonly peakRssMb: number | null;
      /**
       * Peak RSS of each of the server's descendant processes alive after the run (a plugin
       * process, esbuild's service), in MB. Not part of `peakRssMb`.
       */
      readonly children: readonly { readonly name: string; readonly pid: number; readonly peakRssMb: number }[];
    }
  | {
      readonly kind: "failed";
      readonly round: number;
      /** `start`: the server never became ready; `check`: wrong answer; `load`: the run broke. */
      readonly stage: "start" | "check" | "load";
      readonly reason: string;
    }
  | { readonly kind: "unsupported"; readonly round: number };

/** How one row's value is chosen from its rounds. */
export type PickRule = "best" | "median";

/** One row of the table: a (server, workload) pair over all rounds. */
export interface Row {
  readonly server: string;
  readonly workload: string;
  /** Every round, in run order. */
  readonly rounds: readonly PairOutcome[];
  /** The round chosen by the pick rule among the successful ones; null if none succeeded. */
  readonly picked: Extract<PairOutcome, { kind: "ok" }> | null;
  /** Median over rounds of RPS / node-http's RPS in the same round (runner.ts pairedRatio); null without a pair. */
  readonly ratio: number | null;
  /** Bytes of the workload's response body (MB/s without a generator's own figure is RPS x this). */
  readonly bodyBytes?: number;
  /** Like `ratio`, on the MiB/s the generator read (wrk); null without it. */
  readonly mbRatio?: number | null;
}
