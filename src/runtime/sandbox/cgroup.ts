/**
 * Cgroups per sandbox process: a pids limit ({@link PIDS_MAX}, threads included), so that a
 * fork bomb ends inside that sandbox; and a memory limit, so that memory a function touches
 * outside the V8 heap (a filled 2 GB Buffer) gets that sandbox OOM-killed, not the host.
 *
 * cgroup v1 (this machine): one directory per controller, under the host's own cgroup of that
 * controller (read from /proc/self/cgroup), `<controller root>/<own path>/fezz-<host pid>/<n>/`.
 * cgroup v2: one directory under the host's own cgroup, when `pids`/`memory` can be enabled
 * for its children there (a delegated subtree). Needs write access (root, or delegation);
 * where nothing can be made, {@link makeSandboxCgroups} returns no directories: a function
 * sandbox then relies on its seccomp filter (no process creation at all) and its heap and
 * ArrayBuffer limits; a plugin sandbox has no process or memory limit (the host warns).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PIDS_MAX } from './bwrap.js';

/** Node's own memory (code, stacks, libuv, the bundle) beyond the heap and ArrayBuffers, in MB. */
const BASE_MEMORY_MB = 128;

interface Parent { dir: string; pids: boolean; memory: boolean }

let parents: Parent[] | undefined;
let seq = 0;

/** The host's own cgroup path per controller (v1), or under `''` (v2). */
function ownPaths(): Map<string, string> {
  const out = new Map<string, string>();
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m === null) continue;
      for (const c of m[1]!.split(',')) out.set(c, m[2]!);
    }
  } catch { /* no cgroups */ }
  return out;
}

/** Remove the cgroups of fezz hosts that are gone (killed before their exit handler ran). */
function sweepStale(base: string): void {
  try {
    for (const name of readdirSync(base)) {
      const pid = Number(/^fezz-(\d+)$/.exec(name)?.[1] ?? NaN);
      if (Number.isNaN(pid) || pid === process.pid) continue;
      try { process.kill(pid, 0); continue; } catch (err) { if ((err as NodeJS.ErrnoException).code === 'EPERM') continue; }
      removeTree(path.join(base, name));
    }
  } catch { /* best effort */ }
}

/** rmdir a host's cgroup directory and its sandboxes' (those with no process left). */
function removeTree(dir: string): void {
  try {
    for (const child of readdirSync(dir, { withFileTypes: true })) {
      if (!child.isDirectory()) continue;
      killMembers(path.join(dir, child.name));
      try { rmdirSync(path.join(dir, child.name)); } catch { /* in use */ }
    }
    rmdirSync(dir);
  } catch { /* in use, or gone */ }
}

/**
 * SIGKILL every process still in a sandbox's cgroups (cgroup v2: `cgroup.kill`; v1: each pid
 * of `cgroup.procs`). A sandbox whose launcher was killed while bwrap was still setting up
 * could leave its inner bwrap (pid 1 of the sandbox's namespace, reparented to init) waiting
 * forever, holding the host's channel open: seen in the test suite, before and after the
 * spawner. Every process of a sandbox is in its cgroups, so this ends them all.
 */
export function killCgroupMembers(dirs: readonly string[]): void {
  for (const d of dirs) killMembers(d);
}

/** {@link killCgroupMembers} for one cgroup directory. */
function killMembers(dir: string): void {
  try {
    if (existsSync(path.join(dir, 'cgroup.kill'))) { writeFileSync(path.join(dir, 'cgroup.kill'), '1'); return; }
    for (const line of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
      const pid = Number(line);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
  } catch { /* gone, or not ours to read */ }
}

function tryMkdir(dir: string): boolean {
  sweepStale(path.dirname(dir));
  try {
    mkdirSync(dir, { recursive: true });
    process.once('exit', () => removeTree(dir));
    return true;
  } catch {
    return false;
  }
}

/** The host's directories for sandbox cgroups (made on first use). */
function parentDirs(): Parent[] {
  if (parents !== undefined) return parents;
  parents = [];
  const own = ownPaths();
  const name = `fezz-${process.pid}`;
  for (const c of ['pids', 'memory'] as const) {
    const root = `/sys/fs/cgroup/${c}`;
    if (!own.has(c) || !existsSync(path.join(root, 'cgroup.procs'))) continue;
    const dir = path.join(root, own.get(c)!, name);
    if (tryMkdir(dir)) parents.push({ dir, pids: c === 'pids', memory: c === 'memory' });
  }
  if (parents.length === 0 && own.has('') && existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const dir = path.join('/sys/fs/cgroup', own.get('')!, name);
    if (tryMkdir(dir)) {
      let pids = false;
      let memory = false;
      for (const c of ['pids', 'memory']) {
        try { writeFileSync(path.join(dir, 'cgroup.subtree_control'), `+${c}`); if (c === 'pids') pids = true; else memory = true; } catch { /* not delegated */ }
      }
      if (pids || memory) parents.push({ dir, pids, memory });
    }
  }
  return parents;
}

/**
 * New cgroups for one sandbox with `memoryMb` of heap: pids.max {@link PIDS_MAX}, memory
 * limit `2 x memoryMb + 128` MB (heap, ArrayBuffers, Node itself). Returns the directories the
 * sandbox must join (possibly none) and whether one limits pids. Remove them with
 * {@link removeCgroups} after it exited.
 */
export function makeSandboxCgroups(memoryMb: number): { dirs: string[]; pids: boolean } {
  const dirs: string[] = [];
  let pids = false;
  const n = String(++seq);
  for (const p of parentDirs()) {
    const dir = path.join(p.dir, n);
    try {
      mkdirSync(dir);
      dirs.push(dir);
      if (p.pids) { writeFileSync(path.join(dir, 'pids.max'), String(PIDS_MAX)); pids = true; }
      if (p.memory) {
        const bytes = String((2 * memoryMb + BASE_MEMORY_MB) * 1024 * 1024);
        const file = existsSync(path.join(dir, 'memory.max')) ? 'memory.max' : 'memory.limit_in_bytes';
        writeFileSync(path.join(dir, file), bytes);
      }
    } catch { /* that controller is left out */ }
  }
  return { dirs, pids };
}

/**
 * Remove a sandbox's cgroups once it exited, killing whatever of it is still in them first
 * (retried: the kernel lags a little).
 */
export function removeCgroups(dirs: readonly string[], tries = 20): void {
  for (const d of dirs) killMembers(d);
  const left = dirs.filter((d) => { try { rmdirSync(d); return false; } catch (err) { return (err as NodeJS.ErrnoException).code !== 'ENOENT'; } });
  if (left.length > 0 && tries > 0) setTimeout(removeCgroups, 100, left, tries - 1).unref();
}
