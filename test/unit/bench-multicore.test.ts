// The bench's multicore suite (bench/lib/suite-multicore.ts): its rows and ratios, the honest
// note, its flags, and the node:cluster baseline server (a real 2-worker process on a free port).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { parseQuickArgs, SUITES } from '../../bench/lib/args.js';
import { killAllChildren } from '../../bench/lib/child.js';
import { hasReusePort, multicoreNames, multicoreRows, nodeCluster, treePeak, type MulticoreResult } from '../../bench/lib/suite-multicore.js';
import { countCpus, multicoreCaveats, multicoreGrid, multicoreNote } from '../../bench/lib/suite-tables.js';
import { evaluateTargets } from '../../bench/lib/targets.js';
import { workloads } from '../../bench/lib/workloads.js';
import type { PairOutcome, Row } from '../../bench/lib/types.js';

const ok = (round: number, rps: number, peakRssMb: number | null = 50, children: { name: string; pid: number; peakRssMb: number }[] = []): PairOutcome => ({
  kind: 'ok', round, peakRssMb, children,
  measurement: { rps, p50Ms: 1, p99Ms: 2, requests: rps, durationS: 1, non2xx: 0, errors: 0 },
});
const failed = (round: number): PairOutcome => ({ kind: 'failed', round, stage: 'start', reason: 'this fezz build has no --workers flag' });

/** A runner row with its rounds; picked = the best successful round, as runner.ts picks. */
function row(server: string, rounds: PairOutcome[]): Row {
  const okRounds = rounds.filter((o): o is Extract<PairOutcome, { kind: 'ok' }> => o.kind === 'ok').sort((a, b) => a.measurement.rps - b.measurement.rps);
  return { server, workload: 'hello', rounds, picked: okRounds.at(-1) ?? null, ratio: null };
}

describe('bench multicore rows', () => {
  const names = multicoreNames('isolate', 2);

  it('pairs each row with the node:http row of its size, and each xN row with its own x1, per round', () => {
    const rows = multicoreRows([
      row(names.node1, [ok(0, 40_000), ok(1, 20_000)]),
      row(names.fezz1, [ok(0, 36_000), ok(1, 19_000)]),
      row(names.fezzN, [ok(0, 45_000), ok(1, 19_000)]),
      row(names.nodeN, [ok(0, 50_000), ok(1, 30_000)]),
    ], 'isolate', 2);
    assert.deepEqual(rows.map((r) => [r.server, r.processes]), [['node-http', 1], ['fezz-isolate', 1], ['node-http', 2], ['fezz-isolate', 2]]);
    const [node1, fezz1, nodeN, fezzN] = rows;
    assert.equal(node1!.vsNode, 1);
    assert.equal(node1!.scaling, null);
    assert.equal(fezz1!.vsNode, 0.9); // rounds: 0.9, 0.95 -> lower middle
    assert.equal(fezz1!.scaling, null);
    assert.equal(nodeN!.vsNode, 1);
    assert.equal(nodeN!.scaling, 1.25); // rounds: 1.25, 1.5
    assert.equal(fezzN!.vsNode, 0.6333333333333333); // rounds: 0.9, 19/30
    assert.equal(fezzN!.scaling, 1); // rounds: 45/36 = 1.25, 19/19 = 1
  });

  it('keeps a failed row with null ratios, and leaves out a server that was not run', () => {
    const rows = multicoreRows([
      row(names.node1, [ok(0, 40_000)]),
      row(names.fezz1, [ok(0, 30_000)]),
      row(names.fezzN, [failed(0)]),
    ], 'isolate', 2);
    assert.equal(rows.length, 3);
    const fezzN = rows[2]!;
    assert.equal(fezzN.processes, 2);
    assert.equal(fezzN.vsNode, null);
    assert.equal(fezzN.scaling, null);
    assert.equal(fezzN.treePeakMb, null);
  });

  it('counts the peak RSS of every process serving: the server plus its descendants', () => {
    const children = [{ name: 'raw-node.mjs', pid: 2, peakRssMb: 60 }, { name: 'raw-node.mjs', pid: 3, peakRssMb: 61.5 }];
    assert.equal(treePeak(row(names.nodeN, [ok(0, 1, 45, children)])), 166.5);
    assert.equal(treePeak(row(names.nodeN, [ok(0, 1, null, children)])), null);
    assert.equal(treePeak(row(names.nodeN, [failed(0)])), null);
  });

  it('knows which Node binds with SO_REUSEPORT', () => {
    assert.equal(hasReusePort('20.18.0'), false);
    assert.equal(hasReusePort('22.11.0'), false);
    assert.equal(hasReusePort('22.12.0'), true);
    assert.equal(hasReusePort('23.0.0'), false);
    assert.equal(hasReusePort('23.1.0'), true);
    assert.equal(hasReusePort('24.0.0'), true);
  });
});

