// A sandbox's cgroups end whatever of it is left when it exits (src/runtime/sandbox/cgroup.ts):
// an inner bwrap stuck in its set-up after its launcher was killed was seen orphaned, holding
// the host's channel open. Here a stray process is put into a sandbox cgroup by hand.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeSandboxCgroups, removeCgroups } from '../../src/runtime/sandbox/cgroup.js';

const probe = makeSandboxCgroups(64);
const skip = probe.dirs.length === 0 ? 'no cgroup can be made here (run as root, or in a delegated cgroup)' : false;
removeCgroups(probe.dirs);

describe('sandbox cgroups', { skip }, () => {
  it('removing a sandbox\'s cgroups kills the processes still in them, then removes the directories', async () => {
    const { dirs } = makeSandboxCgroups(64);
    const stray = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((resolve) => stray.once('exit', (_code, signal) => resolve(signal)));
    for (const d of dirs) writeFileSync(path.join(d, 'cgroup.procs'), String(stray.pid));
    removeCgroups(dirs);
    const signal = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 5 s'), 5000))]);
    if (signal !== 'SIGKILL') stray.kill('SIGKILL');
    assert.equal(signal, 'SIGKILL');
    const deadline = Date.now() + 3000;
    while (dirs.some((d) => existsSync(d)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(dirs.filter((d) => existsSync(d)), [], 'the cgroup directories are gone');
  });
});
