/**
 * The host's logger: pino, JSON lines on stdout. Every line about a function carries
 * `fn` (`id@version`) and, when about a request, `requestId`.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** @default 'info' */
  level?: LevelWithSilent;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino({ level: options.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
