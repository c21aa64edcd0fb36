/**
 * `fezz new --template scheduled`: a function with a cron trigger, in Cloudflare Workers'
 * shape: `export default { scheduled(controller, env, ctx) }` runs on each tick of the crons
 * in fezz.json's `"triggers": { "crons": [...] }` (docs/triggers.md), and `fetch` reports on
 * the runs.
 */
import { FEZZ_TYPES, TSCONFIG, type TemplateVars } from './function.js';

/** Relative file name -> contents. */
export function scheduledTemplate({ name, version }: TemplateVars): Record<string, string> {
  return {
    'fezz.json': `{
  "id": ${JSON.stringify(name)},
  "version": ${JSON.stringify(version)},
  "entry": "index.ts",
  "routes": [
    { "method": "GET", "path": ${JSON.stringify(`/${name}`)} }
  ],
  "triggers": { "crons": ["*/5 * * * *"] },
  "env": { "GREETING": "Hello" }
}
`,
    'fezz.d.ts': `${FEZZ_TYPES}
/** The first argument of \`scheduled\`, as in Cloudflare Workers. */
export interface ScheduledController {
  /** The cron expression that fired, as written in fezz.json. */
  readonly cron: string;
  /** When this tick was due, in ms since the epoch. */
  readonly scheduledTime: number;
  /** Accepted for Workers compatibility. */
  noRetry(): void;
}
`,
    'index.ts': `// ${name}: a fezz function with a cron trigger. scheduled() runs on every tick of the
// crons in fezz.json ("*/5 * * * *": every five minutes); GET /${name} reports the runs.
import type { Context, ScheduledController } from './fezz.js';

/** The manifest's "env" values and the function's secrets (fezz secret put ${name} NAME). */
export interface Env {
  GREETING: string;
}

// Module state stays warm between calls served by the same instance.
let runs = 0;
let last: { cron: string; scheduledTime: string } | null = null;

/** Work that may finish after scheduled() returns (ctx.waitUntil keeps the instance alive for it). */
async function report(cron: string): Promise<void> {
  console.log(\`cron \${cron}: run \${runs} done\`);
}

export default {
  scheduled(controller: ScheduledController, env: Env, ctx: Context): void {
    runs++;
    last = { cron: controller.cron, scheduledTime: new Date(controller.scheduledTime).toISOString() };
    console.log(\`\${env.GREETING} from cron \${controller.cron}, due at \${last.scheduledTime}\`);
    ctx.waitUntil(report(controller.cron));
  },

  fetch(_request: Request, _env: Env, _ctx: Context): Response {
    return Response.json({ runs, last });
  },
};
`,
    'index.test.ts': `// Unit tests for ${name}, no host needed: node --import tsx --test index.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fn, { type Env } from './index.js';
import type { Context, ScheduledController } from './fezz.js';

const env: Env = { GREETING: 'Hello' };

function context(): Context & { pending: Promise<unknown>[] } {
  const pending: Promise<unknown>[] = [];
  return { requestId: 'test-1', params: {}, waitUntil(p) { pending.push(p); }, passThroughOnException() {}, pending };
}

test('scheduled() counts its runs and GET reports them', async () => {
  const controller: ScheduledController = { cron: '*/5 * * * *', scheduledTime: Date.UTC(2030, 0, 1), noRetry() {} };
  const ctx = context();
  fn.scheduled(controller, env, ctx);
  await Promise.all(ctx.pending);
  const body = (await fn.fetch(new Request('http://localhost/${name}'), env, context()).json()) as { runs: number; last: { cron: string; scheduledTime: string } };
  assert.equal(body.runs, 1);
  assert.deepEqual(body.last, { cron: '*/5 * * * *', scheduledTime: '2030-01-01T00:00:00.000Z' });
});
`,
    'tsconfig.json': TSCONFIG,
  };
}
