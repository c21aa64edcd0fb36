/**
 * Where things are, and the environment every server child gets.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** The repository root (this file is bench/lib/paths.ts). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BENCH_DIR = join(REPO_ROOT, "bench");
/** The fetch-style handler modules, one per workload. */
export const HANDLERS_DIR = join(BENCH_DIR, "handlers");
/** The peers' programs (raw node:http, Fastify, Hono, Bun, Deno, workerd). */
export const SERVERS_DIR = join(BENCH_DIR, "servers");
/** The compiled plugin functions (hello-go, hello-c). */
export const FUNCTIONS_DIR = join(BENCH_DIR, "functions");
export const EXAMPLES_DIR = join(REPO_ROOT, "examples", "functions");
/** The peers' packages (bench/package.json), installed on first use. */
export const BENCH_MODULES = join(BENCH_DIR, "node_modules");

/** Environment for servers: the bench's own, minus anything that would change fezz's mode. */
export function serverEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "production" };
  for (const name of Object.keys(env)) {
    if (name.startsWith("FEZZ_")) delete env[name];
  }
  delete env.NODE_OPTIONS; // e.g. a `--import tsx` meant for the bench, not for the server
  return { ...env, ...extra };
}
