// The bench's --smoke matrix (bench/lib/smoke-plan.ts) and the runner's pair filter
// (bench/lib/runner.ts `includes`): fewer pairs in a smoke run, every server and workload kept.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runMatrix } from '../../bench/lib/runner.js';
import { servers } from '../../bench/lib/servers.js';
import { SMOKE_WORKLOADS, smokeIncludes } from '../../bench/lib/smoke-plan.js';
import { workloads } from '../../bench/lib/workloads.js';
import type { LoadGenerator, ServerAdapter } from '../../bench/lib/types.js';

describe('bench smoke plan', () => {
  it('runs hello on every server, every workload on node-http and fezz-isolate', () => {
    for (const server of servers) assert.ok(smokeIncludes(server.name, 'hello'), server.name);
    for (const workload of workloads) {
      assert.ok(smokeIncludes('node-http', workload.name), workload.name);
      assert.ok(smokeIncludes('fezz-isolate', workload.name), workload.name);
      // Every workload is checked on fezz and on the baseline.
      assert.ok(servers.some((s) => s.name.startsWith('fezz-') && smokeIncludes(s.name, workload.name)), workload.name);
    }
  });

  it('gives the other tiers their own paths, the rest hello only, and a @base twin its build\'s plan', () => {
    for (const tier of ['fezz-sandbox', 'fezz-inline']) {
      assert.deepEqual(workloads.map((w) => w.name).filter((w) => smokeIncludes(tier, w)), ['hello', 'echo', 'stream-1m']);
    }
    for (const name of ['fezz-process', 'fezz-native', 'fastify', 'hono', 'bun']) {
      assert.deepEqual(workloads.map((w) => w.name).filter((w) => smokeIncludes(name, w)), ['hello'], name);
    }
    assert.equal(smokeIncludes('fezz-isolate@base', 'table'), true);
    assert.equal(smokeIncludes('fezz-inline@base', 'table'), false);
    assert.equal(smokeIncludes('constructor', 'table'), false); // not a prototype lookup
  });

  it('names only servers and workloads that exist', () => {
    for (const [server, plan] of Object.entries(SMOKE_WORKLOADS)) {
      assert.ok(servers.some((s) => s.name === server), server);
      if (plan !== 'all') for (const w of plan) assert.ok(workloads.some((x) => x.name === w), w);
    }
  });

  it('the runner neither runs nor reports a pair left out', async () => {
    const started: string[] = [];
    const fake = (name: string): ServerAdapter => ({
      name,
      async start(workload) {
        started.push(`${name} ${workload.name}`);
        throw new Error('not started in this test');
      },
    });
    const generator: LoadGenerator = { name: 'none', run: () => Promise.reject(new Error('no load in this test')) };
    const rows = await runMatrix({
      servers: [fake('node-http'), fake('fezz-inline'), fake('fastify')],
      workloads: workloads.filter((w) => ['hello', 'json', 'echo'].includes(w.name)),
      generator, durationS: 1, warmupS: 0, connections: 1, rounds: 1, pick: 'best', baseline: 'node-http',
      includes: smokeIncludes,
    });
    // A server that fails to start is not started again in the same run; its later rows say why.
    assert.deepEqual(started, ['node-http hello', 'fezz-inline hello', 'fastify hello']);
    assert.deepEqual(rows.map((r) => `${r.server} ${r.workload}`), [
      'node-http hello', 'fezz-inline hello', 'fastify hello',
      'node-http json',
      'node-http echo', 'fezz-inline echo',
    ]);
    for (const r of rows) assert.equal(r.picked, null);
  });
});
