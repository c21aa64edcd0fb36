/**
 * Parses the text wrk 4 prints with `--latency` into a Measurement. Kept apart from the
 * process handling so it can be checked against saved output.
 *
 * The lines read (anything else is ignored):
 * ```
 *   Latency Distribution
 *      50%  250.00us
 *      99%    5.00ms
 *   1117570 requests in 10.01s, 138.29MB read
 *   Socket errors: connect 0, read 0, write 0, timeout 0
 *   Non-2xx or 3xx responses: 10
 * Requests/sec: 111649.02
 * Transfer/sec:     13.82MB
 * ```
 */
import type { Measurement } from "./types.js";

const TIME_UNITS_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** wrk prints bytes in binary units (KB = 1024 B): each in MiB. */
const BYTE_UNITS_MB: Readonly<Record<string, number>> = { B: 2 ** -20, KB: 2 ** -10, MB: 1, GB: 2 ** 10, TB: 2 ** 20 };

/** `"250.00us"` -> 0.25 (ms); NaN when it is not a wrk duration. */
export function parseWrkTime(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (match?.[1] === undefined || match[2] === undefined) return Number.NaN;
  return Number(match[1]) * (TIME_UNITS_MS[match[2]] ?? Number.NaN);
}

/** Throws when the output lacks the request count or the latency distribution. */
export function parseWrkOutput(output: string): Measurement {
  const percentile = (p: string): number => {
    const match = new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, "m").exec(output);
    return match?.[1] === undefined ? Number.NaN : parseWrkTime(match[1]);
  };
  const summary = /^\s*(\d+) requests in ([\d.]+\w+),/m.exec(output);
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(output);
  const sockets = /^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/m.exec(output);
  const non2xx = /^\s*Non-2xx or 3xx responses: (\d+)/m.exec(output);
  const transfer = /^Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)\s*$/m.exec(output);
  const p50Ms = percentile("50");
  const p99Ms = percentile("99");
  if (summary?.[1] === undefined || summary[2] === undefined || rps?.[1] === undefined) {
    throw new Error(`unexpected wrk output: ${output.trim().split("\n").at(-1) ?? "(empty)"}`);
  }
  if (Number.isNaN(p50Ms) || Number.isNaN(p99Ms)) {
    throw new Error("wrk output has no latency distribution (was --latency passed?)");
  }
  return {
    rps: Number(rps[1]),
    p50Ms,
    p99Ms,
    requests: Number(summary[1]),
    durationS: parseWrkTime(summary[2]) / 1000,
    non2xx: non2xx?.[1] === undefined ? 0 : Number(non2xx[1]),
    errors: sockets === null ? 0 : sockets.slice(1, 5).reduce((sum, n) => sum + Number(n), 0),
    ...(transfer?.[1] === undefined || transfer[2] === undefined ? {} : { readMbPerS: Number(transfer[1]) * (BYTE_UNITS_MB[transfer[2]] ?? Number.NaN) }),
  };
}
