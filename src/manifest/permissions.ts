/**
 * Deny by default, at build time: a function's bundle may import a Node built-in only when
 * its manifest's `permissions` grant what the built-in is for. Run time enforces the same
 * where the isolation tier can (the thread tier's permission model denies files outside the
 * grants, subprocesses, workers and addons; see docs/security.md).
 */
import { fezzError } from '../errors.js';
import type { Permissions } from './schema.js';

/** Built-ins no grant opens: processes, debuggers, WASI, native code. */
const NEVER = new Set(['child_process', 'cluster', 'inspector', 'inspector/promises', 'wasi', 'trace_events']);
/** Built-ins that reach the network: need `permissions.outbound`. */
const NETWORK = new Set(['net', 'tls', 'dgram', 'dns', 'dns/promises', 'http', 'https', 'http2']);
/** Built-ins that reach the file system: need `permissions.files`. */
const FILES = new Set(['fs', 'fs/promises']);

/**
 * Check the built-ins a bundle imports (`BundleResult.builtins`) against `permissions`.
 * @param label the manifest path, for the message.
 * @throws FezzError FEZZ_ERR_PERMISSION_DENIED naming the first built-in not covered and the grant it needs.
 */
export function checkBuiltins(builtins: readonly string[], permissions: Permissions, label: string): void {
  for (const name of builtins) {
    if (NEVER.has(name)) {
      throw fezzError('FEZZ_ERR_PERMISSION_DENIED', [label, `node:${name}`, 'functions may not start processes, debug, or load WASI or native code']);
    }
    if (NETWORK.has(name) && permissions.outbound.length === 0) {
      throw fezzError('FEZZ_ERR_PERMISSION_DENIED', [label, `node:${name}`, 'it reaches the network: list the hosts in "permissions": { "outbound": ["api.example.com"] } (fetch() needs the same)']);
    }
    if (FILES.has(name) && permissions.files.length === 0) {
      throw fezzError('FEZZ_ERR_PERMISSION_DENIED', [label, `node:${name}`, 'it reads files: list them in "permissions": { "files": ["static/"] } (paths inside the function directory)']);
    }
  }
}

/** The function's `env`: the manifest's values plus the host variables `permissions.env` names (those that are set). */
export function functionEnv(env: Record<string, string>, permissions: Permissions, hostEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (permissions.env.length === 0) return env;
  const out = { ...env };
  for (const name of permissions.env) {
    const value = hostEnv[name];
    if (value !== undefined && !(name in env)) out[name] = value;
  }
  return out;
}
