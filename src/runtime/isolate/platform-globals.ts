/**
 * Web platform globals that Workers and Deno give a function and that some Node versions
 * lack, installed in the function's realm before its module loads (worker-entry.ts, so both
 * the thread and the sandbox tier; the inline runtime installs them in the host's realm):
 * - `URLPattern`: Node's own where it has one (Node >= 23.8 as a global; 24 does), else the
 *   npm `urlpattern-polyfill` (the WICG reference polyfill), loaded only then.
 * - `navigator` (`userAgent`, `hardwareConcurrency`): Node >= 21's own; on Node 20 a small
 *   object with the same two fields and the same `userAgent` form (`Node.js/20`), so code
 *   that sniffs the runtime sees the truth, the same shape on every host Node version.
 * - `WebSocketPair` (Cloudflare Workers' shape; src/websocket/function-socket.ts): a
 *   function accepts WebSocket upgrades with it; the first pair made also makes `Response`
 *   take `{ status: 101, webSocket }`. Node has no such global.
 * - `localStorage` and `sessionStorage` are hidden (undefined) where Node has them (Node >= 25
 *   defines both; `localStorage` is undefined there without `--localstorage-file`, and its
 *   getter prints an ExperimentalWarning to the host's stderr the first time each isolate
 *   touches it): Workers and Deno Deploy have no Web Storage, and a function sees the same
 *   globals on every host Node version (docs/compatibility.md).
 * Nothing else is replaced where Node has it: a function sees Node's own objects there.
 */
import os from 'node:os';
import { installWebSocketGlobals } from '../../websocket/function-socket.js';

let installing: Promise<void> | null = null;

/**
 * Install the globals above where missing. Idempotent: every call returns the same promise,
 * which resolves once they are in place and never rejects (a polyfill that cannot load leaves
 * `URLPattern` undefined, and the function's own use of it then fails as on bare Node).
 * @param polyfillUrl file: URL of `urlpattern-polyfill/urlpattern` for a worker that may not
 *   resolve packages (a hardened worker of the compiled build); else the package is imported
 *   by name (and bundled in where the worker code is bundled).
 */
export function installPlatformGlobals(polyfillUrl?: string): Promise<void> {
  if (installing !== null) return installing;
  const g = globalThis as Record<string, unknown>;
  installWebSocketGlobals();
  for (const name of ['localStorage', 'sessionStorage']) {
    // Redefined, never read: reading Node's localStorage getter is what prints the warning.
    if (Object.getOwnPropertyDescriptor(globalThis, name) !== undefined) {
      Object.defineProperty(globalThis, name, { value: undefined, writable: true, configurable: true, enumerable: false });
    }
  }
  if (g.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', {
      value: Object.freeze({
        userAgent: `Node.js/${process.versions.node.split('.')[0]}`,
        hardwareConcurrency: os.availableParallelism(),
      }),
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
  installing = typeof g.URLPattern === 'function'
    ? Promise.resolve()
    : (polyfillUrl !== undefined ? import(polyfillUrl) as Promise<typeof import('urlpattern-polyfill/urlpattern')> : import('urlpattern-polyfill/urlpattern')).then((m) => {
      if (typeof g.URLPattern !== 'function') {
        Object.defineProperty(globalThis, 'URLPattern', { value: m.URLPattern, writable: true, configurable: true, enumerable: false });
      }
    }, () => undefined);
  return installing;
}
