// An unmodified Hono app, written exactly as it would be for Cloudflare Workers.
import { Hono } from 'hono';

type Bindings = { GREETING?: string };

const app = new Hono<{ Bindings: Bindings }>().basePath('/hono');

app.get('/', (c) => c.text('Hello from Hono on fezz!'));

app.get('/users/:name', (c) => c.json({ name: c.req.param('name'), agent: c.req.header('user-agent') ?? null }));

app.post('/echo', async (c) => {
  const body = await c.req.json();
  return c.json({ received: body }, 201);
});

app.notFound((c) => c.json({ error: 'no such hono route', path: c.req.path }, 404));

export default app;
