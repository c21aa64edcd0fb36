import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { manifestSchema, describeIssues } from '../../src/manifest/schema.js';

describe('manifest schema', () => {
  it('fills every default from DESIGN.md', () => {
    const m = manifestSchema.parse({ id: 'todos', version: '1.2.0', entry: 'index.ts' });
    assert.deepEqual(m, {
      id: 'todos', version: '1.2.0', entry: 'index.ts', runtime: 'isolate', routes: [], env: {},
      limits: { timeoutMs: 10000, streamIdleMs: 30000, streamMaxMs: 900000, memoryMb: 128, concurrency: 64, maxQueue: 1000, maxBodyBytes: 6291456, maxWebSockets: 1000, webSocketIdleMs: 300000, webSocketMaxMessageBytes: 1048576 },
      instances: { min: 0, max: 2 }, idleTtlSeconds: 300,
      permissions: { outbound: [], files: [], env: [] }, isolation: 'thread',
    });
    assert.equal(manifestSchema.parse({ id: 'x', version: '1.0.0', entry: 'i.js', routes: [{ path: '/a' }] }).routes[0]!.method, 'GET');
  });

  it('rejects unknown fields and bad values, naming the field and what was expected', () => {
    const r = manifestSchema.safeParse({
      id: 'Todos', version: 'v1', entry: 'i.ts', runtime: 'wasm', limits: { timeoutMs: -1, timeoutMS: 5 },
      routes: [{ method: 'GET', path: 'no-slash', handler: 'not an identifier' }], instances: { min: 3, max: 2 }, extra: true,
    });
    assert.equal(r.success, false);
    const text = describeIssues(r.error!);
    for (const expected of [
      'field "id": must match [a-z0-9][a-z0-9-]*',
      'field "version": must be semver',
      'field "runtime":',
      'field "limits.timeoutMs":',
      'field "limits": Unrecognized key: "timeoutMS"',
      'field "routes.0.path": must start with "/"',
      'field "routes.0.handler": must be a JavaScript identifier',
      'field "(root)": Unrecognized key: "extra"',
    ]) assert.ok(text.includes(expected), `${expected} in ${text}`);
  });

  it('isolation "sandbox" for isolate and plugin runtimes, never inline', () => {
    assert.equal(manifestSchema.parse({ id: 'x', version: '1.0.0', entry: 'i.js', isolation: 'sandbox' }).isolation, 'sandbox');
    assert.equal(manifestSchema.parse({ id: 'x', version: '1.0.0', entry: 'x', runtime: 'process', isolation: 'sandbox' }).isolation, 'sandbox');
    assert.equal(manifestSchema.parse({ id: 'x', version: '1.0.0', entry: 'x.so', runtime: 'native', isolation: 'sandbox' }).isolation, 'sandbox');
    const r = manifestSchema.safeParse({ id: 'x', version: '1.0.0', entry: 'i.js', runtime: 'inline', isolation: 'sandbox' });
    assert.equal(r.success, false);
    assert.match(describeIssues(r.error!), /field "isolation": isolation "sandbox" is not available for runtime "inline"/);
  });

  it('instances.min may not exceed max', () => {
    const r = manifestSchema.safeParse({ id: 'a', version: 'latest', entry: 'i.js', instances: { min: 3, max: 2 } });
    assert.equal(r.success, false);
    assert.match(describeIssues(r.error!), /field "instances.min": instances.min must not exceed instances.max/);
  });
});
