/**
 * The SSE load client: N concurrent clients, each a raw `net` socket holding one
 * `GET <path>` with `accept: text/event-stream` open until its stream ends, in the bench
 * process. Every event's delivery latency is the receive time (`performance.timeOrigin +
 * performance.now()` when the socket's bytes reach this process, the same clock the servers
 * stamp events with) minus the send time the event carries (sse-parse.ts benchEventData).
 *
 * Opening: at most `openConcurrency` clients wait for their response head at once, so the
 * servers' listen backlog (511 in Node) never overflows into 1 s SYN retries, which would
 * measure the kernel rather than the server.
 */
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { LatencySamples } from "./percentile.js";
import { benchEventData, HttpResponseReader, SseParser } from "./sse-parse.js";

export interface SseLoadOptions {
  /** e.g. `"http://127.0.0.1:40123"`. */
  readonly url: string;
  /** Path and query, e.g. `"/sse?events=10&interval=100"`. */
  readonly path: string;
  readonly clients: number;
  /** Events each client must get before the stream ends. */
  readonly events: number;
  /** Clients waiting for their response head at once. @default 100 */
  readonly openConcurrency?: number;
  /** Every client still open after this is failed ("timeout"). */
  readonly timeoutMs: number;
}

export interface SseLoadResult {
  readonly clients: number;
  /** Clients that got status 200, `text/event-stream`, every event in order, and the end of the stream. */
  readonly completed: number;
  /** Events received, all clients. */
  readonly events: number;
  readonly expectedEvents: number;
  /** Delivery latency of every event received, ms; NaN when none. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /**
   * The same over the events sent once every client was open (send time after the last head
   * arrived): the fan-out alone, without connection set-up competing for the server; NaN when none.
   */
  readonly openP50Ms: number;
  readonly openP99Ms: number;
  /** Events in those two figures. */
  readonly openEvents: number;
  /** From the first connect until every client had its response head (or failed), ms. */
  readonly openMs: number;
  /** From the first connect until the last client finished, ms. */
  readonly allDoneMs: number;
  /** Failures by reason, e.g. `{ "ECONNRESET": 3, "timeout": 1 }`. */
  readonly failures: Readonly<Record<string, number>>;
}

const now = (): number => performance.timeOrigin + performance.now();

