/**
 * The peers' packages live in bench/package.json, not in the root one, so the project's own
 * `npm ci` stays small. The bench installs them on first use: `npm install --prefix bench`.
 * Fastify and Hono are `dependencies` (a few MB); workerd, Bun and Deno (about 100 MB each)
 * are `optionalDependencies`, so a run that needs none of them installs with
 * `--omit=optional`. At most one install runs per bench run and kind; a failed install is
 * not retried, and every peer that needed it reports the reason.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runTool } from "./child.js";
import { BENCH_DIR, BENCH_MODULES, REPO_ROOT, serverEnv } from "./paths.js";

/** The 100 MB runtimes, each an npm package with a native binary. */
export const HEAVY_PACKAGES = ["workerd", "bun", "deno"] as const;

const NPM_TIMEOUT_MS = 15 * 60_000; // 15 min: three 100 MB downloads on a slow link

const installs = new Map<"light" | "full", Promise<void>>();

/** Whether `bench/node_modules/<name>` is there. */
export function isInstalled(name: string): boolean {
  return existsSync(join(BENCH_MODULES, name, "package.json"));
}

/**
 * Makes sure every package in `names` is installed under bench/node_modules, running npm at
 * most once per kind (`light`: `--omit=optional`; `full`: everything). Rejects with npm's reason.
 */
export function ensurePeerPackages(names: readonly string[]): Promise<void> {
  const missing = names.filter((name) => !isInstalled(name));
  if (missing.length === 0) return Promise.resolve();
  const heavy = missing.some((name) => (HEAVY_PACKAGES as readonly string[]).includes(name));
  const kind = heavy ? "full" : "light";
  let install = installs.get(kind);
  if (install === undefined) {
    const args = ["install", "--prefix", BENCH_DIR, "--no-audit", "--no-fund", ...(heavy ? [] : ["--omit=optional"])];
    process.stderr.write(
      `bench: ${missing.join(", ")} not in bench/node_modules; installing the peers' packages: npm ${args.join(" ")}` +
        (heavy ? " (workerd, bun and deno are about 100 MB each; this can take a few minutes)\n" : "\n"),
    );
    const started = Date.now();
    install = runTool({ label: `npm-install-${kind}`, command: "npm", args, cwd: REPO_ROOT, env: serverEnv(), timeoutMs: NPM_TIMEOUT_MS }).then(
      () => {
        process.stderr.write(`bench: peers installed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      },
      (error: unknown) => {
        const why = error instanceof Error ? error.message : String(error);
        process.stderr.write(`bench: npm install failed: ${why}\n`);
        throw new Error(`npm install --prefix bench failed: ${why}`);
      },
    );
    installs.set(kind, install);
  }
  return install.then(() => {
    const still = names.filter((name) => !isInstalled(name));
    if (still.length > 0) throw new Error(`${still.join(", ")} not installed by npm install --prefix bench (optional dependency skipped on this platform?)`);
  });
}
