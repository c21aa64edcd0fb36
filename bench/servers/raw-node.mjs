// The baseline: plain node:http answering every workload with the same bytes as the others,
// through Node's own req/res API (no web Request/Response). Routes by path:
//   /json  /echo (POST)  /table  /todos (GET, POST)  /todos/:id (GET)  /stream-1m
//   /sse?events=&interval=; anything else (including /healthz and /hello) gets the hello text.
//
//   node bench/servers/raw-node.mjs --port 3000 [--host 127.0.0.1]
//   PORT=3000 HOST=127.0.0.1 node bench/servers/raw-node.mjs
//
// As a node:cluster worker (servers/raw-node-cluster.mjs) it listens only when its primary
// sends "listen", so every worker joins the port at the same moment, and with --reuse-port it
// binds the port itself with SO_REUSEPORT (Node 22.12+), as fezz's --workers host processes do.
import cluster from "node:cluster";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { sseParams } from "../handlers/sse.mjs";
import { CHUNKS, STREAM_CHUNK } from "../handlers/stream-1m.mjs";
import { renderTable } from "../handlers/table.mjs";
import { createTodo, getTodo, listTodos } from "./native-todos.mjs";

const { values } = parseArgs({
  options: { port: { type: "string" }, host: { type: "string" }, "reuse-port": { type: "boolean", default: false } },
});
const port = Number(values.port ?? process.env.PORT ?? 3000);
const host = values.host ?? process.env.HOST ?? "127.0.0.1";
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`raw-node: --port must be an integer 0..65535, got ${values.port ?? process.env.PORT}`);
  process.exit(2);
}

// Built once: hello and json only pick a prebuilt answer.
const hello = Buffer.from("Hello, world!");
const json = Buffer.from(JSON.stringify({ message: "Hello, world!" }));
const helloHeaders = { "content-type": "text/plain;charset=UTF-8", "content-length": hello.length };
const jsonHeaders = { "content-type": "application/json", "content-length": json.length };

function send(res, [status, text, extra]) {
  const body = Buffer.from(text);
  res.writeHead(status, { "content-type": "application/json", "content-length": body.length, ...extra });
  res.end(body);
}

function readBody(req, done) {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => done(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
}

// stream-1m: the same 64 chunks of 16 KiB as bench/handlers/stream-1m.mjs, each a fresh copy,
// written with res.write (chunked) and only while the socket takes them (backpressure).
const streamChunk = Buffer.from(STREAM_CHUNK);
const streamHeaders = { "content-type": "application/octet-stream" };
function streamOneMiB(res) {
  res.writeHead(200, streamHeaders);
  let sent = 0;
  const next = () => {
    while (sent < CHUNKS) {
      sent++;
      if (!res.write(Buffer.from(streamChunk))) {
        res.once("drain", next);
        return;
      }
    }
    res.end();
  };
  next();
}

// sse: the fan-out of bench/handlers/sse.mjs, natively: one ticker per interval writes each
// event to every open response; t is taken once per tick, before the loop.
const sseHeaders = { "content-type": "text/event-stream", "cache-control": "no-store" };
const tickers = new Map(); // interval ms -> { subscribers: Set<(t) => void>, timer }
const now = () => performance.timeOrigin + performance.now();
function subscribe(interval, subscriber) {
  let ticker = tickers.get(interval);
  if (ticker === undefined) {
    const t = { subscribers: new Set(), timer: undefined };
    t.timer = setInterval(() => {
      const at = now();
      for (const s of t.subscribers) s(at);
      if (t.subscribers.size === 0) {
        clearInterval(t.timer);
        tickers.delete(interval);
      }
    }, interval);
    tickers.set(interval, t);
    ticker = t;
  }
  ticker.subscribers.add(subscriber);
  return () => ticker.subscribers.delete(subscriber);
}
function serverSentEvents(req, res) {
  const { events, interval } = sseParams(req.url);
  res.writeHead(200, sseHeaders);
  res.write(": open\n\n");
  let n = 0;
  const unsubscribe = subscribe(interval, (t) => {
    n++;
    res.write(`id: ${n}\ndata: {"n":${n},"t":${t}}\n\n`);
    if (n === events) {
      unsubscribe();
      res.end();
    }
  });
  res.once("close", unsubscribe); // the client left (or the response ended)
}

const server = createServer((req, res) => {
  const url = req.url;
  if (url === "/json") {
    res.writeHead(200, jsonHeaders);
    res.end(json);
  } else if (url === "/echo" && req.method === "POST") {
    readBody(req, (body) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
      res.end(body);
    });
  } else if (url === "/table") {
    const page = Buffer.from(renderTable());
    res.writeHead(200, { "content-type": "text/html;charset=utf-8", "content-length": page.length });
    res.end(page);
  } else if (url === "/todos") {
    if (req.method === "POST") {
      readBody(req, (body) => {
        let parsed;
        try {
          parsed = JSON.parse(body.toString("utf8"));
        } catch {
          parsed = undefined;
        }
        send(res, createTodo(parsed));
      });
    } else send(res, listTodos());
  } else if (url.startsWith("/todos/") && url.indexOf("/", 7) === -1) {
    send(res, getTodo(url.slice(7)));
  } else if (url === "/stream-1m") {
    streamOneMiB(res);
  } else if (url === "/sse" || url.startsWith("/sse?")) {
    serverSentEvents(req, res);
  } else {
    res.writeHead(200, helloHeaders);
    res.end(hello);
  }
});

function listen() {
  // exclusive: this process's own socket (a cluster worker otherwise asks its primary).
  const how = values["reuse-port"] ? { port, host, reusePort: true, exclusive: true } : { port, host };
  server.listen(how, () => {
    const address = server.address();
    const where = `http://${host}:${typeof address === "object" && address ? address.port : port}`;
    console.log(`raw-node${cluster.isWorker ? ` worker ${cluster.worker.id} (pid ${process.pid})` : ""} listening on ${where}`);
    if (cluster.isWorker) process.send("listening");
  });
}

if (cluster.isWorker) {
  process.on("message", (message) => {
    if (message === "listen") listen();
  });
  process.send("loaded");
} else listen();

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
