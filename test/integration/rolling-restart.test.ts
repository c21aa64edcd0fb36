// Leaving a load balancer without errors (issue 13, item 2): the two-phase drain.
// - Library host: during the drain delay /healthz is 503 and every response carries
//   `connection: close`; then the listener closes, quiet kept-alive connections close
//   (cleanly, no reset), and a request arriving on a kept-alive connection just then is
//   answered, not reset.
// - Real HAProxy and nginx (Debian packages, the configs in deploy/, on 127.0.0.1 ephemeral
//   ports, in the foreground) in front of three `fezz serve` processes; under mixed GET/POST
//   keep-alive load through both balancers, each fezz is restarted in turn (SIGTERM, exit,
//   start on the same port): every response is a 200 with the right body, no connection error.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { sleep, startHost, type TestHost } from '../helpers/host.js';
import { CLI } from '../helpers/cli.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A functions directory: GET /hello, POST /echo, GET /slow?ms=N. */
async function functionsDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-rolling-'));
  const fns: Record<string, { route: [string, string]; code: string }> = {
    hello: { route: ['GET', '/hello'], code: 'export default { fetch() { return new Response("hello"); } };' },
    echo: { route: ['POST', '/echo'], code: 'export default { async fetch(request) { return new Response("echo " + (await request.text())); } };' },
    slow: {
      route: ['GET', '/slow'],
      code: 'export default { async fetch(request) { const ms = Number(new URL(request.url).searchParams.get("ms") ?? 500); await new Promise((r) => setTimeout(r, ms)); return new Response(`slept ${ms}`); } };',
    },
  };
  for (const [id, f] of Object.entries(fns)) {
    const d = path.join(dir, 'functions', `${id}@1.0.0`);
    await mkdir(d, { recursive: true });
    await writeFile(path.join(d, 'fezz.json'), JSON.stringify({ id, version: '1.0.0', entry: 'index.js', routes: [{ method: f.route[0], path: f.route[1] }], instances: { min: 1, max: 1 } }));
    await writeFile(path.join(d, 'index.js'), f.code);
  }
  return dir;
}

/** One HTTP/1.1 exchange on a raw socket: status, lower-cased headers, body (content-length framed). */
interface RawResponse { status: number; headers: Record<string, string>; body: string }