describe('bench multicore note and table', () => {
  const result = (over: Partial<MulticoreResult> = {}): MulticoreResult => ({
    workers: 2, runtime: 'isolate', workload: 'hello', cpus: 2, cpuModel: 'test', node: 'v20.0.0', loadavg: [0.5, 0.25, 0.125], portSharing: 'round-robin',
    loadGenerator: 'wrk (1 thread)', durationS: 10, warmupS: 1, connections: 64, rounds: 2, pick: 'best', pinned: null,
    rows: multicoreRows([
      row('node-http', [ok(0, 40_000), ok(1, 30_000)]),
      row('fezz-isolate', [ok(0, 30_000), ok(1, 27_000)]),
      row('node-http x2', [ok(0, 50_000), ok(1, 39_000)]),
      row('fezz-isolate x2', [failed(0), failed(1)]),
    ], 'isolate', 2),
    ...over,
  });

  it('says that x2 cannot reach 2.0 when the load generator shares the CPUs, and not when there are spare ones', () => {
    assert.match(multicoreCaveats(result()).join(' '), /2-CPU machine .* x2 \/ x1 cannot reach 2\.0 here/);
    assert.doesNotMatch(multicoreCaveats(result({ cpus: 8 })).join(' '), /cannot reach/);
    assert.match(multicoreCaveats(result({ cpus: 8 })).join(' '), /takes up to one of its 8 CPUs/);
    assert.match(multicoreCaveats(result({ workers: 4, cpus: 4 })).join(' '), /x4 \/ x1 cannot reach 4\.0/);
  });

  it('says what pinning does to the xN rows', () => {
    const pinned = multicoreCaveats(result({ pinned: { generator: '0', servers: '1' } })).join(' ');
    assert.match(pinned, /shares CPU 1 \(1 CPU\)/);
    assert.match(pinned, /cannot exceed about 1\.0/);
    assert.doesNotMatch(multicoreCaveats(result({ cpus: 8, pinned: { generator: '0', servers: '1-7' } })).join(' '), /cannot exceed/);
  });

  it('names the port sharing of this Node and the isolate runtime\'s two threads', () => {
    assert.match(multicoreNote(result()), /node:cluster round-robin/);
    assert.match(multicoreNote(result({ portSharing: 'SO_REUSEPORT' })), /SO_REUSEPORT/);
    assert.match(multicoreNote(result()), /two busy threads/);
    assert.doesNotMatch(multicoreNote(result({ runtime: 'inline' })), /two busy threads/);
  });

  it('prints the ratios, scaling only on the xN rows, and a failed row\'s reason', () => {
    const grid = multicoreGrid(result());
    assert.deepEqual(grid.headers.slice(6, 8), ['vs node-http', 'scaling x2/x1']);
    const [node1, fezz1, nodeN, fezzN] = grid.rows;
    assert.deepEqual(node1!.slice(0, 8), ['node-http', '1', '40,000', '1.00', '2.00', '50.0', '1.00x', '']);
    assert.equal(fezz1![6], '0.75x'); // rounds: 0.75, 0.9
    assert.equal(nodeN![7], '1.25x'); // rounds: 1.25, 1.3
    assert.equal(fezzN![0], 'fezz-isolate');
    assert.equal(fezzN![1], '2');
    assert.match(fezzN!.at(-1)!, /^failed to start: this fezz build has no --workers flag/);
  });

  it('flags a scaling above the process count as noise', () => {
    const noisy = result({
      rows: multicoreRows([
        row('node-http', [ok(0, 10_000)]),
        row('node-http x2', [ok(0, 49_000)]),
      ], 'isolate', 2),
    });
    const nodeN = multicoreGrid(noisy).rows[1]!;
    assert.equal(nodeN[7], '4.90x');
    assert.match(nodeN.at(-1)!, /scaling above 2\.0: the machine was busier during the x1 run/);
    assert.doesNotMatch(multicoreGrid(result()).rows[2]!.at(-1)!, /scaling above/);
    assert.match(multicoreNote(noisy), /load average 0\.50 0\.25 0\.13 at the start/);
  });

  it('reports the scaling in the targets without a verdict', () => {
    const targets = evaluateTargets({ baseline: 'node-http', throughput: null, coldstart: null, density: null, soak: null, multicore: result() });
    const scaling = targets.find((t) => t.target.startsWith('fezz --workers 2 scaling'));
    assert.ok(scaling);
    assert.equal(scaling.met, null);
    assert.equal(scaling.measured, '-'); // the fezz x2 row failed
  });

  it('counts taskset CPU lists', () => {
    assert.equal(countCpus('1'), 1);
    assert.equal(countCpus('1-3'), 3);
    assert.equal(countCpus('0,2-3'), 3);
  });
});

