// The todos store of the native peers (raw node:http, Fastify): the same rules and answers
// as examples/functions/todos@1.0.0 and bench/handlers/todos.mjs, without web Request and
// Response objects. Each function returns [status, JSON body text, extra headers or null].
const todos = new Map();
let nextId = 1;

const error = (status, message) => [status, JSON.stringify({ error: message }), null];

/** POST /todos with an already parsed body (undefined when it was not JSON). */
export function createTodo(body) {
  if (body === undefined) return error(400, "body must be JSON");
  if (typeof body !== "object" || body === null) return error(400, "body must be a JSON object");
  const { title, done } = body;
  if (title !== undefined && (typeof title !== "string" || title.trim() === "")) return error(400, '"title" must be a non-empty string');
  if (done !== undefined && typeof done !== "boolean") return error(400, '"done" must be a boolean');
  if (title === undefined) return error(400, '"title" is required');
  const todo = { id: nextId++, title, done: done ?? false };
  todos.set(todo.id, todo);
  return [201, JSON.stringify(todo), { location: `/todos/${todo.id}` }];
}

/** GET /todos/:id */
export function getTodo(id) {
  const todo = todos.get(Number(id));
  return todo ? [200, JSON.stringify(todo), null] : error(404, `todo ${id} not found`);
}

/** GET /todos */
export function listTodos() {
  return [200, JSON.stringify([...todos.values()]), null];
}
