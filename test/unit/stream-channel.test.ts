// The flow-controlled stream messages (src/wire/stream-channel.ts), over a real MessageChannel:
// order and content kept, the window holds against a slow consumer, cancel and errors travel,
// and a producer that ignores its credit is cut off.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { MAX_CHUNK_BYTES, STREAM_WINDOW_BYTES, StreamReceiver, StreamSender } from '../../src/wire/stream-channel.js';

const TAGS = { chunk: 1, end: 2, error: 3 };
const CREDIT = 4;
const CANCEL = 5;

/** Every port made: closed after the suite, even when an assertion failed before a test's close(). */
const ports: MessagePort[] = [];

/** A sender on port1, a receiver on port2; returns both and a counter of bytes in flight. */
function pair(window = STREAM_WINDOW_BYTES): { sender: StreamSender; receiver: StreamReceiver; maxInFlight: () => number; close: () => void } {
  const { port1, port2 } = new MessageChannel();
  ports.push(port1, port2);
  let inFlight = 0;
  let max = 0;
  const sender = new StreamSender(7, (m, t) => {
    if (m[0] === TAGS.chunk) { inFlight += (m[2] as Uint8Array).byteLength; max = Math.max(max, inFlight); }
    port1.postMessage(m, t !== undefined ? [t] : []);
  }, TAGS, window);
  const receiver = new StreamReceiver((n) => port2.postMessage([CREDIT, 7, n]), (reason) => port2.postMessage([CANCEL, 7, reason]), window);
  port2.on('message', (m: unknown[]) => {
    if (m[0] === TAGS.chunk) receiver.push(m[2] as Uint8Array);
    else if (m[0] === TAGS.end) receiver.end();
    else if (m[0] === TAGS.error) receiver.fail(m[2] as string);
  });
  port1.on('message', (m: unknown[]) => {
    if (m[0] === CREDIT) { inFlight -= m[2] as number; sender.credit(m[2] as number); }
    else if (m[0] === CANCEL) sender.cancel(m[2] as string);
  });
  return { sender, receiver, maxInFlight: () => max, close: () => { port1.close(); port2.close(); } };
}

async function readAll(r: StreamReceiver, delayMs = 0): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const c = await r.read();
    if (c === null) break;
    parts.push(c);
    if (delayMs > 0) await new Promise((res) => setTimeout(res, delayMs));
  }
  return Buffer.concat(parts);
}

describe('stream channel', () => {
  after(() => { for (const p of ports) p.close(); });
  it('carries 8 MB in chunks of every size, in order, intact', async () => {
    const { sender, receiver, close } = pair();
    const data = new Uint8Array(8 * 1024 * 1024).map((_, i) => (i * 7 + (i >> 13)) % 251);
    const sizes = [1, 17, 1000, 65_536, 200_000, 3_000_000];
    let at = 0;
    let k = 0;
    const done = sender.run(async () => {
      if (at >= data.length) return null;
      const n = Math.min(sizes[k++ % sizes.length]!, data.length - at);
      const c = data.subarray(at, at + n);
      at += n;
      return c;
    }, () => assert.fail('not cancelled'));
    const got = await readAll(receiver);
    await done;
    assert.equal(got.length, data.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(data)));
    close();
  });

  it('a slow consumer holds the producer to its window', async () => {
    const window = 128 * 1024;
    const { sender, receiver, maxInFlight, close } = pair(window);
    let produced = 0;
    const done = sender.run(async () => {
      if (produced >= 4 * 1024 * 1024) return null;
      produced += 32 * 1024;
      return new Uint8Array(32 * 1024);
    }, () => undefined);
    const got = await readAll(receiver, 1);
    await done;
    assert.equal(got.length, 4 * 1024 * 1024);
    assert.ok(maxInFlight() <= window + MAX_CHUNK_BYTES, `in flight at most the window and a chunk: ${maxInFlight()}`);
    close();
  });

  it('a cancel reaches the producer, which stops pulling', async () => {
    const { sender, receiver, close } = pair();
    let pulls = 0;
    let cancelled = '';
    const done = sender.run(async () => { pulls++; await new Promise((r) => setTimeout(r, 2)); return new Uint8Array(1000); }, (reason) => { cancelled = reason; });
    assert.ok((await receiver.read()) !== null);
    receiver.cancel('client gone');
    assert.equal(await receiver.read(), null);
    await done;
    const at = pulls;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(cancelled, 'client gone');
    assert.equal(pulls, at, 'no pull after the cancel');
    close();
  });

  it('a producer error rejects the reader', async () => {
    const { sender, receiver, close } = pair();
    let n = 0;
    void sender.run(async () => { if (n++ < 3) return new Uint8Array(10); throw new TypeError('boom'); }, () => undefined);
    await assert.rejects(readAll(receiver), /TypeError: boom/);
    close();
  });

  it('a producer that ignores its credit fails the stream and is cancelled', async () => {
    let cancelled = '';
    let granted = 0;
    const receiver = new StreamReceiver((n) => { granted += n; }, (reason) => { cancelled = reason; }, 64 * 1024);
    for (let i = 0; i < 10; i++) receiver.push(new Uint8Array(32 * 1024));
    assert.equal(cancelled, 'flow control violated');
    assert.equal(granted, 0);
    await assert.rejects(receiver.read(), /flow control violated/);
  });
});
