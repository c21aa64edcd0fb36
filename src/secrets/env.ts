/**
 * What reaches a function's `env` (and a plugin's environment variables): the manifest's
 * `env` and granted host variables, plus the function's secrets, plus `.dev.vars` in dev
 * mode. The registry calls {@link deliveredEnv} when it prepares a runtime; the digest it
 * returns goes into the runtime's fingerprint, so a changed secret restarts exactly the
 * versions whose delivered environment changed (hot reload), and nothing else.
 *
 * Rules (docs/secrets.md):
 * - JS functions (`isolate`, `inline`) get every secret of their id, as Workers do.
 * - Plugins (`process`, `native`) get only the secrets their manifest's `secrets` grants.
 * - A secret whose name is also in the manifest's `env` or `permissions.env` is refused: the
 *   version is not served (FEZZ_ERR_SECRET_CLASH), so a value never silently wins.
 * - In dev mode, `.dev.vars` in the function directory adds and overrides (manifest values
 *   and secrets alike, as with wrangler); for a plugin, only names it could have anyway
 *   (granted secrets and manifest `env` names).
 */
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { fezzError } from '../errors.js';
import type { ResolvedFunction } from '../manifest/load.js';
import { readDevVars } from './dev-vars.js';
import type { SecretSource } from './store.js';

/** Keys the digests of this process: fingerprints are compared within one process only, and a digest says nothing about a value. */
const DIGEST_KEY = randomBytes(32);

/**
 * The environment function `fn` gets, and a digest of what secrets and `.dev.vars` added
 * ('' when they added nothing, so a function without secrets keeps its fingerprint).
 * @param base the manifest's `env` with granted host variables (manifest/permissions.ts functionEnv).
 * @param secrets the store, or null/undefined when the host has none.
 * @param dev whether `.dev.vars` is read.
 * @throws FezzError FEZZ_ERR_SECRET_CLASH, FEZZ_ERR_DEV_VARS_INVALID, and the store's
 *   FEZZ_ERR_SECRETS_KEY / FEZZ_ERR_SECRETS_STORE: the version is then not served.
 */
export async function deliveredEnv(fn: ResolvedFunction, base: Record<string, string>, secrets: SecretSource | null | undefined, dev: boolean): Promise<{ env: Record<string, string>; digest: string }> {
  const m = fn.manifest;
  const stored = secrets != null ? await secrets.values(fn.id) : null;
  const devVars = dev ? await readDevVars(fn.dir) : null;
  if ((stored === null || stored.size === 0) && devVars === null) return { env: base, digest: '' };
  const plugin = m.runtime === 'process' || m.runtime === 'native';
  const granted = new Set(m.secrets ?? []);
  const added: Array<[string, string]> = [];
  if (stored !== null) {
    for (const [name, value] of stored) {
      const where = Object.hasOwn(m.env, name) ? 'fezz.json "env"' : m.permissions.env.includes(name) ? 'fezz.json "permissions.env"' : null;
      if (where !== null) throw fezzError('FEZZ_ERR_SECRET_CLASH', [path.relative(process.cwd(), fn.manifestPath), name, where, fn.id, name]);
      if (plugin && !granted.has(name)) continue;
      added.push([name, value]);
    }
  }
  if (devVars !== null) {
    for (const [name, value] of devVars) {
      if (plugin && !granted.has(name) && !Object.hasOwn(m.env, name)) continue;
      added.push([`.dev.vars:${name}`, value]);
    }
  }
  if (added.length === 0) return { env: base, digest: '' };
  const env = { ...base };
  const h = createHmac('sha256', DIGEST_KEY);
  for (const [tagged, value] of added) {
    const name = tagged.startsWith('.dev.vars:') ? tagged.slice(10) : tagged;
    env[name] = value;
    h.update(`${tagged}\0${value}\0`);
  }
  return { env, digest: h.digest('hex').slice(0, 32) };
}
