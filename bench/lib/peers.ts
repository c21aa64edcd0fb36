/**
 * The peers: every server that is not fezz. Each starts in its own child process on a free
 * loopback port and answers `GET /healthz` with 200 once it is up.
 * - `node-http`: raw node:http with native handlers (bench/servers/raw-node.mjs), the baseline;
 * - `fastify`: Fastify with native handlers (bench/servers/fastify.mjs);
 * - `hono`, `bun`, `deno`, `workerd`: the workload's fetch-style handler module from
 *   bench/handlers/, run by a Hono app on @hono/node-server, Bun.serve, Deno.serve and workerd.
 * All but `node-http` need bench/package.json's packages, installed on first use
 * (peer-install.ts); an install or start that fails makes the row say why.
 */
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { childLogDir, freePort, LOOPBACK, startChild } from "./child.js";
import { ensurePeerPackages } from "./peer-install.js";
import { BENCH_MODULES, HANDLERS_DIR, REPO_ROOT, SERVERS_DIR, serverEnv } from "./paths.js";
import type { RunningServer, ServerAdapter, Workload } from "./types.js";

/** The server every ratio is computed against. */
export const BASELINE = "node-http";

/** A peer adapter, plus what it needs installed. */
export interface PeerAdapter extends ServerAdapter {
  /** bench/package.json packages it needs; empty for node-http. */
  readonly packages: readonly string[];
  /** One of the 100 MB runtimes, left out of `--smoke` unless `--peers`. */
  readonly heavy: boolean;
}

interface Launch {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

function peer(
  name: string,
  packages: readonly string[],
  heavy: boolean,
  launch: (workload: Workload, port: number) => Launch,
): PeerAdapter {
  return {
    name,
    packages,
    heavy,
    async start(workload: Workload): Promise<RunningServer> {
      await ensurePeerPackages(packages);
      const port = await freePort();
      const how = launch(workload, port);
      return startChild({
        label: name,
        command: how.command,
        args: how.args,
        cwd: REPO_ROOT,
        env: serverEnv(how.env),
        url: `http://${LOOPBACK}:${port}`,
        readyPath: "/healthz",
      });
    },
  };
}

const bin = (name: string): string => join(BENCH_MODULES, ".bin", name);
const server = (file: string): string => join(SERVERS_DIR, file);
const hostPort = (port: number): string[] => ["--port", String(port), "--host", LOOPBACK];
const moduleOf = (workload: Workload): string[] => ["--module", join(HANDLERS_DIR, workload.handler)];

/**
 * workerd serves what a config names: write one per start (the socket address is in it), with
 * the entry module (bench/servers/workerd-main.mjs: /healthz, then the handler) and the
 * handler module copied beside it as `handler.mjs`.
 */
function workerdConfig(workload: Workload, port: number): string {
  const dir = mkdtempSync(join(childLogDir(), "workerd-"));
  copyFileSync(server("workerd-main.mjs"), join(dir, "main.mjs"));
  copyFileSync(join(HANDLERS_DIR, workload.handler), join(dir, "handler.mjs"));
  const config = join(dir, "config.capnp");
  writeFileSync(
    config,
    `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [(name = "main", worker = .mainWorker)],
  sockets = [(name = "http", address = "${LOOPBACK}:${port}", http = (), service = "main")],
);

const mainWorker :Workerd.Worker = (
  modules = [
    (name = "main.mjs", esModule = embed "main.mjs"),
    (name = "handler.mjs", esModule = embed "handler.mjs"),
  ],
  compatibilityDate = "2025-01-01",
);
`,
  );
  return config;
}

export const peers: readonly PeerAdapter[] = [
  peer(BASELINE, [], false, (_w, port) => ({ command: process.execPath, args: [server("raw-node.mjs"), ...hostPort(port)] })),
  peer("fastify", ["fastify"], false, (_w, port) => ({
    command: process.execPath,
    args: [server("fastify.mjs"), ...hostPort(port)],
  })),
  peer("hono", ["hono", "@hono/node-server"], false, (w, port) => ({
    command: process.execPath,
    args: [server("hono-node.mjs"), ...moduleOf(w), ...hostPort(port)],
  })),
  peer("workerd", ["workerd"], true, (w, port) => ({ command: bin("workerd"), args: ["serve", workerdConfig(w, port)] })),
  peer("bun", ["bun"], true, (w, port) => ({ command: bin("bun"), args: [server("bun-serve.mjs"), ...moduleOf(w), ...hostPort(port)] })),
  peer("deno", ["deno"], true, (w, port) => ({
    command: bin("deno"),
    args: ["run", "--allow-net", "--allow-read", "--allow-env", "--no-prompt", server("deno-serve.mjs"), ...moduleOf(w), ...hostPort(port)],
    env: { DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1" },
  })),
];
