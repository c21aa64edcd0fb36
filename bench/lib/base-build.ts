/**
 * `--base-ref <git ref>`: fezz as it was at another commit, built once into a git worktree of
 * this repository, for the `<name>@base` rows (`--base-bin` with the build made for you).
 *
 * The worktree lives in the system temp directory, named by the commit, and is reused by later
 * runs: `git worktree add --detach`, `npm ci --ignore-scripts` (no postinstall of its own: the
 * rows that use it serve JavaScript functions), then the TypeScript build of `src/` into
 * `dist/`. Remove it with `git worktree remove --force <dir>`.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./paths.js";

/**
 * The `bin/fezz.js` of this repository at `ref` (a commit, tag or branch), built if it is not yet.
 * Takes a minute or two the first time (npm ci and tsc), a few ms after.
 * @throws Error when `ref` is not a commit of this repository (git's message), or when the
 *   install or build fails (the failing command's output).
 */
export function baseBuild(ref: string, log: (line: string) => void): string {
  const git = (...args: string[]): string => execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  let sha: string;
  try {
    sha = git("rev-parse", "--verify", "--quiet", `${ref}^{commit}`);
  } catch {
    throw new Error(`--base-ref: ${ref} is not a commit of this repository (a shallow clone may not have it: git fetch --unshallow)`);
  }
  const dir = join(tmpdir(), `fezz-bench-base-${sha.slice(0, 12)}`);
  const bin = join(dir, "bin", "fezz.js");
  if (existsSync(join(dir, "dist", "cli", "bin.js"))) return bin;
  const run = (what: string, cmd: string, args: string[], cwd: string): void => {
    log(`--base-ref ${ref} (${sha.slice(0, 12)}): ${what}`);
    try {
      execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 600_000 });
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`--base-ref: ${[cmd, ...args].join(" ")} failed in ${cwd}: ${(e.stderr || e.stdout || e.message).trim().slice(-2000)}`);
    }
  };
  if (!existsSync(join(dir, "package.json"))) {
    git("worktree", "prune");
    run(`git worktree add ${dir}`, "git", ["worktree", "add", "--force", "--detach", dir, sha], REPO_ROOT);
  }
  run("npm ci", "npm", ["ci", "--no-audit", "--no-fund", "--ignore-scripts"], dir);
  run("build (tsc)", process.execPath, [join(dir, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], dir);
  if (!existsSync(bin)) throw new Error(`--base-ref: ${ref} has no bin/fezz.js`);
  return bin;
}
