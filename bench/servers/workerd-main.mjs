// Peer: workerd's entry module. The bench copies it, with the handler module from
// bench/handlers/ as `handler.mjs`, beside a generated config (lib/peers.ts), so workerd runs
// the same default export's fetch as the other peers, with its own env and ctx.
import handler from "./handler.mjs";

export default {
  fetch(request, env, ctx) {
    return request.url.endsWith("/healthz") ? new Response("ok") : handler.fetch(request, env, ctx);
  },
};
