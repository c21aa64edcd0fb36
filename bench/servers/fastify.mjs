// Peer: Fastify with its own (native) handlers for every workload, answering the same bytes
// as raw-node.mjs and the fetch-style handler modules. Paths as in raw-node.mjs.
//
//   node bench/servers/fastify.mjs --port 3000 [--host 127.0.0.1]
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import Fastify from "fastify";
import { CHUNKS, STREAM_CHUNK } from "../handlers/stream-1m.mjs";
import { renderTable } from "../handlers/table.mjs";
import { createTodo, getTodo, listTodos } from "./native-todos.mjs";

const { values } = parseArgs({
  options: { port: { type: "string" }, host: { type: "string" } },
});
const port = Number(values.port ?? 3000);
const host = values.host ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fastify: --port must be an integer 0..65535, got ${values.port}`);
  process.exit(2);
}

const app = Fastify({ logger: false });
// The echo body as raw bytes; JSON bodies use Fastify's built-in parser.
app.addContentTypeParser("application/octet-stream", { parseAs: "buffer" }, (_req, body, done) => done(null, body));

const HELLO = "Hello, world!";
// JSON goes out as bytes: for a string, Fastify would add "; charset=utf-8" to application/json.
const JSON_BYTES = Buffer.from(JSON.stringify({ message: HELLO }));
const sendTodo = (reply, [status, text, extra]) => {
  reply.code(status).type("application/json");
  if (extra !== null) reply.headers(extra);
  return reply.send(Buffer.from(text));
};

app.get("/healthz", (_req, reply) => reply.type("text/plain;charset=UTF-8").send(HELLO));
app.get("/hello", (_req, reply) => reply.type("text/plain;charset=UTF-8").send(HELLO));
app.get("/json", (_req, reply) => reply.type("application/json").send(JSON_BYTES));
app.post("/echo", (req, reply) => reply.type("application/octet-stream").send(req.body));
app.get("/table", (_req, reply) => reply.type("text/html;charset=utf-8").send(renderTable()));
// stream-1m: the same 64 chunks of 16 KiB, each a fresh copy, from a Node Readable that makes
// a chunk only when read (Fastify pipes it, so the socket's backpressure sets the pace).
const streamChunk = Buffer.from(STREAM_CHUNK);
app.get("/stream-1m", (_req, reply) => {
  let sent = 0;
  const body = new Readable({
    read() {
      this.push(Buffer.from(streamChunk));
      if (++sent === CHUNKS) this.push(null);
    },
  });
  return reply.type("application/octet-stream").send(body);
});
app.get("/todos", (_req, reply) => sendTodo(reply, listTodos()));
app.post("/todos", (req, reply) => sendTodo(reply, createTodo(req.body)));
app.get("/todos/:id", (req, reply) => sendTodo(reply, getTodo(req.params.id)));

await app.listen({ port, host });
console.log(`fastify listening on http://${host}:${app.server.address().port}`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    app.server.closeAllConnections();
    process.exit(0);
  });
}
