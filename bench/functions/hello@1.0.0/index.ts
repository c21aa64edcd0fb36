// Bench function (isolate runtime): must answer the same bytes as bench/servers/raw-node.mjs.
export default {
  fetch(): Response {
    return new Response("Hello, world!");
  },
};