/** A raw client connection: write bytes, read whole responses, see how the connection ended. */
class RawConn {
  readonly sock: net.Socket;
  #buf = '';
  #waiters: Array<() => void> = [];
  ended: 'open' | 'fin' | 'reset' = 'open';
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setEncoding('utf8');
    this.sock.on('data', (c: string) => { this.#buf += c; this.#wake(); });
    this.sock.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'ECONNRESET') this.ended = 'reset'; this.#wake(); });
    this.sock.on('end', () => { if (this.ended === 'open') this.ended = 'fin'; this.#wake(); });
    this.closed = new Promise((r) => this.sock.on('close', () => { this.#wake(); r(); }));
  }

  connected(): Promise<void> { return new Promise((resolve, reject) => { this.sock.once('connect', resolve); this.sock.once('error', reject); }); }

  #wake(): void { for (const w of this.#waiters.splice(0)) w(); }

  /** The next whole response on the connection (rejects if the connection ends first). */
  async response(timeoutMs = 5000): Promise<RawResponse> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const head = this.#buf.indexOf('\r\n\r\n');
      if (head !== -1) {
        const lines = this.#buf.slice(0, head).split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim(); }
        const len = Number(headers['content-length'] ?? 0);
        if (this.#buf.length >= head + 4 + len) {
          const body = this.#buf.slice(head + 4, head + 4 + len);
          this.#buf = this.#buf.slice(head + 4 + len);
          return { status: Number(lines[0]!.split(' ')[1]), headers, body };
        }
      }
      if (this.sock.destroyed || this.ended !== 'open') throw new Error(`connection ended (${this.ended}) before a whole response; got ${JSON.stringify(this.#buf)}`);
      if (performance.now() > until) throw new Error(`no whole response within ${timeoutMs} ms; got ${JSON.stringify(this.#buf)}`);
      await new Promise<void>((r) => { this.#waiters.push(r); setTimeout(r, 50); });
    }
  }
}

const get = (p: string): string => `GET ${p} HTTP/1.1\r\nhost: test\r\n\r\n`;

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('the two-phase drain (library host)', () => {
  let dir = '';
  before(async () => { dir = await functionsDir(); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('phase 1: the listener stays open and serves, /healthz is 503, every response carries connection: close', async () => {
    const t: TestHost = await startHost(path.join(dir, 'functions'));
    const port = Number(new URL(t.url).port);
    try {
      const kept = new RawConn(port);
      await kept.connected();
      kept.sock.write(get('/hello'));
      const first = await kept.response();
      assert.equal(first.status, 200);
      assert.notEqual(first.headers.connection, 'close', 'kept alive before the drain');
      const health = await fetch(`${t.url}/healthz`);
      assert.equal(health.status, 200);
      await health.text();

      const t0 = performance.now();
      const closing = t.host.close(3000, 800);
      await sleep(100);
      // A new connection is still accepted and served; /healthz says 503.
      const fresh = new RawConn(port);
      await fresh.connected();
      fresh.sock.write(get('/healthz'));
      const h = await fresh.response();
      assert.equal(h.status, 503, '/healthz answers 503 during the drain delay');
      assert.equal(h.headers.connection, 'close');
      await fresh.closed;
      // The kept-alive connection: served, with connection: close, then closed by the host (FIN, not reset).
      kept.sock.write(get('/hello'));
      const second = await kept.response();
      assert.deepEqual([second.status, second.body, second.headers.connection], [200, 'hello', 'close']);
      await kept.closed;
      assert.equal(kept.ended, 'fin');
      const post = await fetch(`${t.url}/echo`, { method: 'POST', body: 'x', headers: { 'fezz-retries': 'idempotent' } });
      assert.deepEqual([post.status, await post.text(), post.headers.get('connection')], [200, 'echo x', 'close']);
      // A balancer that re-sends safe requests elsewhere (nginx, deploy/nginx.conf) gets 503 for them.
      const turned = await fetch(`${t.url}/hello`, { headers: { 'fezz-retries': 'idempotent' } });
      assert.deepEqual([turned.status, (await turned.json() as { code: string }).code, turned.headers.get('connection')], [503, 'FEZZ_ERR_SHUTTING_DOWN', 'close']);
      assert.equal(await refused(port), false, 'the listener is open during the drain delay');
      await closing;
      assert.ok(performance.now() - t0 >= 800, 'close() waited for the drain delay');
      assert.equal(await refused(port), true, 'the listener is closed after it');
      assert.ok(t.logs.some((l) => /phase 1/.test(l.msg)) && t.logs.some((l) => /phase 2/.test(l.msg)), 'both phases are logged');
    } finally { await t.host.close(0, 0); }
  });

  it('phase 2: quiet kept-alive connections close cleanly; a request arriving on one, or in flight, is answered, not reset', async () => {
    const t: TestHost = await startHost(path.join(dir, 'functions'));
    const port = Number(new URL(t.url).port);
    try {
      // Four kept-alive connections, each used once.
      const conns = await Promise.all([0, 1, 2, 3].map(async () => {
        const c = new RawConn(port);
        await c.connected();
        c.sock.write(get('/hello'));
        assert.equal((await c.response()).status, 200);
        return c;
      }));
      const [idle, partial, racing, busy] = conns as [RawConn, RawConn, RawConn, RawConn];
      busy.sock.write(get('/slow?ms=600'));
      partial.sock.write('GET /hello HTTP/1.1\r\nhost: te'); // a request head half arrived
      await sleep(100);
      // No drain delay: the listener closes now. A whole request is written in the same tick
      // (it reaches the host's socket before the host looks at its connections).
      const t0 = performance.now();
      const closing = t.host.close(3000, 0);
      racing.sock.write(get('/hello'));
      const idleClosed = idle.closed.then(() => performance.now() - t0);
      await sleep(150);
      partial.sock.write('st\r\n\r\n');
      assert.equal(await refused(port), true, 'new connections are refused in phase 2');

      const [r1, r2, r3] = await Promise.all([partial.response(), racing.response(), busy.response()]);
      assert.deepEqual([r1.status, r1.body, r1.headers.connection], [200, 'hello', 'close'], 'the half-arrived request is answered');
      assert.deepEqual([r2.status, r2.body, r2.headers.connection], [200, 'hello', 'close'], 'the request racing the close is answered');
      assert.deepEqual([r3.status, r3.body, r3.headers.connection], [200, 'slept 600', 'close'], 'the request in flight is answered');
      await Promise.all(conns.map((c) => c.closed));
      const idleMs = await idleClosed;
      assert.ok(idleMs < 1000, `the quiet kept-alive connection was closed at once, not at the deadline (${Math.round(idleMs)} ms)`);
      assert.deepEqual(conns.map((c) => c.ended), ['fin', 'fin', 'fin', 'fin'], 'every connection was closed cleanly (FIN), none reset');
      await closing;
    } finally { await t.host.close(0, 0); }
  });
});

// ---------------------------------------------------------------------------------------
// Behind real balancers.

function which(name: string): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin']) {
    const p = path.join(d, name);
    if (d !== '' && existsSync(p)) return p;
  }
  return null;
}
const HAPROXY = which('haproxy');
const NGINX = which('nginx');
const missing = [HAPROXY === null ? 'haproxy' : '', NGINX === null ? 'nginx' : ''].filter(Boolean);

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** A `fezz serve` process on a fixed port (restartable on the same port). */
class Fezz {
  child: ChildProcess | null = null;
  out = '';
  constructor(readonly name: string, readonly port: number, readonly dir: string, readonly tmp: string) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, [...CLI, 'serve',
      '--dir', this.dir, '--port', String(this.port), '--admin-port', '0', '--no-watch', '--isolation', 'thread',
      '--cache-dir', path.join(this.tmp, `cache-${this.name}`)],
    // The default drain delay (5 s) and keep-alive timeout (5 s): what deploy/*.conf are tuned for.
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEZZ_TOKEN_FILE: path.join(this.tmp, `token-${this.name}`), FEZZ_DRAIN_DELAY: undefined } });
    this.child = child;
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (c: string) => { this.out += c; });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no listening line in: ${out}`)), 20_000);
      child.stdout!.on('data', (c: string) => {
        out += c;
        this.out += c;
        if (/fezz listening/.test(out)) { clearTimeout(timer); resolve(); }
      });
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${this.name} exited early with ${code}: ${out}`)); });
    });
  }

  /**
   * SIGTERM, wait for the exit; resolves with the exit code and how long it took. `now`: a
   * second signal right after, which skips the drain delay.
   */
  async stop(now = false): Promise<{ code: number | null; ms: number }> {
    const child = this.child;
    if (child === null || child.exitCode !== null) return { code: child?.exitCode ?? null, ms: 0 };
    const t0 = performance.now();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    if (now) setTimeout(() => { if (child.exitCode === null) child.kill('SIGINT'); }, 200);
    const code = await exited;
    this.child = null;
    return { code, ms: performance.now() - t0 };
  }

  kill(): void { if (this.child !== null && this.child.exitCode === null) this.child.kill('SIGKILL'); }
}

