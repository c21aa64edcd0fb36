/**
 * What a scheduled run's answer means: the wire response a runtime gave for a scheduled
 * event (runtime/types.ts SCHEDULED_HANDLER) turned into the run's outcome. The JS runtimes
 * answer 204, or a JSON error they made (scheduledEntry); runtimes answer their own errors
 * (timeout 504, crash 500, ...) with the host's `{ code, message }` body; a plugin answers
 * whatever it pushed. None of it is trusted: bodies are read up to a bound, as text.
 */
import type { WireResponse } from '../wire/types.js';
import { SCHEDULED_FAILED_CODE, SCHEDULED_MISSING_CODE } from '../runtime/types.js';

/** How a run ended. `skipped-overlap`: the tick came while the previous run of its cron was still going, and `triggers.overlap` is false. */
export type RunOutcome = 'ok' | 'error' | 'timeout' | 'skipped-overlap';

/** Every outcome, in the order `/metrics` lists them. */
export const RUN_OUTCOMES: readonly RunOutcome[] = ['ok', 'error', 'timeout', 'skipped-overlap'];

/** Why a run failed (outcomes `error` and `timeout`). */
export interface RunError {
  /** A FEZZ_ERR_* code (FEZZ_ERR_SCHEDULED_FAILED: the handler threw; FEZZ_ERR_SCHEDULED_MISSING: no handler; others from the runtime), or `HTTP <status>` for a plugin's own answer. */
  code: string;
  /** At most MAX_MESSAGE characters. */
  message: string;
  /** The handler's stack when it threw (JS runtimes), at most MAX_STACK characters; for the log only. */
  stack?: string;
}

/** Most bytes of an answer read to find the error, in bytes. */
const MAX_BODY_BYTES = 64 * 1024;
/** Longest error message kept, in characters. */
export const MAX_MESSAGE = 2000;
const MAX_STACK = 16_384;
const CODE = /^FEZZ_ERR_[A-Z0-9_]{1,60}$/;

/**
 * The outcome of a scheduled run from its answer: `ok` for any 2xx, `timeout` for 504
 * (the runtime's deadline, limits.timeoutMs), else `error` with the code and message the
 * answer carries. A streamed answer is cancelled after its status is read.
 */
export async function outcomeOf(res: WireResponse): Promise<{ outcome: 'ok' | 'error' | 'timeout'; error?: RunError }> {
  if (res.stream !== undefined) res.stream.cancel('a scheduled run needs no body');
  if (res.status >= 200 && res.status <= 299) return { outcome: 'ok' };
  const text = bodyText(res.body);
  let code: string | null = null;
  let message: string | null = null;
  let stack: string | undefined;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed !== null && typeof parsed === 'object') {
      const o = parsed as { code?: unknown; message?: unknown; stack?: unknown };
      if (typeof o.code === 'string' && CODE.test(o.code)) code = o.code;
      if (typeof o.message === 'string') message = o.message;
      if (typeof o.stack === 'string' && o.stack !== '') stack = o.stack.slice(0, MAX_STACK);
    }
  } catch { /* not JSON: the text is the message */ }
  if (res.status === 504 || code === 'FEZZ_ERR_HANDLER_TIMEOUT') {
    return { outcome: 'timeout', error: { code: code ?? 'FEZZ_ERR_HANDLER_TIMEOUT', message: clip(message ?? (text || `answered ${res.status}`)) } };
  }
  if (code === SCHEDULED_MISSING_CODE) return { outcome: 'error', error: { code, message: 'no scheduled handler' } };
  const error: RunError = {
    code: code ?? `HTTP ${res.status}`,
    message: clip(message ?? (text !== '' ? text : `answered ${res.status}`)),
  };
  if (code === SCHEDULED_FAILED_CODE && stack !== undefined) error.stack = stack;
  return { outcome: 'error', error };
}

function bodyText(body: WireResponse['body']): string {
  if (body === null) return '';
  if (typeof body === 'string') return body.slice(0, MAX_BODY_BYTES);
  return Buffer.from(body.buffer, body.byteOffset, Math.min(body.byteLength, MAX_BODY_BYTES)).toString('utf8');
}

function clip(s: string): string {
  const one = s.trim();
  return one.length > MAX_MESSAGE ? `${one.slice(0, MAX_MESSAGE)}…` : one;
}
