/**
 * Whether the sandbox tier can run here, asked once per bench run of the build under test:
 * fezz's own probe (`probeSandbox` in dist/runtime/sandbox/bwrap.js: `bwrap --version`, then
 * `node -e 0` under the full profile), so the bench and the host agree. When it says no, the
 * sandbox rows say `sandbox unavailable: <reason>` instead of a measurement, and a smoke run
 * does not fail for it (CI machines often forbid user namespaces).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { fezzBin } from "./fezz-host.js";

export type SandboxAvailability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** The prefix of every reason a sandbox row or suite gives when the tier cannot run here. */
export const UNAVAILABLE = "sandbox unavailable:";

let probed: Promise<SandboxAvailability> | null = null;

export function sandboxAvailability(): Promise<SandboxAvailability> {
  probed ??= probe();
  return probed;
}

/** Rejects with `sandbox unavailable: <reason>` when the tier cannot run here. */
export async function requireSandbox(): Promise<void> {
  const availability = await sandboxAvailability();
  if (!availability.ok) throw new Error(`${UNAVAILABLE} ${availability.reason}`);
}

/** Whether an error text is the "cannot run here" one (not a failure of fezz). */
export function isUnavailable(text: string | null | undefined): boolean {
  return text?.startsWith(UNAVAILABLE) === true;
}

async function probe(): Promise<SandboxAvailability> {
  const module = resolve(dirname(fezzBin()), "..", "dist", "runtime", "sandbox", "bwrap.js");
  if (existsSync(module)) {
    try {
      const { probeSandbox } = (await import(pathToFileURL(module).href)) as {
        probeSandbox: () => Promise<{ ok: true } | { ok: false; reason: string }>;
      };
      const verdict = await probeSandbox();
      return verdict.ok ? { ok: true } : { ok: false, reason: verdict.reason };
    } catch (error) {
      return { ok: false, reason: `fezz's sandbox probe failed: ${error instanceof Error ? error.message : String(error)}` };
    }
  }
  // A build without the sandbox tier's probe: at least bwrap must run.
  return new Promise((done) => {
    execFile("bwrap", ["--version"], { timeout: 5000 }, (error) => {
      done(error === null ? { ok: true } : { ok: false, reason: `bwrap does not run (${error.message}); apt-get install bubblewrap` });
    });
  });
}