/** A balancer process in the foreground, stopped by its pid. */
function runBalancer(cmd: string, args: string[], log: { out: string }): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (c: string) => { log.out += c; });
  child.stderr!.on('data', (c: string) => { log.out += c; });
  return child;
}

async function waitFor200(url: string, what: string, log: { out: string }): Promise<void> {
  const until = performance.now() + 15_000;
  let last = '';
  while (performance.now() < until) {
    try {
      const r = await fetch(url);
      await r.text();
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) { last = (err as Error).message; }
    await sleep(100);
  }
  throw new Error(`${what} did not answer 200 at ${url} (${last}); its output:\n${log.out}`);
}

/** Wait for `p`, at most `ms` (a timer that does not keep the test process alive after). */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => { timer = setTimeout(r, ms); })]).finally(() => clearTimeout(timer));
}

interface Failure { via: string; method: string; at: number; what: string }

/** Mixed GET/POST over kept-alive connections through one balancer, until stopped. */
class Load {
  readonly agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
  ok = { GET: 0, POST: 0 };
  readonly failures: Failure[] = [];
  #stop = false;
  #workers: Promise<void>[] = [];
  constructor(readonly via: string, readonly port: number, readonly t0: number) {}

  start(workers: number): void {
    for (let w = 0; w < workers; w++) this.#workers.push(this.#loop(w));
  }

  async #loop(w: number): Promise<void> {
    for (let i = 0; !this.#stop; i++) {
      const post = (i + w) % 2 === 0;
      const body = `w${w}-${i}`;
      const at = performance.now() - this.t0;
      const r = await this.#one(post ? 'POST' : 'GET', post ? '/echo' : '/hello', post ? body : null);
      const expect = post ? `echo ${body}` : 'hello';
      if (r.error !== undefined) this.failures.push({ via: this.via, method: post ? 'POST' : 'GET', at, what: r.error });
      else if (r.status !== 200 || r.body !== expect) this.failures.push({ via: this.via, method: post ? 'POST' : 'GET', at, what: `${r.status} ${r.body.slice(0, 200)}` });
      else this.ok[post ? 'POST' : 'GET']++;
    }
  }

  #one(method: string, p: string, body: string | null): Promise<{ status?: number; body: string; error?: string }> {
    return new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: this.port, method, path: p, agent: this.agent, timeout: 15_000,
        headers: body === null ? {} : { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', (err) => resolve({ body: '', error: `response: ${err.message}` }));
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ body: '', error: `${err.code ?? ''} ${err.message}` }));
      req.end(body ?? undefined);
    });
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#workers);
    this.agent.destroy();
  }
}

