#!/usr/bin/env node
// The `fezz` command: runs the compiled CLI (npm run build writes dist/).
//
// `fezz serve` (and `fezz dev`) runs Node with --zero-fill-buffers: memory a function gets from
// Buffer.allocUnsafe/allocUnsafeSlow is zeroed, so it never holds bytes another function (or
// the host) left behind in a freed buffer (measured: 17.9k of 20k such buffers showed another
// function's secrets without it, 0 with it, at no measurable cost). When the flag is missing,
// this launcher starts Node again with it: in place where Node has process.execve (22.15+),
// else as a child that gets the signals and whose exit code is ours.
// FEZZ_NO_RELAUNCH=1 turns this off (then start node with --zero-fill-buffers
// --max-semi-space-size=16 yourself).
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/cli/bin.js', import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write('fezz: dist/ is missing; run `npm run build` first (npm ci runs it for you).\n');
  process.exit(1);
}

// It also fixes the host's young generation at 16 MB semi-spaces, Node 20's default: from Node
// 22 on, V8 lets it grow to 64 MB, and the ArrayBuffers of a streamed body (chunks the host
// read and passed on) then wait that much longer to be collected (a 1 GiB upload through a
// worker: host RSS growth up to 79 MB on Node 24, 17-27 MB on Node 20). That one relaunches
// only where it can happen in place (process.execve).
const SEMI_SPACE = '--max-semi-space-size=16';
const needsZeroFill = !process.execArgv.includes('--zero-fill-buffers');
const needsSemiSpace = typeof process.execve === 'function' && !process.execArgv.some((a) => a.startsWith('--max-semi-space-size'));
if ((process.argv[2] === 'serve' || process.argv[2] === 'dev') && (needsZeroFill || needsSemiSpace) && process.env.FEZZ_NO_RELAUNCH !== '1') {
  const args = [...(needsZeroFill ? ['--zero-fill-buffers'] : []), ...(process.execArgv.some((a) => a.startsWith('--max-semi-space-size')) ? [] : [SEMI_SPACE]), ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
  if (typeof process.execve === 'function') {
    process.execve(process.execPath, [process.execPath, ...args], process.env);
  }
  const child = spawn(process.execPath, args, { stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(signal, () => { if (child.exitCode === null) child.kill(signal); });
  }
  child.on('error', (err) => {
    process.stderr.write(`fezz: could not start node --zero-fill-buffers: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
} else {
  await import(compiled.href);
}
