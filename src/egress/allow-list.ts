/**
 * `permissions.outbound` (manifest) as a matcher: which host and port a function may open a
 * connection to. Entries, as in Spin's `allowed_outbound_hosts` and Deno's `--allow-net`:
 * - `"https://api.example.com"`: that host, port 443 (`http://`: port 80);
 * - `"api.example.com:8443"`, `"api.example.com:*"`: that host, that port (or any);
 * - `"api.example.com"`: that host, ports 80 and 443;
 * - `"*.example.com"`: any subdomain of example.com (not example.com itself), same port rules;
 * - an IP literal (`"127.0.0.1:9000"`, `"[::1]:9000"`): that address, even if it is loopback or
 *   private: naming an address is the only way to reach one (see {@link isPublicAddress}).
 */
import net from 'node:net';

/** One parsed entry. `port: null` = any port. */
export interface OutboundRule {
  /** Lower-case host name or IP literal (no brackets); for wildcards, the suffix with its dot (`.example.com`). */
  host: string;
  wildcard: boolean;
  ports: readonly number[] | null;
}

/**
 * Parse `permissions.outbound`.
 * @throws TypeError naming the entry when one cannot be parsed (the manifest schema checks
 *   the shape first, so this means a bad port).
 */
export function parseOutbound(entries: readonly string[]): OutboundRule[] {
  return entries.map((raw) => {
    let rest = raw.trim().toLowerCase();
    let defaults: number[] = [80, 443];
    if (rest.startsWith('https://')) { rest = rest.slice(8); defaults = [443]; }
    else if (rest.startsWith('http://')) { rest = rest.slice(7); defaults = [80]; }
    rest = rest.replace(/\/$/, '');
    let host = rest;
    let ports: number[] | null = defaults;
    const bracket = /^\[([^\]]+)\](?::(\d+|\*))?$/.exec(rest);
    if (bracket !== null) {
      host = bracket[1]!;
      if (bracket[2] !== undefined) ports = bracket[2] === '*' ? null : [Number(bracket[2])];
    } else {
      const colon = rest.lastIndexOf(':');
      if (colon !== -1 && net.isIPv6(rest) === false) {
        host = rest.slice(0, colon);
        const p = rest.slice(colon + 1);
        ports = p === '*' ? null : [Number(p)];
      }
    }
    if (ports !== null && ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new TypeError(`permissions.outbound: bad port in ${JSON.stringify(raw)}`);
    const wildcard = host.startsWith('*.');
    return { host: wildcard ? host.slice(1) : host, wildcard, ports };
  });
}

/** Whether `host:port` is allowed by `rules` (`host` lower-cased, IPv6 without brackets). */
export function allows(rules: readonly OutboundRule[], host: string, port: number): boolean {
  const h = host.toLowerCase();
  for (const r of rules) {
    const hostOk = r.wildcard ? h.endsWith(r.host) && h.length > r.host.length : h === r.host;
    if (hostOk && (r.ports === null || r.ports.includes(port))) return true;
  }
  return false;
}

/**
 * Whether `address` (an IP) is an ordinary public address: not loopback, private (RFC 1918,
 * fc00::/7), link-local (169.254/16, fe80::/10, where cloud metadata lives), CGNAT
 * (100.64/10), unspecified, multicast or broadcast. A host *name* that resolves to anything
 * else is refused: DNS must not be a way to reach the host's own network.
 */
export function isPublicAddress(address: string): boolean {
  if (net.isIPv4(address)) {
    const [a, b] = address.split('.').map(Number) as [number, number];
    if (a === 0 || a === 10 || a === 127 || a >= 224) return false;
    if (a === 169 && b === 254) return false;
    if (a === 172 && b >= 16 && b <= 31) return false;
    if (a === 192 && b === 168) return false;
    if (a === 100 && b >= 64 && b <= 127) return false;
    return true;
  }
  if (net.isIPv6(address)) {
    const x = address.toLowerCase();
    if (x === '::' || x === '::1') return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(x);
    if (mapped !== null) return isPublicAddress(mapped[1]!);
    if (/^f[cd]/.test(x) || /^fe[89ab]/.test(x) || x.startsWith('ff')) return false;
    return true;
  }
  return false;
}
