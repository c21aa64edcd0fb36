// Workload `json`: a small JSON object. Shared by fezz, Hono, Bun, Deno and workerd.
export default {
  fetch() {
    return Response.json({ message: "Hello, world!" });
  },
};
