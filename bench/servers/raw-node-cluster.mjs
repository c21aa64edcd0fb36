// The multicore baseline: raw-node.mjs (the same handler as the node-http row) in N node:cluster
// workers sharing one port. On Node 22.12+/23.1+ each worker binds the port itself with
// SO_REUSEPORT and the kernel spreads connections; on older Node (20) the primary accepts and
// hands each connection to a worker in turn (node:cluster's round-robin). That is how
// `fezz serve --workers` shares its port on the same Node (src/cluster/primary.ts), so the two
// multicore rows differ in the server, not in the port sharing. The primary forks every worker,
// waits until each has loaded, then tells them all to listen at once. A worker that dies takes
// the whole server down (exit 1), so a broken run is never measured as a slower one.
//
//   node bench/servers/raw-node-cluster.mjs --workers 2 --port 3000 [--host 127.0.0.1]
import cluster from "node:cluster";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { port: { type: "string" }, host: { type: "string" }, workers: { type: "string" } },
});
const workers = Number(values.workers ?? 2);
const port = Number(values.port ?? 3000);
const host = values.host ?? "127.0.0.1";
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  console.error(`raw-node-cluster: --workers must be an integer 1..64, got ${values.workers}`);
  process.exit(2);
}
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  // Not 0: every worker must bind the same port.
  console.error(`raw-node-cluster: --port must be an integer 1..65535, got ${values.port}`);
  process.exit(2);
}

/** Whether this Node binds with `listen({ reusePort })` (22.12+, 23.1+), as fezz's hasReusePort. */
function hasReusePort(version = process.versions.node) {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}
const reusePort = hasReusePort();

cluster.setupPrimary({
  exec: fileURLToPath(new URL("./raw-node.mjs", import.meta.url)),
  args: ["--port", String(port), "--host", host, ...(reusePort ? ["--reuse-port"] : [])],
});

let stopping = false;
let exitCode = 0;
let loaded = 0;
let listening = 0;
const forked = [];
for (let i = 0; i < workers; i++) {
  const worker = cluster.fork();
  forked.push(worker);
  worker.on("message", (message) => {
    if (message === "loaded" && ++loaded === workers) {
      for (const w of forked) w.send("listen");
    } else if (message === "listening" && ++listening === workers) {
      const how = reusePort ? "SO_REUSEPORT" : "node:cluster round-robin";
      console.log(`raw-node-cluster: ${workers} workers listening on http://${host}:${port} (${how})`);
    }
  });
}
cluster.on("exit", (worker, code, signal) => {
  if (stopping) {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(exitCode);
    return;
  }
  console.error(`raw-node-cluster: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); stopping`);
  stop(1);
});

function stop(code) {
  if (stopping) return;
  stopping = true;
  exitCode = code;
  for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
  if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code);
  setTimeout(() => process.exit(code), 3_000).unref();
}
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => stop(0));
