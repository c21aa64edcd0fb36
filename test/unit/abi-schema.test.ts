import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { abiJsonSchema } from '../../src/abi/schema.js';
import { fromResponseInfo, toRequestInfo } from '../../src/abi/codec.js';
import { FezzError } from '../../src/errors.js';

describe('ABI schema and codec', () => {
  it('docs/abi.schema.json is generated from the schemas the host validates with (npm run gen:abi-schema)', () => {
    const onDisk = JSON.parse(readFileSync(new URL('../../docs/abi.schema.json', import.meta.url), 'utf8'));
    assert.deepEqual(onDisk, JSON.parse(JSON.stringify(abiJsonSchema())));
  });

  it('request info: path, query, lower-case joined headers, utf8 or base64 body', () => {
    const info = toRequestInfo({
      method: 'POST', url: 'http://h:1/a/b?x=1&y=2',
      headers: ['Content-Type', 'text/plain', 'X-A', '1', 'x-a', '2'],
      body: new Uint8Array([0xff, 0x00]),
    }, 123);
    assert.deepEqual(info, {
      method: 'POST', url: '/a/b?x=1&y=2', path: '/a/b', query: 'x=1&y=2',
      headers: { 'content-type': 'text/plain', 'x-a': '1, 2' }, body: '/wA=', bodyEncoding: 'base64', deadlineMs: 123,
    });
    assert.equal(toRequestInfo({ method: 'GET', url: 'http://h/é', headers: [], body: Buffer.from('héllo') }, 1).body, 'héllo');
  });

  it('response info: defaults, arrays, base64; errors name the field', () => {
    assert.deepEqual(fromResponseInfo('{}'), { status: 200, headers: [], body: null });
    const r = fromResponseInfo('{"status":201,"headers":{"set-cookie":["a=1","b=2"],"x":"y"},"body":"AAE=","bodyEncoding":"base64"}');
    assert.equal(r.status, 201);
    assert.deepEqual(r.headers, ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'x', 'y']);
    assert.deepEqual([...(r.body as Uint8Array)], [0, 1]);
    for (const [bad, why] of [
      ['{not json', /not valid JSON/],
      ['{"status":99}', /field "status"/],
      ['{"status":200,"extra":1}', /Unrecognized key: "extra"/],
      ['{"headers":{"bad name":"x"}}', /field "headers.bad name": Invalid key/],
      ['{"body":"***","bodyEncoding":"base64"}', /not valid base64/],
    ] as const) {
      assert.throws(() => fromResponseInfo(bad), (e: FezzError) => e.code === 'FEZZ_ERR_ABI_BAD_BODY' && why.test(e.message), bad);
    }
  });
});
