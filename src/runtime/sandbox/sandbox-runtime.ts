/**
 * Host-side files of the sandbox tier, under `<os tmpdir>/fezz-sandbox-<pid>-XXXXXX/` (0711:
 * the sandbox user may pass through it but not list it; removed at exit):
 * - `runtime/` (0755): sandbox-entry.ts (with worker-entry.ts and what it imports) bundled by
 *   esbuild into one `sandbox-entry.mjs`, and `loader-warmup.mjs` beside it; bound read-only
 *   at /fezz in every sandbox. Built once per host process (~60 ms, on the first sandbox).
 * - `<n>/` (0755): the inbox of sandbox n, bound read-only at /fn: empty while it is a spare,
 *   then its function's bundle alone ({@link admitToSandbox}); removed when it exits.
 */
import { chmodSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { INBOX_MOUNT } from './bwrap.js';

let root: string | null = null;
let runtime: string | null = null;
let seq = 0;

function rootDir(): string {
  if (root !== null) return root;
  const dir = mkdtempSync(path.join(os.tmpdir(), `fezz-sandbox-${process.pid}-`));
  chmodSync(dir, 0o711);
  process.once('exit', () => { rmSync(dir, { recursive: true, force: true }); });
  root = dir;
  return dir;
}

/**
 * The runtime directory (bundled on first call).
 * @throws an esbuild error if the sandbox code cannot be bundled.
 */
export function sandboxRuntimeDir(): string {
  if (runtime !== null) return runtime;
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const dir = path.join(rootDir(), 'runtime');
  esbuild.buildSync({
    entryPoints: {
      'sandbox-entry': fileURLToPath(new URL(`./sandbox-entry${ext}`, import.meta.url)),
      'loader-warmup': fileURLToPath(new URL(`../isolate/loader-warmup${ext}`, import.meta.url)),
    },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['node:*'],
    // undici (the egress dispatcher) is CommonJS: its require() of built-ins needs a real require.
    banner: { js: "import { createRequire as __fezzSandboxRequire } from 'node:module'; const require = __fezzSandboxRequire(import.meta.url);" },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    logLevel: 'silent',
  });
  chmodSync(dir, 0o755);
  runtime = dir;
  return dir;
}

/** A new empty inbox for one sandbox. */
export function newInbox(): string {
  const dir = path.join(rootDir(), String(++seq));
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * Put the bundle at `moduleUrl` into `inbox` and return the URL the sandbox imports it by
 * (`file:///fn/<name>`): a hard link when the bundle is world-readable (the sandbox user must
 * read it), else a copy made readable. If both fail, the sandbox's import fails and the pool
 * reports the start as failed.
 */
export function admitToSandbox(inbox: string, moduleUrl: string): string {
  if (!moduleUrl.startsWith('file:')) return moduleUrl;
  const from = fileURLToPath(moduleUrl);
  const name = path.basename(from);
  const to = path.join(inbox, name);
  try {
    if ((statSync(from).mode & 0o004) === 0) throw new Error('not world-readable');
    linkSync(from, to);
  } catch {
    try { copyFileSync(from, to); chmodSync(to, 0o644); } catch { /* reported by the import */ }
  }
  return `file://${INBOX_MOUNT}/${encodeURIComponent(name)}`;
}

/** Remove an inbox after its sandbox exited (in the background). */
export function releaseSandboxInbox(inbox: string): void {
  void rm(inbox, { recursive: true, force: true }).catch(() => undefined);
}

/** The host directory under which every sandbox's files live (created on first call; removed at exit). */
export { rootDir as sandboxRootDir };
