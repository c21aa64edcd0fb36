/**
 * `fezz new --template websocket`: a WebSocket echo server in Cloudflare Workers' shape:
 * `new WebSocketPair()`, `server.accept()`, and a `101` Response carrying the client end
 * (`webSocket: client`).
 */
import { FEZZ_TYPES, TSCONFIG, type TemplateVars } from './function.js';

/** Relative file name -> contents. */
export function websocketTemplate({ name, version }: TemplateVars): Record<string, string> {
  return {
    'fezz.json': `{
  "id": ${JSON.stringify(name)},
  "version": ${JSON.stringify(version)},
  "entry": "index.ts",
  "routes": [
    { "method": "GET", "path": ${JSON.stringify(`/${name}`)} }
  ]
}
`,
    'fezz.d.ts': `${FEZZ_TYPES}
/** One end of a WebSocketPair, as in Cloudflare Workers (the parts this template uses). */
export interface WorkerWebSocket {
  /** Start handling this end in this function (the server end, before the 101 response). */
  accept(): void;
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', listener: (event: { data: string | ArrayBuffer }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
}

/** The init of the 101 response that hands the client end over. */
export type WebSocketResponseInit = ResponseInit & { webSocket: WorkerWebSocket };

declare global {
  /** Workers' WebSocketPair: \`const [client, server] = Object.values(new WebSocketPair())\`. */
  var WebSocketPair: { new (): { 0: WorkerWebSocket; 1: WorkerWebSocket } };
}
`,
    'index.ts': `// ${name}: a WebSocket echo server on fezz, in Cloudflare Workers' shape.
// Connect with: npx wscat -c ws://127.0.0.1:3000/${name}
import type { Context, WebSocketResponseInit } from './fezz.js';

export default {
  fetch(request: Request, _env: Record<string, string>, _ctx: Context): Response {
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
      return new Response('expected a WebSocket upgrade (connect with a WebSocket client)\\n', { status: 426, headers: { upgrade: 'websocket' } });
    }
    const [client, server] = Object.values(new WebSocketPair());
    server!.accept();
    server!.addEventListener('message', (event) => {
      server!.send(typeof event.data === 'string' ? \`echo: \${event.data}\` : event.data);
    });
    server!.addEventListener('close', (event) => server!.close(event.code, 'bye'));
    const init: WebSocketResponseInit = { status: 101, webSocket: client! };
    return new Response(null, init);
  },
};
`,
    'tsconfig.json': TSCONFIG,
  };
}
