/**
 * The host's logger (pino): JSON lines on stdout for machines, pretty lines for people (dev
 * mode, or a terminal). Every line carries the process id, so the lines of the processes of a
 * `--workers N` host, which share stdout, can be told apart.
 */
import { pino, type Logger } from 'pino';

/** How to build a logger. */
export interface LoggerOptions {
  level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Pretty lines (pino-pretty) instead of JSON, also chosen when stdout is a terminal. */
  dev: boolean;
  /** Where lines go instead of stdout (tests). */
  destination?: { write(line: string): unknown } | null;
  /** pino's `hooks.streamWrite`: sees each serialized line (observability/log-hub.ts). */
  streamWrite?: (line: string) => string;
}

/** Create the logger. */
export function createLogger(o: LoggerOptions): Logger {
  return pino({
    level: o.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(o.streamWrite ? { hooks: { streamWrite: o.streamWrite } } : {}),
  }, o.destination ?? (o.dev || process.stdout.isTTY
    ? pino.transport({ target: 'pino-pretty', options: { colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } })
    : pino.destination(1)));
}
