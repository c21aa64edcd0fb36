/**
 * The function side of the egress proxy: an undici `connect` function that opens every
 * connection as `CONNECT host:port` through the proxy's unix socket, then (for https) TLS
 * over that tunnel, so the function's `fetch` works unchanged while every connection is
 * checked by the host (proxy.ts). Used as `new Agent({ connect: egressConnector(path) })`
 * and installed as the global dispatcher inside a sandbox.
 */
import net from 'node:net';
import tls from 'node:tls';

/** The egress proxy's socket, in a sandbox's inbox (host side) and at `/fn/egress.sock` inside it. */
export const EGRESS_SOCKET = 'egress.sock';

/** What undici passes to `connect` (the subset used here). */
export interface ConnectOptions {
  hostname: string;
  host?: string;
  protocol: string;
  port: string;
  servername?: string;
}

type Callback = (err: Error | null, socket: net.Socket | tls.TLSSocket | null) => void;

/** Largest CONNECT response head read, in bytes. */
const MAX_HEAD = 16 * 1024;

/**
 * A `connect(options, callback)` for undici's Agent that tunnels through the proxy at
 * `socketPath`. A refusal becomes an error whose message is the proxy's reason (`fetch`
 * rejects with it as `cause`), e.g. "evil.example:443 is not in permissions.outbound of x@1.0.0".
 */
export function egressConnector(socketPath: string): (options: ConnectOptions, callback: Callback) => void {
  return (options, callback) => {
    const https = options.protocol === 'https:';
    const port = Number(options.port) || (https ? 443 : 80);
    const host = options.hostname.replace(/^\[|\]$/g, '');
    const target = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
    const sock = net.connect(socketPath);
    let head = Buffer.alloc(0);
    let settled = false;
    const fail = (err: Error): void => { if (!settled) { settled = true; sock.destroy(); callback(err, null); } };
    sock.once('error', (err: NodeJS.ErrnoException) => {
      // No proxy socket: the function was granted no outbound host at all.
      fail(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? Object.assign(new Error('egress refused: no outbound network (the manifest\'s permissions.outbound lists no host)'), { code: 'FEZZ_EGRESS_REFUSED' })
        : err);
    });
    sock.once('connect', () => sock.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`));
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD) fail(new Error('egress proxy: response head too large'));
        return;
      }
      sock.off('data', onData);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head.toString('latin1', 0, end))?.[1] ?? 0);
      if (status !== 200) {
        const reason = head.toString('utf8', end + 4).trim() || `status ${status}`;
        const err = Object.assign(new Error(`egress refused: ${reason}`), { code: 'FEZZ_EGRESS_REFUSED', status });
        fail(err);
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) sock.unshift(rest);
      sock.off('error', fail);
      if (!https) { settled = true; callback(null, sock); return; }
      const secure = tls.connect({ socket: sock, servername: options.servername ?? (net.isIP(host) ? undefined : host), ALPNProtocols: ['http/1.1'] });
      secure.once('secureConnect', () => { if (!settled) { settled = true; secure.off('error', fail); callback(null, secure); } });
      secure.once('error', fail);
    };
    sock.on('data', onData);
  };
}
