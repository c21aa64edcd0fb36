/**
 * Keeps the recent log lines that concern a function (those with an `fn` field) and
 * streams new ones to followers: what `GET /admin/logs` and `fezz logs` read. Fed by pino's
 * `streamWrite` hook, so it sees exactly the lines the host writes; and by
 * {@link LogHub.request}, one compact record per request of a function (the host calls it
 * when the access log is off, so `fezz logs` shows every request without a log line per
 * request being written).
 */

import { performance } from 'node:perf_hooks';

export interface LogLine {
  time: number;
  level: string;
  fn: string;
  requestId?: string;
  msg: string;
  [k: string]: unknown;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Request records kept per function id (apart from its log lines, so a busy function's requests do not push its log lines out). */
const REQUESTS_KEPT = 500;
/** Longest path kept in a request record, in characters (longer ones are cut, with `…`). */
const MAX_PATH_CHARS = 256;

/**
 * One request of a function: what the access log line says, kept as given (times are
 * performance.now() values; they become epoch ms and rounded durations only when read).
 */
interface RequestRecord { fn: string; requestId: string; method: string; path: string; status: number; startMs: number; endMs: number }

/** The last REQUESTS_KEPT records of one function id, oldest first once full. */
class RequestRing {
  readonly items: RequestRecord[] = [];
  next = 0;
  push(r: RequestRecord): void {
    if (this.items.length < REQUESTS_KEPT) this.items.push(r);
    else { this.items[this.next] = r; this.next = (this.next + 1) % REQUESTS_KEPT; }
  }
  /** The last `n`, oldest first. */
  last(n: number): RequestRecord[] {
    const ordered = this.items.length < REQUESTS_KEPT ? this.items : [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
    return n >= ordered.length ? ordered.slice() : ordered.slice(ordered.length - n);
  }
}

/** A request record as the line the access log would have written (`msg: "request"`), timed at its response. */
function requestLine(r: RequestRecord): LogLine {
  const path = r.path.length > MAX_PATH_CHARS ? r.path.slice(0, MAX_PATH_CHARS) + '…' : r.path;
  return {
    time: Math.round(performance.timeOrigin + r.endMs), level: 'info', fn: r.fn, requestId: r.requestId, msg: 'request',
    method: r.method, path, status: r.status, ms: Math.round((r.endMs - r.startMs) * 100) / 100,
  };
}

export class LogHub {
  readonly #perFn = new Map<string, LogLine[]>();
  readonly #requests = new Map<string, RequestRing>();
  readonly #followers = new Set<{ id: string; push(line: LogLine): void }>();
  readonly #keep: number;

  /** @param keep lines kept per function id. @default 1000 */
  constructor(keep = 1000) { this.#keep = keep; }

  /** pino `hooks.streamWrite`: look at a serialized line, return it unchanged. */
  readonly streamWrite = (s: string): string => {
    if (s.includes('"fn":"')) {
      try {
        const o = JSON.parse(s) as Record<string, unknown>;
        if (typeof o.fn === 'string') this.#add(o);
      } catch { /* not ours to judge */ }
    }
    return s;
  };

  #add(o: Record<string, unknown>): void {
    const fn = o.fn as string;
    const id = fn.includes('@') ? fn.slice(0, fn.indexOf('@')) : fn;
    const { level, time, pid: _pid, hostname: _h, ...rest } = o;
    const line: LogLine = {
      ...rest,
      time: typeof time === 'string' ? Date.parse(time) : typeof time === 'number' ? time : Date.now(),
      level: LEVELS[level as number] ?? String(level),
      fn, msg: String(o.msg ?? ''),
    };
    let list = this.#perFn.get(id);
    if (list === undefined) { list = []; this.#perFn.set(id, list); }
    list.push(line);
    if (list.length > this.#keep) list.splice(0, list.length - this.#keep);
    for (const f of this.#followers) if (f.id === id) f.push(line);
  }

  // hot path -- change with care
  /**
   * Record one request of function `id` (version `key`): its method, path (shown cut at 256
   * characters), status, and its arrival and response times (`performance.now()`, ms). A
   * push into a fixed-size ring, nothing formatted until read (`fezz logs` reads rarely, the
   * request path runs always); followers of `id` get it as a `msg: "request"` line.
   */
  request(id: string, key: string, requestId: string, method: string, path: string, status: number, startMs: number, endMs: number): void {
    let ring = this.#requests.get(id);
    if (ring === undefined) { ring = new RequestRing(); this.#requests.set(id, ring); }
    const r: RequestRecord = { fn: key, requestId, method, path, status, startMs, endMs };
    ring.push(r);
    if (this.#followers.size > 0) {
      let line: LogLine | null = null;
      for (const f of this.#followers) if (f.id === id) f.push(line ??= requestLine(r));
    }
  }

  /** The last `n` lines of function `id`: its log lines and its requests, merged in time order. */
  recent(id: string, n: number): LogLine[] {
    const list = this.#perFn.get(id) ?? [];
    const logs = n >= list.length ? [...list] : list.slice(list.length - n);
    const ring = this.#requests.get(id);
    if (ring === undefined) return logs;
    const reqs = ring.last(n).map(requestLine);
    // Both lists are in time order: merge, keep the last n (a log line before a request of the same ms).
    const out: LogLine[] = [];
    let i = 0;
    let j = 0;
    while (i < logs.length || j < reqs.length) {
      if (j >= reqs.length || (i < logs.length && logs[i]!.time <= reqs[j]!.time)) out.push(logs[i++]!);
      else out.push(reqs[j++]!);
    }
    return n >= out.length ? out : out.slice(out.length - n);
  }

  /** Call `push` for every new line of function `id`; returns the unsubscribe function. */
  follow(id: string, push: (line: LogLine) => void): () => void {
    const f = { id, push };
    this.#followers.add(f);
    return () => { this.#followers.delete(f); };
  }
}
