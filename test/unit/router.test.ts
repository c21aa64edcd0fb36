import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HostRouter } from '../../src/router/router.js';
import { FezzError } from '../../src/errors.js';

function router(): HostRouter<string> {
  const fns: Record<string, string> = { 'a@1.0.0': 'A1', 'a@latest': 'A' };
  return new HostRouter<string>((id, v) => fns[`${id}@${v ?? 'latest'}`]);
}

describe('HostRouter', () => {
  it('matches params, wildcards and methods; 405 lists the allowed methods', () => {
    const r = router();
    r.add('GET', '/todos/:id', { fn: 'T', handler: 'get' }, 'todos@1.0.0');
    r.add('DELETE', '/todos/:id', { fn: 'T', handler: 'del' }, 'todos@1.0.0');
    r.add('*', '/files/*', { fn: 'F', handler: null }, 'files@1.0.0');
    assert.deepEqual(r.match('GET', '/todos/7'), { kind: 'found', fn: 'T', handler: 'get', params: { id: '7' }, path: '/todos/7' });
    assert.equal((r.match('DELETE', '/todos/7') as { handler: string }).handler, 'del');
    assert.deepEqual((r.match('PUT', '/files/a/b.txt') as { params: unknown }).params, { '*': 'a/b.txt' });
    const m = r.match('POST', '/todos/7');
    assert.equal(m.kind, 'method-not-allowed');
    assert.deepEqual((m as { allow: string[] }).allow.sort(), ['DELETE', 'GET', 'HEAD']);
    assert.equal(r.match('HEAD', '/todos/7').kind, 'found', 'HEAD falls back to GET');
    assert.equal(r.match('GET', '/nothing').kind, 'not-found');
  });

  it('/rpc addressing: id, id@version, rest rewritten', () => {
    const r = router();
    assert.deepEqual(r.match('POST', '/rpc/a/x/y'), { kind: 'found', fn: 'A', handler: null, params: null, path: '/x/y' });
    assert.equal((r.match('GET', '/rpc/a@1.0.0') as { fn: string; path: string }).fn, 'A1');
    assert.equal((r.match('GET', '/rpc/a@1.0.0') as { path: string }).path, '/');
    assert.equal((r.match('GET', '/rpc/a@latest/z') as { fn: string }).fn, 'A');
    assert.deepEqual(r.match('GET', '/rpc/b/x'), { kind: 'function-not-found', name: 'b' });
    assert.equal(r.match('GET', '/healthz').kind, 'health');
  });

  it('issue 14: a wildcard route /x/* also matches /x/ (with * empty), not /x; HEAD and 405 follow it', () => {
    const r = router();
    r.add('GET', '/files/*', { fn: 'F', handler: 'files' }, 'files@1.0.0');
    r.add('GET', '/users/:id/*', { fn: 'U', handler: null }, 'users@1.0.0');
    r.add('GET', '/', { fn: 'R', handler: null }, 'root@1.0.0');
    assert.deepEqual(r.match('GET', '/files/'), { kind: 'found', fn: 'F', handler: 'files', params: { '*': '' }, path: '/files/' });
    assert.deepEqual((r.match('GET', '/files/a/b') as { params: unknown }).params, { '*': 'a/b' });
    assert.equal(r.match('GET', '/files').kind, 'not-found');
    assert.deepEqual((r.match('GET', '/users/7/') as { params: unknown }).params, { id: '7', '*': '' });
    assert.equal(r.match('HEAD', '/files/').kind, 'found');
    assert.deepEqual(r.match('POST', '/files/'), { kind: 'method-not-allowed', allow: ['GET', 'HEAD'] });
    assert.equal((r.match('GET', '/') as { fn: string }).fn, 'R', 'a plain trailing-slash path is unchanged');
    assert.equal(r.match('GET', '/nothing/').kind, 'not-found');
  });

  it('issue 14: OPTIONS on a path whose routes have no OPTIONS handler goes to that function\'s default handler', () => {
    const r = router();
    r.add('GET', '/todos/:id', { fn: 'T', handler: 'get' }, 'todos@1.0.0');
    r.add('DELETE', '/todos/:id', { fn: 'T', handler: 'del' }, 'todos@1.0.0');
    r.add('OPTIONS', '/own', { fn: 'O', handler: 'preflight' }, 'own@1.0.0');
    r.add('GET', '/own', { fn: 'O', handler: null }, 'own@1.0.0');
    r.add('GET', '/api/*', { fn: 'A', handler: null }, 'api@1.0.0');
    assert.deepEqual(r.match('OPTIONS', '/todos/7'), { kind: 'found', fn: 'T', handler: null, params: { id: '7' }, path: '/todos/7' });
    assert.deepEqual(r.match('OPTIONS', '/api/'), { kind: 'found', fn: 'A', handler: null, params: { '*': '' }, path: '/api/' });
    assert.equal((r.match('OPTIONS', '/own') as { handler: string }).handler, 'preflight', 'an OPTIONS route of its own wins');
    assert.equal(r.match('OPTIONS', '/nowhere').kind, 'not-found');
    assert.equal(r.match('PUT', '/todos/7').kind, 'method-not-allowed', 'other methods still get 405');
  });

  it('conflicts name both functions; reserved paths are refused', () => {
    const r = router();
    r.add('GET', '/users/:id', { fn: 'U', handler: null }, 'users@1.0.0');
    assert.throws(() => r.add('GET', '/users/:name', { fn: 'V', handler: null }, 'people@2.0.0'),
      (e: FezzError) => e.code === 'FEZZ_ERR_ROUTE_CONFLICT' && /people@2\.0\.0 is already claimed by users@1\.0\.0/.test(e.message));
    r.add('POST', '/users/:id', { fn: 'V', handler: null }, 'people@2.0.0');
    for (const p of ['/rpc/x', '/healthz', '/admin/stats', '/rpc/:id']) {
      assert.throws(() => r.add('GET', p, { fn: 'X', handler: null }, 'x@1.0.0'), (e: FezzError) => e.code === 'FEZZ_ERR_ROUTE_RESERVED', p);
    }
    assert.throws(() => r.check([{ method: 'GET', path: '/users/:x' }], 'z@1.0.0'), (e: FezzError) => e.code === 'FEZZ_ERR_ROUTE_CONFLICT');
    assert.equal(r.match('GET', '/users/1').kind, 'found', 'check() adds nothing');
  });
});
