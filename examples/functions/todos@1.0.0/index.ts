// A CRUD JSON API with named handlers (seed 000's function registry) and :id params.
// State lives in module memory: it persists while the instance is warm ("max": 1 keeps one
// instance, so every request sees the same list) and is lost on eviction or reload.
interface Todo { id: number; title: string; done: boolean }
interface Ctx { params: Record<string, string> }

const todos = new Map<number, Todo>();
let nextId = 1;

const notFound = (id: string) => Response.json({ error: `todo ${id} not found` }, { status: 404 });

async function readTodo(request: Request): Promise<Partial<Todo> | Response> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: 'body must be JSON' }, { status: 400 });
  }
  if (typeof body !== 'object' || body === null) return Response.json({ error: 'body must be a JSON object' }, { status: 400 });
  const { title, done } = body as Record<string, unknown>;
  if (title !== undefined && (typeof title !== 'string' || title.trim() === '')) {
    return Response.json({ error: '"title" must be a non-empty string' }, { status: 400 });
  }
  if (done !== undefined && typeof done !== 'boolean') return Response.json({ error: '"done" must be a boolean' }, { status: 400 });
  return { title: title as string | undefined, done: done as boolean | undefined };
}

export function list(): Response {
  return Response.json([...todos.values()]);
}

export async function create(request: Request): Promise<Response> {
  const input = await readTodo(request);
  if (input instanceof Response) return input;
  if (input.title === undefined) return Response.json({ error: '"title" is required' }, { status: 400 });
  const todo: Todo = { id: nextId++, title: input.title, done: input.done ?? false };
  todos.set(todo.id, todo);
  return Response.json(todo, { status: 201, headers: { location: `/todos/${todo.id}` } });
}

export function get(_request: Request, _env: unknown, ctx: Ctx): Response {
  const todo = todos.get(Number(ctx.params.id));
  return todo ? Response.json(todo) : notFound(ctx.params.id!);
}

export async function update(request: Request, _env: unknown, ctx: Ctx): Promise<Response> {
  const todo = todos.get(Number(ctx.params.id));
  if (!todo) return notFound(ctx.params.id!);
  const input = await readTodo(request);
  if (input instanceof Response) return input;
  if (input.title !== undefined) todo.title = input.title;
  if (input.done !== undefined) todo.done = input.done;
  return Response.json(todo);
}

export function remove(_request: Request, _env: unknown, ctx: Ctx): Response {
  return todos.delete(Number(ctx.params.id)) ? new Response(null, { status: 204 }) : notFound(ctx.params.id!);
}

// /rpc/todos/* reaches the default handler: a short description of the API.
export default {
  fetch(): Response {
    return Response.json({ routes: ['GET /todos', 'POST /todos', 'GET /todos/:id', 'PATCH /todos/:id', 'DELETE /todos/:id'] });
  },
};
