/**
 * Source maps of fezz bundles: written by bundle.ts and deploy-bundle.ts, read back by the
 * runtimes to make the stacks that leave a function name its own files.
 *
 * Every bundle carries its map inline, as a base64 `data:` comment at its end, so the map
 * travels wherever the bundle goes (the cache, a worker's inbox, a sandbox's `/fn`, a deploy
 * package) with no second file to grant, link or upload. The map's `sources` are relative to
 * the function's directory (`index.ts`, `lib/util.ts`, `node_modules/hono/dist/index.js`,
 * `../shared/x.ts` for a file outside it), never an absolute path of the machine that built
 * it, and the map has no `sourcesContent`: turning a position into `file:line:col` needs only
 * the mappings, and leaving the sources out keeps bundles small (a cold start reads the whole
 * file) and keeps copies of the code, and of files outside the function, out of the host's
 * cache, the deploy package and the bundle a function can read.
 *
 * The bundles the host runs mark the map `//# fezz-source-map=` rather than the standard
 * `//# sourceMappingURL=`, so Node never maps their stacks itself (under
 * `--enable-source-maps` or tsx it would read and parse the map at every load, and resolve the
 * relative sources against the cache or inbox directory). {@link StackMapper} maps them
 * instead, lazily: nothing is read or parsed until a stack that names the bundle leaves the
 * instance, so a function that never fails pays nothing, at load or per request. Bundles
 * meant for other tools (`fezz build`, deploy packages) keep the standard comment, which
 * esbuild follows when the host bundles an uploaded bundle again.
 *
 * No esbuild import here: this module runs inside isolate workers and sandboxes.
 */
import { readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The comment that carries the map of a bundle the host runs (Node does not read it). */
export const FEZZ_MAP_COMMENT = '//# fezz-source-map=data:application/json;base64,';
/** The standard inline map comment, for bundles other tools read (`fezz build`, deploy packages). */
export const STANDARD_MAP_COMMENT = '//# sourceMappingURL=data:application/json;base64,';

/** The part of a source map fezz reads and rewrites. */
interface MapJson { sources?: unknown; sourceRoot?: unknown; sourcesContent?: unknown; [k: string]: unknown }

/**
 * Make every entry of `map.sources` relative to `baseDir`, with forward slashes: esbuild
 * writes them relative to the output file already, except for modules a plugin generated
 * (`fezz-module-rule:/abs/path/x.wasm`), whose absolute path would otherwise be kept.
 * `sourcesContent` and `sourceRoot` are dropped. Mutates `map`.
 */
export function relativeSources(map: MapJson, baseDir: string): void {
  if (Array.isArray(map.sources)) {
    map.sources = map.sources.map((s: unknown) => {
      let src = String(s);
      // A plugin namespace (`name:`), but not a URL scheme of a path esbuild left alone.
      const ns = /^[a-z][a-z0-9-]*:(?=\/)|^fezz-module-rule:/i.exec(src);
      if (ns !== null) src = src.slice(ns[0].length);
      if (path.isAbsolute(src)) src = path.relative(baseDir, src);
      return src.split(path.sep).join('/');
    });
  }
  delete map.sourcesContent;
  delete map.sourceRoot;
}

/**
 * `code` (esbuild's output, ending with `//# sourceMappingURL=<file>.map`) with that line
 * replaced by the map `mapText` inline, its sources made relative to `baseDir`
 * ({@link relativeSources}), after `comment` ({@link FEZZ_MAP_COMMENT} or
 * {@link STANDARD_MAP_COMMENT}).
 */
export function inlineSourceMap(code: Uint8Array, mapText: string, baseDir: string, comment: string): Uint8Array {
  let js = Buffer.from(code.buffer, code.byteOffset, code.byteLength).toString('utf8');
  const link = js.lastIndexOf('\n//# sourceMappingURL=');
  if (link !== -1) js = js.slice(0, link + 1);
  else if (!js.endsWith('\n')) js += '\n';
  const map = JSON.parse(mapText) as MapJson;
  relativeSources(map, baseDir);
  return Buffer.from(`${js}${comment}${Buffer.from(JSON.stringify(map)).toString('base64')}\n`);
}

/** The inline map at the end of bundle text `js` (either comment), or null. */
export function readInlineMap(js: string): SourceMapPayload | null {
  for (const comment of [FEZZ_MAP_COMMENT, STANDARD_MAP_COMMENT]) {
    const at = js.lastIndexOf(comment);
    if (at === -1) continue;
    const end = js.indexOf('\n', at);
    const b64 = js.slice(at + comment.length, end === -1 ? undefined : end).trim();
    return JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as SourceMapPayload;
  }
  return null;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Rewrites the positions of one bundle in stack traces (and any text holding them) to the
 * function's own files, from the bundle's inline map: `at Object.fetch
 * (file:///tmp/fezz-isolates-1-x/3/3f2a….mjs:14:11)` becomes `at Object.fetch (index.ts:9:11)`.
 * A position the map does not cover (esbuild's helpers, the `require` banner) is left as it is.
 *
 * Cost: {@link map} on text that does not name the bundle is a substring search. The bundle
 * is read and its map parsed on the first text that does (one read of the bundle file, which
 * the instance can always read: it imported it); a bundle without a map, or one that cannot be
 * read, leaves every text as it is. Never throws.
 */
export class StackMapper {
  /** The strings that name the bundle in a stack: its file: URL, and its path. */
  readonly #needles: string[];
  readonly #file: string;
  readonly #re: RegExp;
  /** undefined: not read yet; null: no usable map. */
  #map: SourceMap | null | undefined = undefined;

  /** @param bundleUrl the file: URL the bundle was imported by. */
  constructor(bundleUrl: string) {
    let file = '';
    try { file = bundleUrl.startsWith('file:') ? fileURLToPath(bundleUrl) : ''; } catch { /* not a file URL */ }
    this.#file = file;
    this.#needles = file === '' ? [bundleUrl] : bundleUrl.endsWith(file) ? [file] : [bundleUrl, file];
    const names = [bundleUrl, ...(file !== '' ? [file] : [])].map(escapeRe).join('|');
    // V8 names an ES module by its URL; a loader (tsx) may show the path instead.
    this.#re = new RegExp(`(?:${names}):(\\d+):(\\d+)`, 'g');
  }

  /** `text` with every `<bundle>:line:col` the map covers replaced by `<source>:line:col` (1-based, as in stacks). */
  map(text: string): string {
    if (!this.#needles.some((n) => text.includes(n))) return text;
    const sm = this.#load();
    if (sm === null) return text;
    try {
      return text.replace(this.#re, (whole, line: string, col: string) => {
        const l = Number(line) - 1;
        const e = sm.findEntry(l, Number(col) - 1) as Partial<{ generatedLine: number; originalSource: string; originalLine: number; originalColumn: number }>;
        // findEntry answers the nearest mapping before the position, even from an earlier
        // line: only a mapping on the same generated line is this code.
        if (typeof e.originalSource !== 'string' || e.generatedLine !== l || e.originalLine === undefined || e.originalColumn === undefined) return whole;
        return `${e.originalSource}:${e.originalLine + 1}:${e.originalColumn + 1}`;
      });
    } catch {
      return text;
    }
  }

  /** Rewrite `err.stack` in place (for an error that someone else formats later); anything else is left alone. */
  mapError(err: unknown): void {
    try {
      const e = err as { stack?: unknown } | null;
      if (e !== null && typeof e === 'object' && typeof e.stack === 'string') {
        const mapped = this.map(e.stack);
        if (mapped !== e.stack) e.stack = mapped;
      }
    } catch { /* a frozen error, or a stack getter that throws: left as it is */ }
  }

  #load(): SourceMap | null {
    if (this.#map !== undefined) return this.#map;
    this.#map = null;
    try {
      if (this.#file === '') return null;
      const payload = readInlineMap(readFileSync(this.#file, 'utf8'));
      if (payload !== null && Array.isArray(payload.sources)) this.#map = new SourceMap(payload);
    } catch { /* no usable map: stacks stay as they are */ }
    return this.#map;
  }
}
