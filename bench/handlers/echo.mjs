// Workload `echo`: answers the request body (64 KiB in the bench) as is. The body is read
// whole, as most handlers do, rather than streamed through. Shared by fezz, Hono, Bun, Deno
// and workerd.
const headers = { "content-type": "application/octet-stream" };

export default {
  async fetch(request) {
    return new Response(await request.arrayBuffer(), { headers });
  },
};
