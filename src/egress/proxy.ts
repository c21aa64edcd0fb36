/**
 * The egress proxy: the only way out for a function in its own network namespace (the
 * sandbox tier). It listens on a unix socket that is bind-mounted into the sandbox, takes
 * `CONNECT host:port` requests (RFC 9110 9.3.6) from the function's HTTP client
 * ({@link ./connector.ts}), and opens the connection itself, only when:
 * - `permissions.outbound` allows `host:port` (allow-list.ts), and
 * - the address it connects to is public, unless the entry names that very IP: the proxy
 *   resolves names itself and refuses a name that resolves to loopback, a private or
 *   link-local address (no DNS rebinding into the host's own network or cloud metadata).
 * Every hop of a redirect is a new CONNECT, so a redirect to a denied host is refused too.
 * Refusals answer 403 with a reason and are counted and logged (at most once per 10 s per host).
 * Bounded: at most `maxTunnels` open tunnels, a connect timeout, an idle timeout per tunnel.
 */
import http from 'node:http';
import net from 'node:net';
import { lookup } from 'node:dns/promises';
import { chmod } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { allows, isPublicAddress, parseOutbound } from './allow-list.js';

export interface EgressProxyOptions {
  /** Unix socket path to listen on. */
  socketPath: string;
  /**
   * Mode of the socket file. @default 0o600 (the host's user only). A sandbox, whose uid is
   * another, needs 0o666 on a socket in a directory only its own mount exposes.
   */
  mode?: number;
  /** `permissions.outbound` of the function this proxy serves. */
  outbound: readonly string[];
  /** The function (`id@version`), for logs. */
  fnKey: string;
  logger: Logger;
  /** Resolve a host name to its addresses (tests inject one). @default dns.lookup, all addresses */
  resolve?: (host: string) => Promise<string[]>;
  /** Most open tunnels at once; past it 503. @default 256 */
  maxTunnels?: number;
  /** Connecting to the upstream, in ms; past it 504. @default 10000 */
  connectTimeoutMs?: number;
  /** A tunnel with no bytes either way for this long is closed, in ms. @default 300000 */
  idleTimeoutMs?: number;
}

/** Counters of one proxy. */
export interface EgressStats {
  tunnels: number;
  open: number;
  refused: number;
}

export interface EgressProxy {
  readonly socketPath: string;
  stats(): EgressStats;
  /** Stop listening and cut every tunnel. */
  close(): Promise<void>;
}

const defaultResolve = async (host: string): Promise<string[]> => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Start a proxy for one function. Resolves once it listens. */
export async function startEgressProxy(o: EgressProxyOptions): Promise<EgressProxy> {
  const rules = parseOutbound(o.outbound);
  const resolve = o.resolve ?? defaultResolve;
  const maxTunnels = o.maxTunnels ?? 256;
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  const idleTimeoutMs = o.idleTimeoutMs ?? 300_000;
  const stats: EgressStats = { tunnels: 0, open: 0, refused: 0 };
  const sockets = new Set<net.Socket>();
  const lastLog = new Map<string, number>();

  const refuse = (client: net.Socket, status: number, target: string, why: string): void => {
    stats.refused++;
    const now = performance.now();
    if (now - (lastLog.get(target) ?? -Infinity) >= 10_000) {
      lastLog.set(target, now);
      o.logger.warn({ fn: o.fnKey, target, status, refused: stats.refused }, `outbound connection refused: ${why}`);
    }
    const body = `${why}\n`;
    client.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  };

  const server = http.createServer((req, res) => {
    // Only tunnels: a plain proxied request would carry the function's bytes unchecked.
    res.writeHead(405, { allow: 'CONNECT', connection: 'close' }).end('only CONNECT host:port\n');
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    const target = req.url ?? '';
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(target);
    if (m === null) { refuse(client, 400, target, `expected CONNECT host:port, got ${JSON.stringify(target)}`); return; }
    const host = m[1]!.toLowerCase();
    const port = Number(m[2]);
    if (!allows(rules, host, port)) { refuse(client, 403, target, `${host}:${port} is not in permissions.outbound of ${o.fnKey}`); return; }
    if (stats.open >= maxTunnels) { refuse(client, 503, target, `too many open connections (${maxTunnels})`); return; }
    void (async () => {
      let address: string;
      if (net.isIP(host) !== 0) {
        address = host; // named explicitly: allowed whatever it is
      } else {
        let all: string[];
        try {
          all = await resolve(host);
        } catch (err) {
          refuse(client, 502, target, `cannot resolve ${host} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
          return;
        }
        const publicOnes = all.filter(isPublicAddress);
        if (publicOnes.length === 0) {
          refuse(client, 403, target, `${host} resolves to ${all.join(', ') || 'nothing'}, which is not a public address (name the IP in permissions.outbound to allow it)`);
          return;
        }
        address = publicOnes[0]!;
      }
      if (client.destroyed) return;
      stats.open++;
      stats.tunnels++;
      const upstream = net.connect({ host: address, port });
      sockets.add(upstream);
      let counted = true;
      let connected = false;
      const release = (): void => { if (counted) { counted = false; stats.open--; } };
      const done = (): void => { release(); upstream.destroy(); client.destroy(); };
      const connectTimer = setTimeout(() => {
        release();
        upstream.destroy();
        refuse(client, 504, target, `connecting to ${host}:${port} timed out`);
      }, connectTimeoutMs);
      upstream.once('connect', () => {
        connected = true;
        clearTimeout(connectTimer);
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length > 0) upstream.write(head);
        upstream.setTimeout(idleTimeoutMs, done);
        client.setTimeout(idleTimeoutMs, done);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        if (connected || client.destroyed) { done(); return; }
        release();
        refuse(client, 502, target, `cannot connect to ${host}:${port} (${err.code ?? err.message})`);
      });
      upstream.on('close', () => { sockets.delete(upstream); if (connected) done(); });
      client.on('close', done);
    })();
  });

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    // exclusive: this process's own socket, even in a cluster worker (src/cluster/).
    server.listen({ path: o.socketPath, exclusive: true }, () => { server.off('error', reject); resolveListen(); });
  });
  server.on('error', (err) => o.logger.error({ err, fn: o.fnKey }, 'egress proxy error'));
  await chmod(o.socketPath, o.mode ?? 0o600);
  return {
    socketPath: o.socketPath,
    stats: () => ({ ...stats }),
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
