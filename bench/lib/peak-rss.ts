/**
 * Peak resident set size of a process: `VmHWM` ("high water mark") in /proc/<pid>/status,
 * which the kernel keeps for the life of the process. It covers every thread of the process
 * (so fezz's worker_threads count), but not its child processes. Linux only.
 */
import { readFileSync } from "node:fs";

/** Peak RSS of `pid` in MB (2^20 bytes), or null if /proc is unavailable or the process is gone. */
export function peakRssMb(pid: number): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  return match?.[1] === undefined ? null : Number(match[1]) / 1024;
}
