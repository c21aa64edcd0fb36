#!/usr/bin/env node
// The `fezz` command: runs the compiled CLI (npm run build writes dist/).
//
// `fezz serve` (and `fezz dev`) runs Node with --zero-fill-buffers: memory a function gets from
// Buffer.allocUnsafe/allocUnsafeSlow is zeroed, so it never holds bytes another function (or
// the host) left behind in a freed buffer (measured: 17.9k of 20k such buffers showed another
// function's secrets without it, 0 with it, at no measurable cost). When the flag is missing,
// this launcher starts Node again with it: in place where Node has process.execve (22.15+),
// else as a child that gets the signals and whose exit code is ours.
// FEZZ_NO_RELAUNCH=1 turns this off (then start node with --zero-fill-buffers yourself).
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/cli/bin.js', import.meta.url);
if (!existsSync(compiled)) {
  process.stderr.write('fezz: dist/ is missing; run `npm run build` first (npm ci runs it for you).\n');
  process.exit(1);
}

if ((process.argv[2] === 'serve' || process.argv[2] === 'dev') && !process.execArgv.includes('--zero-fill-buffers') && process.env.FEZZ_NO_RELAUNCH !== '1') {
  const args = ['--zero-fill-buffers', ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
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
