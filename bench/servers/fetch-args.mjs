// Flags shared by the fetch-style peers (hono-node.mjs, bun-serve.mjs, deno-serve.mjs), which
// run under Node, Bun and Deno alike (hence node:process and node:util, which all three have).
//
//   --module <file>   the handler module (bench/handlers/*.mjs) whose default export's
//                     fetch(request, env, ctx) answers every request but GET /healthz
//   --port <n>        --host <address>
import process from "node:process";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

export function fetchServerArgs(name) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { port: { type: "string" }, host: { type: "string" }, module: { type: "string" } },
  });
  const port = Number(values.port ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(name, `--port must be an integer 0..65535, got ${values.port}`);
  if (values.module === undefined) fail(name, "--module <handler module> is required");
  return { port, host: values.host ?? "127.0.0.1", moduleUrl: pathToFileURL(resolve(values.module)).href };
}

function fail(name, text) {
  console.error(`${name}: ${text}`);
  process.exit(2);
}

/** What the handlers get as `env` and `ctx`: fixed objects, built once (the handlers use neither). */
export const ENV = Object.freeze({});
export const CTX = Object.freeze({ waitUntil() {}, params: Object.freeze({}) });

/** True for the readiness probe; a suffix test costs next to nothing per request. */
export const isHealthz = (url) => url.endsWith("/healthz");
