// The baseline: plain node:http answering the bench's workloads with the same bytes fezz
// sends. `/json` gets the JSON body; every other path (including /healthz) gets the text one.
//
//   node bench/servers/raw-node.mjs --port 3000 [--host 127.0.0.1]
//   PORT=3000 HOST=127.0.0.1 node bench/servers/raw-node.mjs
import { createServer } from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: { port: { type: "string" }, host: { type: "string" } },
});
const port = Number(values.port ?? process.env.PORT ?? 3000);
const host = values.host ?? process.env.HOST ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`raw-node: --port must be an integer 0..65535, got ${values.port ?? process.env.PORT}`);
  process.exit(2);
}

// Built once: the handler only picks one of two prebuilt answers.
const hello = Buffer.from("Hello, world!");
const json = Buffer.from(JSON.stringify({ message: "Hello, world!" }));
const helloHeaders = { "content-type": "text/plain;charset=UTF-8", "content-length": hello.length };
const jsonHeaders = { "content-type": "application/json", "content-length": json.length };

const server = createServer((req, res) => {
  if (req.url === "/json") {
    res.writeHead(200, jsonHeaders);
    res.end(json);
  } else {
    res.writeHead(200, helloHeaders);
    res.end(hello);
  }
});

server.listen(port, host, () => {
  const address = server.address();
  console.log(`raw-node listening on http://${host}:${typeof address === "object" && address ? address.port : port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
