/**
 * The workload table. Each row is one kind of request; every server must answer it with the
 * same status, content type and body bytes (checked before load, so a 404 is never measured).
 *
 * Each workload's handler is written once, as a fetch-style module in bench/handlers/, run
 * unchanged by fezz (as the function's entry), Hono, Bun, Deno and workerd; raw node:http and
 * Fastify have equivalent native handlers (bench/servers/). The todos workloads run, on fezz,
 * the example examples/functions/todos@1.0.0 itself, with its manifest routes.
 */
import { CHUNKS, STREAM_CHUNK } from "../handlers/stream-1m.mjs";
import { renderTable } from "../handlers/table.mjs";
import type { RequestSpec, Workload } from "./types.js";

export const HELLO_BODY = "Hello, world!";
/** The exact bytes `Response.json({ message: "Hello, world!" })` produces. */
export const JSON_BODY = JSON.stringify({ message: HELLO_BODY });

/** Size of the `echo` request body: 64 KiB. */
export const ECHO_BYTES = 64 * 1024;

/** 64 KiB of printable ASCII (so bytes = characters), the same on every run. */
function echoBody(): string {
  const line = "fezz bench echo body: 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n";
  return line.repeat(Math.ceil(ECHO_BYTES / line.length)).slice(0, ECHO_BYTES);
}

/** Todos created on each fresh server before a todos workload's check: ids 1..100. */
export const TODOS_SEEDED = 100;
const JSON_HEADERS = { "content-type": "application/json" } as const;
const seedTodos: readonly RequestSpec[] = Array.from({ length: TODOS_SEEDED }, (_, i) => ({
  method: "POST",
  path: "/todos",
  body: JSON.stringify({ title: `todo ${i + 1}` }),
  headers: JSON_HEADERS,
}));

/** The `stream-1m` answer: 64 chunks of 16 KiB, 1 MiB in all (printable ASCII). */
export const STREAM_BODY = new TextDecoder().decode(STREAM_CHUNK).repeat(CHUNKS);

export const workloads: readonly Workload[] = [
  {
    name: "hello",
    path: "/hello",
    method: "GET",
    handler: "hello.mjs",
    fezzId: "hello",
    expect: { status: 200, contentType: "text/plain;charset=UTF-8", body: HELLO_BODY },
  },
  {
    name: "json",
    path: "/json",
    method: "GET",
    handler: "json.mjs",
    fezzId: "json",
    expect: { status: 200, contentType: "application/json", body: JSON_BODY },
  },
  {
    // A :param route after seeding 100 todos.
    name: "todos-get",
    path: "/todos/50",
    method: "GET",
    handler: "todos.mjs",
    fezzId: "todos",
    fezzExample: "todos@1.0.0",
    setup: seedTodos,
    expect: { status: 200, contentType: "application/json", body: JSON.stringify({ id: 50, title: "todo 50", done: false }) },
  },
  {
    // A JSON body, parsed and validated; every request adds a todo (the store grows under load,
    // on every server alike).
    name: "todos-post",
    path: "/todos",
    method: "POST",
    body: JSON.stringify({ title: "bench" }),
    headers: JSON_HEADERS,
    handler: "todos.mjs",
    fezzId: "todos",
    fezzExample: "todos@1.0.0",
    setup: seedTodos,
    expect: {
      status: 201,
      contentType: "application/json",
      body: JSON.stringify({ id: TODOS_SEEDED + 1, title: "bench", done: false }),
    },
  },
  {
    name: "echo",
    path: "/echo",
    method: "POST",
    body: echoBody(),
    headers: { "content-type": "application/octet-stream" },
    handler: "echo.mjs",
    fezzId: "echo",
    expect: { status: 200, contentType: "application/octet-stream", body: echoBody() },
  },
  {
    // CPU-heavier: a 100-row HTML table rendered on every request.
    name: "table",
    path: "/table",
    method: "GET",
    handler: "table.mjs",
    fezzId: "table",
    expect: { status: 200, contentType: "text/html;charset=utf-8", body: renderTable() },
  },
  {
    // A streamed response: 1 MiB in 64 chunks of 16 KiB from a pull-based ReadableStream
    // (node:http: res.write with backpressure), chunked transfer encoding. A streaming
    // response holds its fezz slot until it ends: room for --connections well past 64.
    name: "stream-1m",
    path: "/stream-1m",
    method: "GET",
    handler: "stream-1m.mjs",
    fezzId: "stream",
    fezzLimits: { concurrency: 1024 },
    expect: { status: 200, contentType: "application/octet-stream", body: STREAM_BODY },
  },
];
