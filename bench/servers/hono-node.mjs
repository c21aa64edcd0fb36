// Peer: a Hono app on @hono/node-server (Node), serving one handler module from
// bench/handlers/. A module that exports `routes` ([method, path, export name], e.g. todos)
// gets them as Hono routes with Hono's params; any other is mounted for every path.
//
//   node bench/servers/hono-node.mjs --module bench/handlers/hello.mjs --port 3000
import process from "node:process";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { CTX, ENV, fetchServerArgs } from "./fetch-args.mjs";

const { port, host, moduleUrl } = fetchServerArgs("hono-node");
const mod = await import(moduleUrl);

const app = new Hono();
app.get("/healthz", (c) => c.text("ok"));
if (Array.isArray(mod.routes)) {
  for (const [method, path, name] of mod.routes) {
    const handler = mod[name];
    app.on(method, path, (c) => handler(c.req.raw, ENV, { waitUntil: CTX.waitUntil, params: c.req.param() }));
  }
} else {
  const handler = mod.default;
  app.all("*", (c) => handler.fetch(c.req.raw, ENV, CTX));
}

const server = serve({ fetch: app.fetch, port, hostname: host }, (info) => {
  console.log(`hono-node listening on http://${host}:${info.port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
