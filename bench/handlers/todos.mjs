// Workloads `todos-get` and `todos-post`: the peers' equivalent of
// examples/functions/todos@1.0.0 (which fezz serves itself, with its manifest routes). Same
// handlers, same answers byte for byte: `list`, `create` and `get` take
// (request, env, ctx) with `ctx.params.id`, like the example's named handlers.
//
// `routes` lists them for servers that bring a router (Hono); the default `fetch` routes by
// hand for those that do not (Bun, Deno, workerd). State lives in module memory.
const todos = new Map();
let nextId = 1;

const notFound = (id) => Response.json({ error: `todo ${id} not found` }, { status: 404 });

async function readTodo(request) {
  let body;
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: "body must be JSON" }, { status: 400 });
  }
  if (typeof body !== "object" || body === null) return Response.json({ error: "body must be a JSON object" }, { status: 400 });
  const { title, done } = body;
  if (title !== undefined && (typeof title !== "string" || title.trim() === "")) {
    return Response.json({ error: '"title" must be a non-empty string' }, { status: 400 });
  }
  if (done !== undefined && typeof done !== "boolean") return Response.json({ error: '"done" must be a boolean' }, { status: 400 });
  return { title, done };
}

export function list() {
  return Response.json([...todos.values()]);
}

export async function create(request) {
  const input = await readTodo(request);
  if (input instanceof Response) return input;
  if (input.title === undefined) return Response.json({ error: '"title" is required' }, { status: 400 });
  const todo = { id: nextId++, title: input.title, done: input.done ?? false };
  todos.set(todo.id, todo);
  return Response.json(todo, { status: 201, headers: { location: `/todos/${todo.id}` } });
}

export function get(_request, _env, ctx) {
  const todo = todos.get(Number(ctx.params.id));
  return todo ? Response.json(todo) : notFound(ctx.params.id);
}

/** [method, path, export name], as in the example's fezz.json. */
export const routes = [
  ["GET", "/todos", "list"],
  ["POST", "/todos", "create"],
  ["GET", "/todos/:id", "get"],
];

/** The path of an absolute request URL, without the query (no URL object needed). */
function pathOf(url) {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const query = url.indexOf("?", start);
  return query === -1 ? url.slice(start) : url.slice(start, query);
}

export default {
  fetch(request, env) {
    const path = pathOf(request.url);
    if (path === "/todos") {
      if (request.method === "GET") return list();
      if (request.method === "POST") return create(request);
    } else if (path.startsWith("/todos/") && path.indexOf("/", 7) === -1 && request.method === "GET") {
      return get(request, env, { params: { id: path.slice(7) } });
    }
    return new Response("Not Found", { status: 404 });
  },
};