describe('bench multicore flags', () => {
  it('runs the suite by default, after throughput, with 2 processes and the isolate runtime', () => {
    assert.deepEqual(SUITES.slice(0, 2), ['throughput', 'multicore']);
    const options = parseQuickArgs([]);
    assert.ok(options.suites.includes('multicore'));
    assert.equal(options.multicoreWorkers, 2);
    assert.equal(options.multicoreRuntime, 'isolate');
    const chosen = parseQuickArgs(['--suite', 'multicore', '--multicore-workers', '4', '--multicore-runtime', 'inline']);
    assert.deepEqual(chosen.suites, ['multicore']);
    assert.equal(chosen.multicoreWorkers, 4);
    assert.equal(chosen.multicoreRuntime, 'inline');
  });

  it('refuses 1 process, more than 64, and an unknown runtime', () => {
    assert.throws(() => parseQuickArgs(['--multicore-workers', '1']), /from 2 to 64/);
    assert.throws(() => parseQuickArgs(['--multicore-workers', '65']), /from 2 to 64/);
    assert.throws(() => parseQuickArgs(['--multicore-workers', 'auto']), /positive integer/);
    assert.throws(() => parseQuickArgs(['--multicore-runtime', 'sandbox']), /isolate, inline/);
  });
});

describe('bench node:cluster baseline (servers/raw-node-cluster.mjs)', () => {
  it('serves hello from 2 worker processes on one port, and stops with its process group', async () => {
    const hello = workloads.find((w) => w.name === 'hello')!;
    const server = await nodeCluster(2).start(hello);
    try {
      // The workers answer the same bytes as node-http (so which one answered cannot be seen):
      // check the answers, then count the server's worker processes in /proc.
      const answers = await Promise.all(Array.from({ length: 8 }, () => get(`${server.url}/hello`)));
      for (const a of answers) {
        assert.equal(a.status, 200);
        assert.equal(a.body, 'Hello, world!');
        assert.equal(a.contentType, 'text/plain;charset=UTF-8');
      }
      const { readdirSync, readFileSync } = await import('node:fs');
      const children = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === server.pid;
        } catch {
          return false;
        }
      });
      assert.equal(children.length, 2);
    } finally {
      await server.stop();
      killAllChildren();
    }
    let alive = true;
    try {
      process.kill(server.pid, 0);
    } catch {
      alive = false;
    }
    assert.equal(alive, false);
  });
});

function get(url: string): Promise<{ status: number; body: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => {
        resolve({ status: res.statusCode ?? 0, body, contentType: String(res.headers['content-type'] ?? '') });
      });
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}
