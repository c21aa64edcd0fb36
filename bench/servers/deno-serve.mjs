// Peer: Deno.serve (the npm package `deno`), serving one handler module from bench/handlers/
// through its default export's fetch.
//
//   deno run --allow-net --allow-read --allow-env bench/servers/deno-serve.mjs --module bench/handlers/hello.mjs --port 3000
import { CTX, ENV, fetchServerArgs, isHealthz } from "./fetch-args.mjs";

const { port, host, moduleUrl } = fetchServerArgs("deno-serve");
const handler = (await import(moduleUrl)).default;
const ok = "ok";

Deno.serve(
  { port, hostname: host, onListen: (addr) => console.log(`deno-serve listening on http://${addr.hostname}:${addr.port}`) },
  (request) => (isHealthz(request.url) ? new Response(ok) : handler.fetch(request, ENV, CTX)),
);