export function runSseClients(options: SseLoadOptions): Promise<SseLoadResult> {
  const target = new URL(options.url);
  const host = target.hostname;
  const port = Number(target.port);
  const request = Buffer.from(
    `GET ${options.path} HTTP/1.1\r\nhost: ${target.host}\r\naccept: text/event-stream\r\ncache-control: no-cache\r\n\r\n`,
    "latin1",
  );
  const latencies = new LatencySamples();
  const afterOpen = new LatencySamples();
  const failures: Record<string, number> = {};
  const sockets = new Set<Socket>();
  const openLimit = Math.max(1, options.openConcurrency ?? 100);
  let started = 0;
  let opening = 0;
  let headsOrFailed = 0;
  let finished = 0;
  let completed = 0;
  let events = 0;
  let openAt = Number.NaN;
  let lastDone = Number.NaN;
  const t0 = now();

  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const result = (): SseLoadResult => {
      const [p50Ms = Number.NaN, p99Ms = Number.NaN, maxMs = Number.NaN] = latencies.percentiles([50, 99, 100]);
      const [openP50Ms = Number.NaN, openP99Ms = Number.NaN] = afterOpen.percentiles([50, 99]);
      return {
        clients: options.clients,
        completed,
        events,
        expectedEvents: options.clients * options.events,
        p50Ms,
        p99Ms,
        maxMs,
        openP50Ms,
        openP99Ms,
        openEvents: afterOpen.count,
        openMs: (Number.isNaN(openAt) ? now() : openAt) - t0,
        allDoneMs: (Number.isNaN(lastDone) ? now() : lastDone) - t0,
        failures,
      };
    };
    const settleIfDone = (): void => {
      if (finished < options.clients) return;
      clearTimeout(timer);
      resolve(result());
    };
    const openNext = (): void => {
      while (opening < openLimit && started < options.clients) {
        started++;
        opening++;
        openOne();
      }
    };
    const headIn = (at: number): void => {
      opening--;
      if (++headsOrFailed === options.clients) openAt = at;
      openNext();
    };

    // Socket callbacks only note the time and queue the work; the queue is worked off in the
    // check phase, after the poll phase has run every ready socket's callback. So the k-th of
    // 1,000 sockets that became readable together is stamped after k-1 reads, not after k-1
    // reads and parses: the client's own parsing stays out of the latencies.
    const inbox: (() => void)[] = [];
    let flushing = false;
    const work = (job: () => void): void => {
      inbox.push(job);
      if (!flushing) {
        flushing = true;
        setImmediate(() => {
          flushing = false;
          for (let i = 0; i < inbox.length; i++) inbox[i]!();
          inbox.length = 0;
        });
      }
    };

    const openOne = (): void => {
      const reader = new HttpResponseReader();
      const parser = new SseParser();
      const decoder = new TextDecoder();
      let got = 0;
      let headSeen = false;
      let over = false;
      const socket = connect({ host, port, noDelay: true });
      sockets.add(socket);
      const finish = (failure: string | null, at: number): void => {
        if (over) return;
        over = true;
        if (!headSeen) headIn(at);
        sockets.delete(socket);
        socket.destroy();
        if (failure === null) completed++;
        else failures[failure] = (failures[failure] ?? 0) + 1;
        finished++;
        lastDone = at;
        settleIfDone();
      };
      const ended = (): string | null => (got === options.events ? null : `stream ended after ${got} of ${options.events} events`);
      const received = (bytes: Buffer, at: number): void => {
        if (over) return;
        let body: Buffer[];
        try {
          body = reader.push(bytes);
        } catch (error) {
          return finish(`bad response: ${error instanceof Error ? error.message : String(error)}`, at);
        }
        if (!headSeen && reader.head !== null) {
          headSeen = true;
          headIn(at);
          const type = reader.head.headers.get("content-type") ?? "";
          if (reader.head.status !== 200) return finish(`status ${reader.head.status}`, at);
          if (!type.toLowerCase().startsWith("text/event-stream")) return finish(`content-type ${JSON.stringify(type)}`, at);
        }
        for (const piece of body) {
          for (const event of parser.push(decoder.decode(piece, { stream: true }))) {
            const data = benchEventData(event.data);
            if (data === null) return finish("event without {n, t} data", at);
            if (data.n !== got + 1) return finish(`event ${data.n} after ${got}`, at);
            got++;
            events++;
            latencies.add(at - data.t);
            if (data.t > openAt) afterOpen.add(at - data.t); // false while openAt is NaN
          }
        }
        if (reader.done) finish(ended(), at);
      };
      socket.on("connect", () => socket.write(request));
      socket.on("data", (bytes: Buffer) => {
        const at = now();
        work(() => received(bytes, at));
      });
      socket.on("end", () => {
        const at = now();
        work(() => finish(!reader.end() ? "connection closed mid-response" : ended(), at));
      });
      socket.on("error", (error: NodeJS.ErrnoException) => {
        const at = now();
        work(() => finish(error.code ?? error.message, at));
      });
      socket.on("close", () => {
        const at = now();
        work(() => finish("connection closed", at));
      });
    };

    timer = setTimeout(() => {
      for (const socket of [...sockets]) socket.destroy(new Error("timeout"));
      // Clients never started (cannot happen unless opening stalled) count as failed too.
      const never = options.clients - started;
      if (never > 0) {
        failures["not opened before the timeout"] = never;
        finished += never;
        started = options.clients;
      }
      settleIfDone();
    }, options.timeoutMs);
    openNext();
  });
}
