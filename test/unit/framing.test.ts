// The sandbox channel's frames (src/runtime/sandbox/framing.ts): every message comes out as
// postMessage would deliver it, in the compact encoding or through v8.serialize, whole or cut
// into any chunks; what a corrupt or hostile stream sends throws instead of being believed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'node:v8';
import { encodeFrame, FrameDecoder } from '../../src/runtime/sandbox/framing.js';

function decodeAll(bytes: Buffer, cuts: number[] = [], max?: number): unknown[] {
  const out: unknown[] = [];
  const d = new FrameDecoder((m) => out.push(m), max);
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    d.push(bytes.subarray(at, c));
    at = c;
  }
  return out;
}

const roundTrip = (m: unknown): unknown => decodeAll(encodeFrame(m))[0];

const REQUEST = [1, 7, 'GET', 'http://127.0.0.1:3000/rpc/hello?q=é', ['Host', '127.0.0.1:3000', 'X-Emoji', '😀'], null, null, { id: '5' }, '1338017737840148890'];
const RESPONSE = [1, 7, 200, ['content-type', 'text/plain;charset=UTF-8'], 'Hello, world!'];

describe('sandbox frames', () => {
  it('carries the per-request messages exactly, in the compact encoding', () => {
    for (const m of [REQUEST, RESPONSE, [6, [REQUEST, REQUEST]], [8, [RESPONSE, [2, 7, 'E', 'msg', 'stack']]]]) {
      const f = encodeFrame(m);
      assert.notEqual(f[4], 0xff, 'not v8.serialize');
      assert.deepEqual(roundTrip(m), m);
    }
  });

  it('keeps every scalar as structured clone does', () => {
    const values = [0, -0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 0.5, NaN, Infinity, -Infinity, Number.MAX_VALUE, true, false, null, undefined,
      '', 'a', 'x'.repeat(33), 'é', 'é'.repeat(40), '\ud800', 'a\udc00b'.repeat(20), '😀', '\u0000'];
    const back = roundTrip(values) as unknown[];
    assert.equal(back.length, values.length);
    for (let i = 0; i < values.length; i++) assert.ok(Object.is(back[i], values[i]), `value ${i}: ${String(values[i])}`);
  });

  it('objects: own keys, __proto__ as a plain key, null prototype as a plain object', () => {
    const o = JSON.parse('{"__proto__": {"x": 1}, "a": [1, {"b": null}]}') as Record<string, unknown>;
    const back = roundTrip(o) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.keys(back), ['__proto__', 'a']);
    assert.deepEqual(Object.getOwnPropertyDescriptor(back, '__proto__')?.value, { x: 1 });
    const bare = Object.assign(Object.create(null) as object, { k: 'v' });
    assert.deepEqual(roundTrip(bare), { k: 'v' });
  });

  it('bytes arrive as plain Uint8Arrays, Buffers included, small and large', () => {
    for (const n of [0, 1, 100, 20_000, 300_000]) {
      const bytes = Buffer.alloc(n, 7);
      const back = roundTrip([1, bytes, new Uint8Array(bytes)]) as Uint8Array[];
      for (const b of back.slice(1)) {
        assert.equal(Object.getPrototypeOf(b), Uint8Array.prototype);
        assert.ok(Buffer.from(b).equals(bytes));
      }
    }
    // A large frame hands its scratch buffer off: the next frame must not overwrite it.
    const big = encodeFrame([Buffer.alloc(50_000, 1)]);
    encodeFrame([Buffer.alloc(50_000, 2)]);
    assert.ok((decodeAll(big)[0] as Uint8Array[])[0]!.every((b) => b === 1));
  });

  it('anything else goes through v8.serialize, intact', () => {
    const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
    for (const m of [[new Map([[1, 2]])], [new Date(5)], sparse, [new Uint16Array([1, 2])], [10n], [new Set(['a'])]]) {
      const f = encodeFrame(m);
      assert.equal(f[4], 0xff, 'v8.serialize');
      assert.deepEqual(roundTrip(m), m);
    }
  });

  it('reads frames cut anywhere, and many per chunk', () => {
    const all = Buffer.concat([encodeFrame(REQUEST), encodeFrame([new Map()]), encodeFrame(RESPONSE), encodeFrame([1, Buffer.alloc(5000, 3)])]);
    const expected = [REQUEST, [new Map()], RESPONSE, [1, new Uint8Array(5000).fill(3)]];
    for (let step = 1; step < 40; step += 3) {
      const cuts: number[] = [];
      for (let c = step; c < all.length; c += step) cuts.push(c);
      assert.deepEqual(decodeAll(all, cuts), expected);
    }
  });

  it('still reads frames from v8.serialize (what a forged or older sender writes)', () => {
    const payload = serialize([1, 2, 'x', Buffer.from('ab')]);
    const f = Buffer.alloc(4 + payload.length);
    f.writeUInt32LE(payload.length, 0);
    payload.copy(f, 4);
    assert.deepEqual(decodeAll(f), [[1, 2, 'x', new Uint8Array([97, 98])]]);
  });

  it('a corrupt or hostile frame throws', () => {
    const frame = (payload: number[]): Buffer => {
      const f = Buffer.alloc(4 + payload.length);
      f.writeUInt32LE(payload.length, 0);
      Buffer.from(payload).copy(f, 4);
      return f;
    };
    const bad = [
      [8, 0xff, 0xff, 0xff, 0x7f], // an array of 2^31 elements in a 5-byte frame
      [6, 10, 0, 0, 0, 97], // a string past the end
      [10, 3, 0, 0, 0, 1], // bytes past the end
      [4, 1], // a truncated int
      [0x1f], // an unknown tag
      [0, 0], // bytes after the message
      [9, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0], // an object key that is not a string
      [7, 3, 0, 0, 0, 1, 2, 3], // odd UTF-16
      [], // nothing
    ];
    for (const p of bad) assert.throws(() => decodeAll(frame(p)), RangeError, JSON.stringify(p));
    assert.throws(() => decodeAll(encodeFrame(['x'.repeat(100)]), [], 50), /at most 50/);
  });
});
