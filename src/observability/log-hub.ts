/**
 * Keeps the recent log lines that concern a function (those with an `fn` field) and
 * streams new ones to followers: what `GET /admin/logs` and `fezz logs` read. Fed by pino's
 * `streamWrite` hook, so it sees exactly the lines the host writes.
 */

export interface LogLine {
  time: number;
  level: string;
  fn: string;
  requestId?: string;
  msg: string;
  [k: string]: unknown;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export class LogHub {
  readonly #perFn = new Map<string, LogLine[]>();
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

  /** The last `n` lines of function `id`. */
  recent(id: string, n: number): LogLine[] {
    const list = this.#perFn.get(id) ?? [];
    return n >= list.length ? [...list] : list.slice(list.length - n);
  }

  /** Call `push` for every new line of function `id`; returns the unsubscribe function. */
  follow(id: string, push: (line: LogLine) => void): () => void {
    const f = { id, push };
    this.#followers.add(f);
    return () => { this.#followers.delete(f); };
  }
}
