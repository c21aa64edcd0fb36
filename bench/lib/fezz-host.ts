/**
 * Starting the real host: `node bin/fezz.js serve --dir <dir>` on a free port, as a child
 * process (`BENCH_FEZZ_BIN=/path/to/fezz.js` runs another build, e.g. a second checkout to
 * compare branches). Used by the throughput adapters and by the cold start, density and soak
 * suites. Flags a build does not list in `fezz serve --help` are left out, so an older build
 * still runs.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { relative } from "node:path";
import { freePort, LOOPBACK, startChild } from "./child.js";
import { REPO_ROOT, serverEnv } from "./paths.js";
import type { RunningServer } from "./types.js";

export interface FezzStartOptions {
  /** Used in the log file name, e.g. `"fezz-isolate"`. */
  readonly label: string;
  /** The functions directory to serve (absolute). */
  readonly dir: string;
  /** `--cache-dir`: where bundles go; a fresh dir means every function is bundled at load. */
  readonly cacheDir?: string;
  /** Start the admin listener on a free port with a known token (for `/admin/stats`). */
  readonly admin?: boolean;
  /** @default 20000 */
  readonly readyTimeoutMs?: number;
  /** The `bin/fezz.js` to run. @default {@link fezzBin} */
  readonly bin?: string;
  /**
   * `fezz serve --workers <n>`: host processes sharing the port (the multicore suite). Left
   * out when undefined (one process, the host itself). Throws when the build has no such flag.
   */
  readonly workers?: number;
}

export interface RunningFezz extends RunningServer {
  /** `http://127.0.0.1:<port>` of the admin listener, when `admin` was asked for. */
  readonly adminUrl: string | null;
  /** Its bearer token. */
  readonly token: string;
}

/** The fezz entry point the bench runs. */
export function fezzBin(): string {
  return process.env.BENCH_FEZZ_BIN ?? `${REPO_ROOT}bin/fezz.js`;
}

export async function startFezz(options: FezzStartOptions): Promise<RunningFezz> {
  const bin = options.bin ?? fezzBin();
  if (!existsSync(bin)) {
    throw new Error(`${bin.startsWith(REPO_ROOT) ? relative(REPO_ROOT, bin) : bin} does not exist yet (npm run build)`);
  }
  const flags = serveFlags(bin);
  const port = await freePort();
  const token = `bench-${randomBytes(16).toString("hex")}`; // fezz wants >= 16 characters
  const args = [bin, "serve", "--dir", options.dir, "--port", String(port)];
  let adminUrl: string | null = null;
  if (flags.has("--admin-port")) {
    // Never 3001, where another host may be running: port 0, or a free port we know.
    const adminPort = options.admin === true ? await freePort() : 0;
    args.push("--admin-port", String(adminPort));
    if (options.admin === true) adminUrl = `http://${LOOPBACK}:${adminPort}`;
  }
  // The token goes in the environment (`fezz serve` takes it out of its env at start), not on
  // the command line, where it would show in the process list.
  // `fezz serve` sandboxes every function by default (`--isolation sandbox`, since e4025ec),
  // which would make the isolate and inline rows sandboxes too (and refuse inline functions):
  // the bench asks for the thread floor, and the sandbox rows say `"isolation": "sandbox"` in
  // their manifests (fezz-functions.ts), as each row's tier is the manifest's.
  if (flags.has("--isolation")) args.push("--isolation", "thread");
  // The drain delay (5 s by default: /healthz 503 while a load balancer notices) keeps a host
  // alive after SIGTERM with nothing to notice it: every stop would cost 5 s, after the
  // measurement. The bench stops its servers at once.
  if (flags.has("--drain-delay")) args.push("--drain-delay", "0");
  if (options.workers !== undefined) {
    if (!flags.has("--workers")) throw new Error("this fezz build has no --workers flag (fezz serve --workers)");
    args.push("--workers", String(options.workers));
  }
  if (options.cacheDir !== undefined) {
    if (!flags.has("--cache-dir")) throw new Error("this fezz build has no --cache-dir flag");
    args.push("--cache-dir", options.cacheDir);
  }
  const running = await startChild({
    label: options.label,
    command: process.execPath,
    // The flags `fezz serve` runs with in production (bin/fezz.js), given here so the launcher does
    // not start a second process (the measured PID, RSS and signals are the host's own).
    args: ["--zero-fill-buffers", "--max-semi-space-size=16", ...args],
    cwd: REPO_ROOT,
    env: serverEnv({ FEZZ_LISTEN_HOST: LOOPBACK, FEZZ_TOKEN: token }),
    url: `http://${LOOPBACK}:${port}`,
    readyPath: "/healthz",
    readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
  });
  return { ...running, adminUrl, token };
}

const flagCache = new Map<string, Set<string>>();

/**
 * The long flags `fezz serve --help` lists, read once per binary. An empty set if the help
 * cannot be read: the start then fails with the real reason.
 */
export function serveFlags(bin: string): Set<string> {
  let flags = flagCache.get(bin);
  if (flags === undefined) {
    let help = "";
    try {
      help = execFileSync(process.execPath, [bin, "serve", "--help"], { encoding: "utf8", timeout: 20_000, cwd: REPO_ROOT });
    } catch {
      // leave empty
    }
    flags = new Set(help.match(/--[a-z][a-z0-9-]*/g) ?? []);
    flagCache.set(bin, flags);
  }
  return flags;
}
