/**
 * Resident set size of a process from /proc/<pid>/status: `VmHWM` (the peak, "high water
 * mark", which the kernel keeps for the life of the process) and `VmRSS` (now). Both cover
 * every thread of the process (so fezz's worker_threads count), but not its child processes;
 * `childrenPeakRss` and `treeRss` list those separately (a `process` or `native` plugin,
 * esbuild's service). Linux only.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Peak RSS of `pid` in MB (2^20 bytes), or null if /proc is unavailable or the process is gone. */
export function peakRssMb(pid: number): number | null {
  return statusKb(pid, "VmHWM");
}

/** RSS of `pid` now, in MB (2^20 bytes), or null if /proc is unavailable or the process is gone. */
export function rssMb(pid: number): number | null {
  return statusKb(pid, "VmRSS");
}

function statusKb(pid: number, field: "VmHWM" | "VmRSS"): number | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, "m").exec(status);
  return match?.[1] === undefined ? null : Number(match[1]) / 1024;
}

/** RSS now of a process and of each of its live descendants, in MB. */
export interface TreeRss {
  /** The process itself (VmRSS); null if it is gone. */
  readonly hostMb: number | null;
  /** Each live descendant (a plugin process, esbuild's service), VmRSS. */
  readonly children: readonly { readonly name: string; readonly pid: number; readonly rssMb: number }[];
  /** hostMb plus every child's, in MB. */
  readonly totalMb: number;
}

/** The RSS now of `pid` and its descendants (what "the host plus its children" occupies). */
export function treeRss(pid: number): TreeRss {
  const hostMb = rssMb(pid);
  const children = descendants(pid).flatMap((child) => {
    const mb = rssMb(child);
    return mb === null ? [] : [{ name: programName(child), pid: child, rssMb: mb }];
  });
  return { hostMb, children, totalMb: (hostMb ?? 0) + children.reduce((sum, c) => sum + c.rssMb, 0) };
}

/** One descendant process of a server and its peak RSS. */
export interface ChildPeak {
  /** Its program: the command name (`hello-go`, `esbuild`), or for `node` the script's file name. */
  readonly name: string;
  readonly pid: number;
  /** VmHWM in MB (2^20 bytes). */
  readonly peakRssMb: number;
}

/**
 * The peak RSS (VmHWM) of every process descended from `pid` that is alive now, e.g. a fezz
 * host's plugin processes and esbuild's service; an empty list when there are none or /proc
 * is unavailable.
 */
export function childrenPeakRss(pid: number): ChildPeak[] {
  return descendants(pid).flatMap((child) => {
    const mb = peakRssMb(child);
    return mb === null ? [] : [{ name: programName(child), pid: child, peakRssMb: mb }];
  });
}

/** PIDs of every live process descended from `pid`, ascending; empty without /proc. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>(); // pid -> ppid
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  for (const child of parents.keys()) {
    let up = parents.get(child);
    while (up !== undefined && up !== pid && up > 1) up = parents.get(up);
    if (up === pid) out.push(child);
  }
  return out.sort((a, b) => a - b);
}

/**
 * `comm` of a process; for a Node process, the file name of its script instead (Node 24 names
 * its main thread, so a Node process's `comm` is `MainThread` there, `node` before).
 */
function programName(pid: number): string {
  let comm = "?";
  try {
    comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    if (comm !== "node" && comm !== "MainThread") return comm;
    const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(1);
    // Skip node's flags (and the value of --import/--require/-r); the first other argument is the script.
    for (let i = 0; i < args.length; i++) {
      const arg = args[i] ?? "";
      // `node -e <source>`: fezz's sandbox spawner (src/runtime/sandbox/spawner.ts) runs so.
      if (arg === "-e" || arg === "--eval") return "node -e (sandbox spawner)";
      if (/^(--import|--require|-r|--loader)$/.test(arg)) i++;
      else if (!arg.startsWith("-") && arg !== "") return arg.slice(arg.lastIndexOf("/") + 1);
    }
  } catch {
    // gone meanwhile
  }
  return comm;
}