describe('rolling restart behind HAProxy and nginx', { skip: missing.length > 0 ? `not installed: ${missing.join(', ')} (apt-get install -y haproxy nginx)` : false }, () => {
  let tmp = '';
  const fezz: Fezz[] = [];
  const balancers: ChildProcess[] = [];
  const haproxyLog = { out: '' };
  const nginxLog = { out: '' };

  after(async () => {
    for (const b of balancers) if (b.exitCode === null && b.signalCode === null) {
      const gone = new Promise((r) => b.once('exit', r));
      b.kill('SIGTERM');
      await within(gone, 3000);
      if (b.exitCode === null && b.signalCode === null) b.kill('SIGKILL');
    }
    await Promise.all(fezz.map(async (f) => { await within(f.stop(true), 10_000); f.kill(); }));
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('each fezz restarted in turn under mixed GET/POST keep-alive load: zero errors behind either balancer', { timeout: 90_000 }, async () => {
    tmp = await functionsDir();
    await chmod(tmp, 0o755); // nginx's workers may run as another user (nobody) when started as root
    const [p1, p2, p3, pHaproxy, pNginx] = await freePorts(5) as [number, number, number, number, number];
    fezz.push(new Fezz('fezz1', p1, path.join(tmp, 'functions'), tmp), new Fezz('fezz2', p2, path.join(tmp, 'functions'), tmp), new Fezz('fezz3', p3, path.join(tmp, 'functions'), tmp));
    await Promise.all(fezz.map((f) => f.start()));

    // The shipped configs, with this test's ports.
    const ports = (text: string): string => text.replace(/127\.0\.0\.1:3000\b/g, `127.0.0.1:${p1}`).replace(/127\.0\.0\.1:3002\b/g, `127.0.0.1:${p2}`).replace(/127\.0\.0\.1:3004\b/g, `127.0.0.1:${p3}`);
    const haproxyCfg = path.join(tmp, 'haproxy.cfg');
    await writeFile(haproxyCfg, ports(await readFile(path.join(ROOT, 'deploy/haproxy.cfg'), 'utf8')).replace(/127\.0\.0\.1:8080\b/, `127.0.0.1:${pHaproxy}`));
    const nginxPrefix = path.join(tmp, 'nginx');
    await mkdir(nginxPrefix, { mode: 0o755 });
    const nginxConf = path.join(nginxPrefix, 'nginx.conf');
    await writeFile(nginxConf, ports(await readFile(path.join(ROOT, 'deploy/nginx.conf'), 'utf8')).replace(/127\.0\.0\.1:8080\b/, `127.0.0.1:${pNginx}`));
    balancers.push(runBalancer(HAPROXY!, ['-db', '-f', haproxyCfg], haproxyLog));
    balancers.push(runBalancer(NGINX!, ['-p', nginxPrefix, '-e', 'stderr', '-c', nginxConf], nginxLog));
    await waitFor200(`http://127.0.0.1:${pHaproxy}/hello`, 'haproxy', haproxyLog);
    await waitFor200(`http://127.0.0.1:${pNginx}/hello`, 'nginx', nginxLog);
    await sleep(1000); // HAProxy's first checks of both servers

    const t0 = performance.now();
    const loads = [new Load('haproxy', pHaproxy, t0), new Load('nginx', pNginx, t0)];
    for (const l of loads) l.start(6);
    await sleep(1000);
    const events: string[] = [];
    for (const f of fezz) {
      events.push(`+${Math.round(performance.now() - t0)} ms: SIGTERM ${f.name}`);
      const { code, ms } = await f.stop();
      events.push(`+${Math.round(performance.now() - t0)} ms: ${f.name} exited ${code} after ${Math.round(ms)} ms`);
      assert.equal(code, 0, `${f.name} exit code; its output:\n${f.out.slice(-3000)}`);
      assert.ok(ms >= 5000, `${f.name} kept serving for the drain delay (exited after ${Math.round(ms)} ms)`);
      await f.start();
      events.push(`+${Math.round(performance.now() - t0)} ms: ${f.name} listening again`);
      // HAProxy: 2 checks 500 ms apart put it back; nginx: its fail_timeout (2 s) passes.
      await sleep(3000);
    }
    await Promise.all(loads.map((l) => l.stop()));

    const report = loads.map((l) => `${l.via}: ${l.ok.GET} GET + ${l.ok.POST} POST answered 200, ${l.failures.length} failed`).join('; ');
    console.log(`rolling restart: ${report}\n  ${events.join('\n  ')}`);
    for (const l of loads) {
      const logs = l.via === 'haproxy' ? haproxyLog.out : nginxLog.out;
      assert.deepEqual(l.failures.slice(0, 20), [], `${l.via}: ${l.failures.length} requests failed (${report})\n${events.join('\n')}\n${l.via} output:\n${logs.slice(-4000)}`);
      assert.ok(l.ok.GET > 100 && l.ok.POST > 100, `${l.via}: load ran (${report})`);
    }
  });
});
