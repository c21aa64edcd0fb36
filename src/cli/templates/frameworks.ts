/**
 * `fezz new --template hono|itty`: an unmodified Hono or itty-router app, written exactly as
 * for Cloudflare Workers. Their framework is an npm dependency in the function's own
 * package.json; `fezz new` writes it and needs no network: `npm install` in the new
 * directory fetches it (the host bundles it with esbuild, as for examples/functions/hono-app).
 */
import { TSCONFIG, type TemplateVars } from './function.js';

/** Versions written into package.json (those this repository is tested with). */
export const HONO_VERSION = '^4.6.0';
export const ITTY_ROUTER_VERSION = '^5.0.18';

/** Every request under /<name> goes to the app, which routes it itself. */
function manifest({ name, version }: TemplateVars): string {
  return `{
  "id": ${JSON.stringify(name)},
  "version": ${JSON.stringify(version)},
  "entry": "index.ts",
  "routes": [
    { "method": "*", "path": ${JSON.stringify(`/${name}`)} },
    { "method": "*", "path": ${JSON.stringify(`/${name}/*`)} }
  ],
  "env": { "GREETING": "Hello" }
}
`;
}

function packageJson(name: string, deps: Record<string, string>): string {
  return JSON.stringify({ name: `fezz-fn-${name}`, private: true, type: 'module', dependencies: deps }, null, 2) + '\n';
}

/** Relative file name -> contents, for `--template hono`. */
export function honoTemplate(vars: TemplateVars): Record<string, string> {
  const { name } = vars;
  return {
    'fezz.json': manifest(vars),
    'package.json': packageJson(name, { hono: HONO_VERSION }),
    'index.ts': `// ${name}: a Hono app on fezz, written exactly as for Cloudflare Workers. fezz.json
// sends every request under /${name} to it; Hono routes them (and /rpc/${name}/* reaches it too).
import { Hono } from 'hono';

/** The manifest's "env" values and the function's secrets (fezz secret put ${name} NAME). */
type Bindings = { GREETING: string };

const app = new Hono<{ Bindings: Bindings }>().basePath('/${name}');

app.get('/', (c) => c.text(\`\${c.env.GREETING} from Hono on fezz!\`));

app.get('/hello/:who', (c) => c.json({ message: \`\${c.env.GREETING}, \${c.req.param('who')}!\` }));

app.post('/echo', async (c) => c.json({ received: await c.req.json() }, 201));

app.notFound((c) => c.json({ error: 'no such route', path: c.req.path }, 404));

export default app;
`,
    'index.test.ts': `// Unit tests for ${name}, no host needed (after npm install): node --import tsx --test index.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import app from './index.js';

const env = { GREETING: 'Hello' };

test('GET /${name}/hello/:who greets', async () => {
  const res = await app.request('/${name}/hello/ann', {}, env);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { message: 'Hello, ann!' });
});

test('POST /${name}/echo echoes JSON', async () => {
  const res = await app.request('/${name}/echo', { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } }, env);
  assert.equal(res.status, 201);
  assert.deepEqual(await res.json(), { received: { a: 1 } });
});
`,
    'tsconfig.json': TSCONFIG,
  };
}

/** Relative file name -> contents, for `--template itty`. */
export function ittyTemplate(vars: TemplateVars): Record<string, string> {
  const { name } = vars;
  return {
    'fezz.json': manifest(vars),
    'package.json': packageJson(name, { 'itty-router': ITTY_ROUTER_VERSION }),
    'index.ts': `// ${name}: an itty-router (v5) app on fezz, written exactly as for Cloudflare Workers.
// fezz.json sends every request under /${name} to it; AutoRouter routes them, turns returned
// objects into JSON responses and unmatched paths into 404s.
import { AutoRouter, type IRequest } from 'itty-router';

/** The manifest's "env" values and the function's secrets (fezz secret put ${name} NAME). */
interface Env { GREETING: string }

const router = AutoRouter<IRequest, [Env]>({ base: '/${name}' });

router
  .get('/', (_request, env) => ({ message: \`\${env.GREETING} from itty-router on fezz!\` }))
  .get('/hello/:who', ({ params }, env) => ({ message: \`\${env.GREETING}, \${params.who}!\` }))
  .post('/echo', async (request) => ({ received: await request.json() }));

// AutoRouter has fetch(request, env, ctx): it is a fezz function as it is.
export default router;
`,
    'tsconfig.json': TSCONFIG,
  };
}
