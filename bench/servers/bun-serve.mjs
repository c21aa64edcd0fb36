// Peer: Bun.serve (the npm package `bun`), serving one handler module from bench/handlers/
// through its default export's fetch.
//
//   bun bench/servers/bun-serve.mjs --module bench/handlers/hello.mjs --port 3000
import { CTX, ENV, fetchServerArgs, isHealthz } from "./fetch-args.mjs";

const { port, host, moduleUrl } = fetchServerArgs("bun-serve");
const handler = (await import(moduleUrl)).default;
const ok = "ok";

const server = Bun.serve({
  port,
  hostname: host,
  development: false,
  fetch(request) {
    return isHealthz(request.url) ? new Response(ok) : handler.fetch(request, ENV, CTX);
  },
});
console.log(`bun-serve listening on http://${host}:${server.port}`);
