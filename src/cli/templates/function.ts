/**
 * The files `fezz new <name>` writes: a manifest, a TypeScript fetch handler, a node:test
 * unit test and the contract's types, so the new directory type-checks and tests on its own.
 * Kept as strings here so `tsc` ships them in dist/.
 */

export interface TemplateVars {
  /** The function id, `[a-z0-9][a-z0-9-]*`. */
  name: string;
  version: string;
}

/** Relative file name -> contents. */
export function functionTemplate({ name, version }: TemplateVars): Record<string, string> {
  // Written by hand rather than JSON.stringify(_, null, 2) to keep one route per line.
  const manifest = `{
  "id": ${JSON.stringify(name)},
  "version": ${JSON.stringify(version)},
  "entry": "index.ts",
  "routes": [
    { "method": "GET", "path": ${JSON.stringify(`/${name}`)} },
    { "method": "GET", "path": ${JSON.stringify(`/${name}/:who`)} }
  ],
  "env": { "GREETING": "Hello" }
}
`;
  return {
    'fezz.json': manifest,
    'fezz.d.ts': FEZZ_TYPES,
    'index.ts': indexTs(name),
    'index.test.ts': indexTestTs(name),
    'tsconfig.json': TSCONFIG,
  };
}

export const FEZZ_TYPES = `// The fezz function contract (written by \`fezz new\`; see fezz's README, "The contract").

/** The third argument of every handler. */
export interface Context {
  /** The host's id for this request, also sent to the client as \`x-request-id\`. */
  readonly requestId: string;
  /** Route parameters, e.g. \`{ id: "42" }\` for \`/todos/:id\`; \`{ "*": "a/b" }\` for wildcards. */
  readonly params: Readonly<Record<string, string>>;
  /** Keep the instance alive until \`promise\` settles, after the response is sent. */
  waitUntil(promise: Promise<unknown>): void;
  /** Accepted for Workers compatibility; fezz has no origin to pass through to. */
  passThroughOnException(): void;
}

/** A handler: the default export's \`fetch\`, or a named export a route picks with "handler". */
export type Handler<Env = Readonly<Record<string, string>>> =
  (request: Request, env: Env, ctx: Context) => Response | Promise<Response>;
`;

function indexTs(name: string): string {
  return `// ${name}: a fezz function. The default export's fetch serves the routes in fezz.json
// (GET /${name} and GET /${name}/:who) and /rpc/${name}/*.
import type { Context } from './fezz.js';

/** The manifest's "env" values. */
export interface Env {
  GREETING: string;
}

// Module state stays warm between requests served by the same instance.
let served = 0;
const seen = new Set<string>();

/** Bookkeeping that may finish after the response is sent (a cache write, analytics...). */
async function remember(who: string): Promise<void> {
  seen.add(who);
}

export default {
  fetch(request: Request, env: Env, ctx: Context): Response {
    served++;
    const url = new URL(request.url);
    const who = ctx.params.who ?? url.searchParams.get('name') ?? 'world';
    const firstVisit = !seen.has(who);
    ctx.waitUntil(remember(who));
    return Response.json({ message: \`\${env.GREETING}, \${who}!\`, firstVisit, served, requestId: ctx.requestId });
  },
};
`;
}

function indexTestTs(name: string): string {
  return `// Unit tests for ${name}, no host needed: node --import tsx --test index.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fn, { type Env } from './index.js';
import type { Context } from './fezz.js';

const env: Env = { GREETING: 'Hello' };

/** A Context like the host's, collecting waitUntil promises. */
function context(params: Record<string, string> = {}): Context & { pending: Promise<unknown>[] } {
  const pending: Promise<unknown>[] = [];
  return {
    requestId: 'test-request-1',
    params,
    waitUntil(promise) { pending.push(promise); },
    passThroughOnException() {},
    pending,
  };
}

interface Body {
  message: string;
  firstVisit: boolean;
  served: number;
  requestId: string;
}

test('GET /${name} greets the world', async () => {
  const ctx = context();
  const res = await fn.fetch(new Request('http://localhost/${name}'), env, ctx);
  assert.equal(res.status, 200);
  const body = (await res.json()) as Body;
  assert.equal(body.message, 'Hello, world!');
  assert.equal(body.requestId, 'test-request-1');
  await Promise.all(ctx.pending);
});

test('GET /${name}/:who greets the route parameter', async () => {
  const ctx = context({ who: 'ann' });
  const res = await fn.fetch(new Request('http://localhost/${name}/ann'), env, ctx);
  const body = (await res.json()) as Body;
  assert.equal(body.message, 'Hello, ann!');
  assert.equal(body.firstVisit, true);
  await Promise.all(ctx.pending);
  // Module state is kept between calls, as in a warm instance.
  const again = (await (await fn.fetch(new Request('http://localhost/${name}/ann'), env, context({ who: 'ann' }))).json()) as Body;
  assert.equal(again.firstVisit, false);
  assert.equal(again.served, body.served + 1);
});

test('?name= is used when there is no route parameter', async () => {
  const res = await fn.fetch(new Request('http://localhost/rpc/${name}?name=bob'), env, context());
  assert.equal(((await res.json()) as Body).message, 'Hello, bob!');
});
`;
}

export const TSCONFIG = `{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "lib": ["ES2023"],
    "types": ["node"],
    "strict": true,
    "noEmit": true,
    "skipLibCheck": true
  },
  "include": ["*.ts"]
}
`;
