// Every route of every bundled JS/TS example gives the answer README documents.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EXAMPLES, get, startHost, type TestHost } from '../helpers/host.js';

describe('examples/functions', () => {
  let t: TestHost;
  before(async () => { t = await startHost(EXAMPLES); });
  after(async () => { await t.close(); });

  it('hello: GET /hello and /rpc/hello, with ?name', async () => {
    assert.equal((await get(`${t.url}/hello`)).text, 'Hello, world!\n');
    assert.equal((await get(`${t.url}/hello?name=fezz`)).text, 'Hello, fezz!\n');
    const rpc = await get(`${t.url}/rpc/hello@1.0.0/anything`);
    assert.equal(rpc.text, 'Hello, world!\n');
    assert.equal(rpc.headers.get('content-type'), 'text/plain;charset=UTF-8');
  });

  it('counter: warm state counts up in one instance', async () => {
    const a = JSON.parse((await get(`${t.url}/counter`)).text);
    const b = JSON.parse((await get(`${t.url}/counter`)).text);
    assert.equal(b.count, a.count + 1);
    assert.equal(b.instance, a.instance);
  });

  it('todos: create, list, get, update, delete, with validation and 404s', async () => {
    const json = { 'content-type': 'application/json' };
    const created = await fetch(`${t.url}/todos`, { method: 'POST', headers: json, body: JSON.stringify({ title: 'write tests' }) });
    assert.equal(created.status, 201);
    const todo = await created.json() as { id: number; title: string; done: boolean };
    assert.equal(created.headers.get('location'), `/todos/${todo.id}`);
    assert.deepEqual({ title: todo.title, done: todo.done }, { title: 'write tests', done: false });
    const listed = JSON.parse((await get(`${t.url}/todos`)).text) as Array<{ id: number }>;
    assert.ok(listed.some((x) => x.id === todo.id));
    assert.deepEqual(JSON.parse((await get(`${t.url}/todos/${todo.id}`)).text), todo);
    const patched = await get(`${t.url}/todos/${todo.id}`, { method: 'PATCH', headers: json, body: '{"done":true}' });
    assert.equal(JSON.parse(patched.text).done, true);
    assert.equal((await get(`${t.url}/todos`, { method: 'POST', headers: json, body: '{"title":""}' })).status, 400);
    assert.equal((await get(`${t.url}/todos`, { method: 'POST', headers: json, body: 'not json' })).status, 400);
    assert.equal((await get(`${t.url}/todos/${todo.id}`, { method: 'DELETE' })).status, 204);
    assert.equal((await get(`${t.url}/todos/${todo.id}`)).status, 404);
    assert.equal((await get(`${t.url}/todos`, { method: 'DELETE' })).status, 405);
    assert.deepEqual(JSON.parse((await get(`${t.url}/rpc/todos`)).text).routes.length, 5);
  });

  it('hono-app: an unmodified Hono app with its own dependency', async () => {
    assert.equal((await get(`${t.url}/hono`)).text, 'Hello from Hono on fezz!');
    const user = await get(`${t.url}/hono/users/ann`, { headers: { 'user-agent': 'test-agent' } });
    assert.deepEqual(JSON.parse(user.text), { name: 'ann', agent: 'test-agent' });
    const echo = await get(`${t.url}/hono/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":[1,2]}' });
    assert.equal(echo.status, 201);
    assert.deepEqual(JSON.parse(echo.text), { received: { a: [1, 2] } });
    const missing = await get(`${t.url}/hono/nope`);
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.text).error, 'no such hono route');
  });
});
