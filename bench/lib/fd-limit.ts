/** The bench process's open-files limit (what the SSE client's sockets count against). */
import { readFileSync } from "node:fs";

/** The soft `RLIMIT_NOFILE` from `/proc/self/limits` (Linux); null where it cannot be read or is unlimited. */
export function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m?.[1] === undefined || m[1] === "unlimited" ? null : Number(m[1]);
  } catch {
    return null;
  }
}
