/** Test helpers: a real host on 127.0.0.1 port 0, logs captured in memory. */
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHost, type Host, type HostOptions } from '../../src/index.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const EXAMPLES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'functions');

export interface TestHost {
  host: Host;
  url: string;
  /** Parsed JSON log lines so far. */
  logs: Array<Record<string, unknown> & { msg: string }>;
  close(): Promise<void>;
}

export async function startHost(dir: string, options: HostOptions = {}): Promise<TestHost> {
  const logs: TestHost['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const host = await createHost({ dir, port: 0, adminPort: 0, logLevel: 'debug', logDestination: sink, cacheDir: path.join(os.tmpdir(), 'fezz-test-cache'), ...options });
  const { url } = await host.listen();
  return { host, url, logs, close: () => host.close(2000) };
}

/** Fetch and read the body as text; returns status, headers and text. */
export async function get(url: string, init?: RequestInit): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
