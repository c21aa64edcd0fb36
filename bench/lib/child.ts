/**
 * Server child processes: a free loopback port, spawning with output to a log file, waiting
 * until ready, and stopping by PID. Every live child is tracked so that SIGINT, SIGTERM or a
 * crash of the bench never leaves a server behind (see `killAllChildren`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pinnedCommand } from "./cpu-pin.js";
import { httpCheck } from "./http-check.js";
import type { RunningServer } from "./types.js";

/** Loopback address every server binds to, so load never leaves the machine. */
export const LOOPBACK = "127.0.0.1";

const STOP_GRACE_MS = 5_000; // 5 s between SIGTERM and SIGKILL
const READY_POLL_MS = 50; // 50 ms between readiness probes

/** Children started and not yet stopped, by PID. */
const live = new Map<number, ChildProcess>();

let logDir: string | undefined;
let logCounter = 0;

/** The folder that holds every child's stdout+stderr for this run (created on first use). */
export function childLogDir(): string {
  logDir ??= mkdtempSync(join(tmpdir(), "fezz-bench-"));
  return logDir;
}

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("could not get a free port"))));
    });
  });
}

export interface StartChildOptions {
  /** Used in the log file name, e.g. `"node-http"`. */
  readonly label: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Base URL the server will answer on, e.g. `"http://127.0.0.1:40123"`. */
  readonly url: string;
  /** Polled with GET until it answers 200, e.g. `"/healthz"`. */
  readonly readyPath: string;
  /** Gives up after this many milliseconds. @default 20000 */
  readonly readyTimeoutMs?: number;
}

/**
 * Spawns a server in its own process group (so stopping it also stops anything it spawned),
 * with stdout and stderr going to a log file rather than through the bench's event loop, and
 * resolves once `readyPath` answers 200. Rejects with a one-line reason (the child's exit code
 * or the timeout, plus the last line of its log); the child is stopped before rejecting.
 */
export async function startChild(options: StartChildOptions): Promise<RunningServer> {
  const logFile = join(childLogDir(), `${String(++logCounter).padStart(3, "0")}-${options.label}.log`);
  const logFd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    const how = pinnedCommand(options.command, options.args);
    child = spawn(how.command, how.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", logFd, logFd],
      detached: true,
    });
  } finally {
    closeSync(logFd); // the child holds its own copy
  }
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  await Promise.race([new Promise((resolve) => child.once("spawn", resolve)), spawnError]);
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`could not spawn ${options.command}: ${(await spawnError).message}`);
  }
  live.set(pid, child);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const running: RunningServer = {
    url: options.url,
    pid,
    stop: () => stopChild(child, exited),
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
  let lastProblem = "no answer";
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      live.delete(pid);
      const how = child.exitCode !== null ? `code ${child.exitCode}` : `signal ${child.signalCode}`;
      throw new Error(`exited with ${how}${logTail(logFile)} (log: ${logFile})`);
    }
    if (Date.now() > deadline) {
      await running.stop();
      const seconds = (options.readyTimeoutMs ?? 20_000) / 1000;
      throw new Error(`not ready after ${seconds} s (${lastProblem})${logTail(logFile)} (log: ${logFile})`);
    }
    try {
      const res = await httpCheck(options.url + options.readyPath, { timeoutMs: 1_000 });
      if (res.status === 200) return running;
      lastProblem = `${options.readyPath} answered ${res.status}`;
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    await sleep(READY_POLL_MS);
  }
}

export interface RunToolOptions {
  /** Used in the log file name, e.g. `"build-plugins-go"`. */
  readonly label: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Killed (the whole process group) after this many milliseconds. @default 300000 */
  readonly timeoutMs?: number;
}

/**
 * Runs a short-lived tool (e.g. a build script) to completion in its own process group, with
 * stdout and stderr going to a log file, tracked like a server so that Ctrl-C or a crash of
 * the bench also ends it and everything it spawned (a compiler, `go build`). Resolves on exit
 * code 0; rejects with a one-line reason (exit code or timeout, plus the most telling line of
 * its log, plus the log's path).
 */
export async function runTool(options: RunToolOptions): Promise<void> {
  const logFile = join(childLogDir(), `${String(++logCounter).padStart(3, "0")}-${options.label}.log`);
  const logFd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", logFd, logFd],
      detached: true,
    });
  } finally {
    closeSync(logFd);
  }
  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | Error>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    child.once("error", (error) => {
      clearTimeout(timer);
      resolve(error);
    });
    child.once("spawn", () => {
      if (child.pid !== undefined) live.set(child.pid, child);
      timer = setTimeout(() => {
        if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
      }, options.timeoutMs ?? 300_000);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  if (child.pid !== undefined) {
    signalGroup(child.pid, "SIGKILL"); // anything it left behind in its group
    live.delete(child.pid);
  }
  if (outcome instanceof Error) throw new Error(`could not run ${options.command}: ${outcome.message}`);
  if (outcome.code === 0) return;
  const how = outcome.code !== null ? `code ${outcome.code}` : `signal ${outcome.signal}`;
  throw new Error(`exited with ${how}${logTail(logFile, /\berror\b/i)} (log: ${logFile})`);
}

/** SIGTERM to the child's process group, SIGKILL after the grace period. Never rejects. */
async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  if (child.exitCode === null && child.signalCode === null) {
    signalGroup(pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }
  // The group may outlive its leader (e.g. a plugin process); make sure it is gone too.
  signalGroup(pid, "SIGKILL");
  live.delete(pid);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // negative PID: the whole process group the child leads
  } catch {
    // already gone
  }
}

/** Helper processes (wrk) that are not servers: not group leaders, killed by PID alone. */
const helpers = new Set<ChildProcess>();

/** Tracks a short-lived helper process (e.g. wrk) so `killAllChildren` ends it too. */
export function trackHelper(child: ChildProcess): void {
  helpers.add(child);
  child.once("exit", () => helpers.delete(child));
}

/**
 * SIGKILLs every server and helper still running, synchronously (safe inside
 * `process.on("exit")`). Call it from SIGINT/SIGTERM handlers and on a fatal error.
 */
export function killAllChildren(): void {
  for (const pid of live.keys()) signalGroup(pid, "SIGKILL");
  live.clear();
  for (const child of helpers) child.kill("SIGKILL");
  helpers.clear();
}

/**
 * `": <the most telling line of the log>"`, or `""`: the first `...Error: ...` line (a Node
 * crash prints it between source excerpts, stack frames and `Node.js vX`), else the first line
 * matching `telling` (a tool's `error:` line), else the last line that is not stack or banner
 * noise. Lines longer than 300 characters are cut.
 */
function logTail(file: string, telling?: RegExp): string {
  let lines: string[];
  try {
    lines = readFileSync(file, "utf8").split("\n").map((line) => line.trim()).filter(Boolean);
  } catch {
    return "";
  }
  const errorLine =
    lines.find((line) => /^([A-Za-z]*Error\b|Error \[)/.test(line)) ??
    (telling === undefined ? undefined : lines.find((line) => telling.test(line)));
  const noise = /^(at |Node\.js v|\^|[{}]|code:|url:)/;
  const line = errorLine ?? lines.filter((l) => !noise.test(l)).at(-1);
  if (line === undefined) return "";
  return `: ${line.length > 300 ? `${line.slice(0, 300)}…` : line}`;
}
