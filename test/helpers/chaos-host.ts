/**
 * Helpers for the chaos suite (test/chaos/): a real `fezz serve` child process started from
 * the sources, its JSON log lines kept in memory and in a file, and a small admin client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { request, type Dispatcher } from 'undici';
import { CLI } from './cli.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ServeOptions {
  dir: string;
  cacheDir: string;
  token: string;
  graceMs: number;
  /** Passed as --start-timeout when the CLI has that flag (see {@link cliHasStartTimeout}). */
  startTimeoutMs: number;
  /** Every stdout/stderr line of the host goes here too. */
  logFile: string;
  /** How long to wait for the "fezz listening" line. */
  listenTimeoutMs: number;
  /** `--isolation`. @default 'thread' (what these suites test; `fezz serve` defaults to sandbox) */
  isolation?: 'thread' | 'sandbox';
  /** `--drain-delay`, in ms. @default 0 (`fezz serve` defaults to 5000) */
  drainDelayMs?: number;
}

/** Whether `fezz serve` knows --start-timeout yet (it is being added while this suite is written). */
export function cliHasStartTimeout(): boolean {
  try {
    return readFileSync(path.join(ROOT, 'src', 'cli', 'commands', 'serve.ts'), 'utf8').includes("'--start-timeout");
  } catch {
    return false;
  }
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: number; time?: string };

export class ServeProcess {
  readonly child: ChildProcess;
  readonly args: string[];
  url = '';
  adminUrl = '';
  /** Parsed JSON lines of stdout, with the performance.now() they arrived at. */
  readonly logs: Array<{ at: number; line: LogLine }> = [];
  /** stdout lines that are not JSON, and every stderr line. */
  readonly otherLines: Array<{ at: number; stream: 'stdout' | 'stderr'; text: string }> = [];
  exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  readonly #log: WriteStream;

  constructor(o: ServeOptions, withStartTimeout: boolean) {
    // The young generation bin/fezz.js gives a host (it relaunches Node with it).
    this.args = ['--max-semi-space-size=16', ...CLI, 'serve',
      '--dir', o.dir, '--port', '0', '--admin-port', '0', '--grace', String(o.graceMs),
      '--cache-dir', o.cacheDir, '--token', o.token];
    if (withStartTimeout) this.args.push('--start-timeout', String(o.startTimeoutMs));
    // Threads unless a test asks for the sandbox default (older CLIs have no --isolation).
    const serveSource = readFileSync(path.join(ROOT, 'src', 'cli', 'commands', 'serve.ts'), 'utf8');
    if (serveSource.includes("'--isolation")) this.args.push('--isolation', o.isolation ?? 'thread');
    // These suites check the grace period, not the load-balancer drain delay (rolling-restart.test.ts does).
    if (serveSource.includes("'--drain-delay")) this.args.push('--drain-delay', String(o.drainDelayMs ?? 0));
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('FEZZ_')) delete env[k];
    this.#log = createWriteStream(o.logFile);
    this.child = spawn(process.execPath, this.args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal, at: performance.now() };
        resolve(this.exit);
      });
    });
    this.#lines(this.child.stdout!, 'stdout');
    this.#lines(this.child.stderr!, 'stderr');
  }

  #lines(stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): void {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.#log.write(chunk);
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf('\n')) !== -1) {
        const text = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (text === '') continue;
        const at = performance.now();
        if (name === 'stdout' && text.startsWith('{')) {
          try { this.logs.push({ at, line: JSON.parse(text) as LogLine }); continue; } catch { /* not JSON after all */ }
        }
        this.otherLines.push({ at, stream: name, text });
      }
    });
  }

  /** Resolve once the "fezz listening" line names both URLs; reject if the host exits first. */
  async listening(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const hit = this.logs.find((l) => typeof l.line.msg === 'string' && l.line.msg.startsWith('fezz listening'));
      if (hit) {
        this.url = String(hit.line.url);
        this.adminUrl = String(hit.line.admin);
        return;
      }
      if (this.exit) throw new Error(`fezz serve exited before listening (code ${this.exit.code}, signal ${this.exit.signal}):\n${this.tail(30)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`fezz serve printed no "fezz listening" line within ${timeoutMs} ms:\n${this.tail(30)}`);
  }

  /** The last `n` lines of output, as text (for failure messages). */
  tail(n: number): string {
    const all = [
      ...this.logs.map((l) => ({ at: l.at, text: JSON.stringify(l.line) })),
      ...this.otherLines.map((l) => ({ at: l.at, text: `[${l.stream}] ${l.text}` })),
    ].sort((a, b) => a.at - b.at);
    return all.slice(-n).map((l) => l.text).join('\n');
  }

  /** Log lines (as JSON text) that mention `needle`, at most `n`. */
  linesWith(needle: string, n = 3): string[] {
    const out: string[] = [];
    for (const l of this.logs) {
      const text = JSON.stringify(l.line);
      if (text.includes(needle)) { out.push(text.length > 600 ? `${text.slice(0, 600)}...` : text); if (out.length >= n) break; }
    }
    return out;
  }

  async closeLog(): Promise<void> {
    await new Promise<void>((r) => this.#log.end(() => r()));
  }
}

export interface AdminResult {
  op: string;
  method: string;
  path: string;
  expected: number[];
  status: number | null;
  /** Error text when there was no answer (connection error, client deadline). */
  error: string | null;
  body: string;
  startedAt: number;
  ms: number;
}

/** One admin API call with the bearer token and a client deadline; never throws. */
export async function adminCall(dispatcher: Dispatcher, adminUrl: string, token: string, op: string, method: 'GET' | 'POST' | 'DELETE',
  p: string, expected: number[], timeoutMs: number, body?: unknown): Promise<AdminResult> {
  const startedAt = performance.now();
  const out: AdminResult = { op, method, path: p, expected, status: null, error: null, body: '', startedAt, ms: 0 };
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await request(adminUrl + p, {
      method, dispatcher, signal: ac.signal,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    out.body = await res.body.text();
    out.status = res.statusCode;
  } catch (err) {
    out.error = ac.signal.aborted ? `no answer within ${timeoutMs} ms` : `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`.trim();
  }
  clearTimeout(timer);
  out.ms = performance.now() - startedAt;
  return out;
}
