// Workload `hello`: plain text. One fetch-style module, served unchanged by fezz (as the
// function's entry), Hono on @hono/node-server, Bun, Deno and workerd (bench/README.md).
export default {
  fetch() {
    return new Response("Hello, world!");
  },
};
