// A host that runs out of file descriptors, for test/integration/plugin-restarts.test.ts
// (issue 10: a plugin process that cannot start must not crash the host). Run in a child
// process with a low descriptor limit:
//
//   bash -c 'ulimit -n 512 && exec node --import tsx test/helpers/plugin-emfile-host.ts <functions dir> <path>'
//
// It serves <functions dir>, opens one keep-alive connection to itself, takes every free
// descriptor, then asks for <path> (a process plugin not started yet: its spawn fails with
// EMFILE) over that connection. It then frees the descriptors and asks again until the
// plugin answers 200. Prints one JSON line — { exhausted, down, up, crashes } — and exits 0;
// a host that crashed exits non-zero before printing it. Logs go to stderr.
import fs from 'node:fs';
import http from 'node:http';
import { createHost } from '../../src/index.js';

const [dir, fnPath] = process.argv.slice(2);
if (dir === undefined || fnPath === undefined) {
  process.stderr.write('usage: plugin-emfile-host.ts <functions dir> <path>\n');
  process.exit(2);
}

const host = await createHost({ dir, port: 0, adminPort: 0, logLevel: 'info', logDestination: process.stderr });
const { url } = await host.listen();
// One socket, kept alive: out of descriptors, the host cannot accept a new connection.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(`${url}${p}`, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

await request('/healthz');
const fds: number[] = [];
try {
  for (;;) fds.push(fs.openSync('/dev/null', 'r'));
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'EMFILE') throw err;
}
const down = await request(fnPath);
await sleep(300); // an unhandled 'error' event (spawn EMFILE) would have ended this process by now
for (const fd of fds) fs.closeSync(fd);

let up = await request(fnPath);
for (let i = 0; i < 60 && up.status !== 200; i++) {
  await sleep(100);
  up = await request(fnPath);
}
const crashes = host.functions().find((f) => fnPath.startsWith(`/rpc/${f.id}/`))?.stats.crashes ?? null;
process.stdout.write(`${JSON.stringify({ exhausted: fds.length, down, up, crashes })}\n`);
agent.destroy();
await host.close(2000);
process.exit(0);
