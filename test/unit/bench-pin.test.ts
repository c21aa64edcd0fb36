// The bench's --pin (bench/lib/cpu-pin.ts): the bench on CPU 0, servers through taskset on the rest.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseQuickArgs } from '../../bench/lib/args.js';
import { pinnedCommand } from '../../bench/lib/cpu-pin.js';

const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
const cpuPin = fileURLToPath(new URL('../../bench/lib/cpu-pin.ts', import.meta.url));

describe('bench --pin', () => {
  it('is off unless asked for, and leaves commands alone while off', () => {
    assert.equal(parseQuickArgs([]).pin, false);
    assert.equal(parseQuickArgs(['--pin']).pin, true);
    assert.deepEqual(pinnedCommand('node', ['server.mjs']), { command: 'node', args: ['server.mjs'] });
  });

  it('pins the calling process to CPU 0 and wraps server commands in taskset', { skip: !hasTaskset || availableParallelism() < 2 }, () => {
    // In a child process, so that this test process keeps every CPU.
    const script = `
      import { execFileSync } from 'node:child_process';
      import { pinCpus, pinnedCommand } from ${JSON.stringify(cpuPin)};
      const plan = pinCpus();
      const mine = execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
      const wrapped = pinnedCommand('node', ['-e', '0']);
      const theirs = execFileSync(wrapped.command, [...wrapped.args.slice(0, 2), 'sh', '-c', 'taskset -c -p $$'], { encoding: 'utf8' });
      console.log(JSON.stringify({ plan, mine: mine.trim().split(': ')[1], wrapped, theirs: theirs.trim().split(': ')[1] }));
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const r = JSON.parse(out) as { plan: { generator: string; servers: string }; mine: string; wrapped: { command: string; args: string[] }; theirs: string };
    assert.equal(r.plan.generator, '0');
    assert.equal(r.mine, '0');
    assert.deepEqual(r.wrapped, { command: 'taskset', args: ['-c', r.plan.servers, 'node', '-e', '0'] });
    // The servers' CPU list as the kernel reports it for a process started that way.
    assert.equal(r.theirs, r.plan.servers);
    assert.ok(!r.theirs.split(/[,-]/).includes('0'), `servers must not share CPU 0: ${r.theirs}`);
  });
});

