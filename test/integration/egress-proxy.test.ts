// The egress proxy (issue 11): a function's connections go out only as CONNECT through the
// host's proxy, which allows what permissions.outbound lists, resolves names itself and
// refuses a name that resolves to loopback or a private address; each redirect hop is checked.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { startEgressProxy, type EgressProxy } from '../../src/egress/proxy.js';
import { egressConnector } from '../../src/egress/connector.js';
import { allows, isPublicAddress, parseOutbound } from '../../src/egress/allow-list.js';

describe('permissions.outbound rules', () => {
  it('parses schemes, ports, wildcards and IP literals', () => {
    const r = parseOutbound(['https://api.example.com', 'plain.example', '*.internal.example:8443', 'any.example:*', '127.0.0.1:9000', '[::1]:9001']);
    assert.ok(allows(r, 'api.example.com', 443));
    assert.ok(!allows(r, 'api.example.com', 80));
    assert.ok(allows(r, 'plain.example', 80) && allows(r, 'plain.example', 443) && !allows(r, 'plain.example', 8080));
    assert.ok(allows(r, 'a.internal.example', 8443) && allows(r, 'a.b.internal.example', 8443));
    assert.ok(!allows(r, 'internal.example', 8443), 'a wildcard is for subdomains only');
    assert.ok(!allows(r, 'evilinternal.example', 8443));
    assert.ok(allows(r, 'any.example', 1) && allows(r, 'any.example', 65535));
    assert.ok(allows(r, '127.0.0.1', 9000) && !allows(r, '127.0.0.1', 9001));
    assert.ok(allows(r, '::1', 9001));
  });

  it('knows which addresses are public', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1']) {
      assert.equal(isPublicAddress(a), false, a);
    }
    for (const a of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111']) assert.equal(isPublicAddress(a), true, a);
  });
});

describe('the egress proxy', () => {
  let dir: string;
  let upstream: http.Server;
  let other: http.Server;
  let port = 0;
  let otherPort = 0;
  let proxy: EgressProxy;
  let agent: Agent;
  const logs: string[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-egress-'));
    other = http.createServer((_req, res) => res.end('other: should never be reached'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
    otherPort = (other.address() as AddressInfo).port;
    upstream = http.createServer((req, res) => {
      if (req.url === '/redirect') { res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/` }).end(); return; }
      res.end(`upstream ${req.url}`);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    port = (upstream.address() as AddressInfo).port;
    const logger = pino({ level: 'warn' }, { write: (l: string) => { logs.push(l); } });
    proxy = await startEgressProxy({
      socketPath: path.join(dir, 'egress.sock'),
      outbound: [`127.0.0.1:${port}`, `api.test:${port}`],
      fnKey: 'caller@1.0.0',
      logger,
      // api.test resolves to loopback: refused, since only a named IP may be loopback. (No test
      // reaches a public address: traffic stays on this machine.)
      resolve: async (host) => (host === 'api.test' ? ['127.0.0.1', '::1'] : []),
      connectTimeoutMs: 1000,
    });
    agent = new Agent({ connect: egressConnector(proxy.socketPath) as never });
  });
  after(async () => {
    await agent.close();
    await proxy.close();
    upstream.close();
    other.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (url: string) => undiciFetch(url, { dispatcher: agent });

  it('its socket is 0600', async () => {
    assert.equal((await stat(proxy.socketPath)).mode & 0o777, 0o600);
  });

  it('an allowed address answers through the tunnel', async () => {
    const r = await get(`http://127.0.0.1:${port}/hello`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'upstream /hello');
  });

  it('a host:port not in the list is refused with the reason', async () => {
    await assert.rejects(get(`http://127.0.0.1:${otherPort}/`), (err: Error) => /not in permissions\.outbound of caller@1\.0\.0/.test(String((err as { cause?: Error }).cause?.message)));
    await assert.rejects(get(`http://evil.test:${port}/`), (err: Error) => /not in permissions\.outbound/.test(String((err as { cause?: Error }).cause?.message)));
  });

  it('an allowed name that resolves to loopback is refused', async () => {
    await assert.rejects(get(`http://api.test:${port}/`), (err: Error) => /resolves to 127\.0\.0\.1, ::1, which is not a public address/.test(String((err as { cause?: Error }).cause?.message)));
  });

  it('a redirect to a denied host is refused on the second hop', async () => {
    await assert.rejects(get(`http://127.0.0.1:${port}/redirect`), (err: Error) => /not in permissions\.outbound/.test(String((err as { cause?: Error }).cause?.message)));
  });

  it('refusals are counted and logged; plain proxy requests get 405', async () => {
    assert.ok(proxy.stats().refused >= 4, JSON.stringify(proxy.stats()));
    assert.ok(logs.some((l) => /outbound connection refused/.test(l)));
    const status = await new Promise<number>((resolve) => {
      http.get({ socketPath: proxy.socketPath, path: 'http://127.0.0.1/' }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    });
    assert.equal(status, 405);
  });
});
