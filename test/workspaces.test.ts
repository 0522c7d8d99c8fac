import t from 'tap';
import { caller, eventually, ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;
const root = caller(app, ROOT_TOKEN);

t.test('the root token creates workspaces and keys; the key is shown once and stored as a hash', async (t) => {
  const ws = await root('POST', '/v1/workspaces', { name: 'Acme', timeZone: 'Europe/Paris' });
  t.equal(ws.statusCode, 201);
  t.match(ws.json(), { name: 'Acme', timeZone: 'Europe/Paris', apiKeys: [] });
  const key = await root('POST', `/v1/workspaces/${ws.json().id}/api-keys`, { name: 'backend', scopes: ['read', 'write'] });
  t.equal(key.statusCode, 201);
  const { token, prefix } = key.json();
  t.ok(token.startsWith(`${prefix}_`), 'the token starts with its visible prefix');
  const stored = await herald.runtime.deps.database.sql`select token_hash from api_keys where id = ${key.json().id}`;
  t.not(stored[0]!.token_hash, token, 'only a hash is stored');
  t.notOk(JSON.stringify(stored).includes(token.slice(prefix.length + 1)), 'the secret part is nowhere in the row');
  const again = await root('GET', `/v1/workspaces/${ws.json().id}`);
  t.equal(again.json().apiKeys.length, 1);
  t.notOk('token' in again.json().apiKeys[0], 'listing never shows the token');
});

t.test('who may call what', async (t) => {
  const { workspaceId, call } = await workspaceWithKey(app);
  t.equal((await call('POST', '/v1/workspaces', { name: 'x' })).statusCode, 403, 'a workspace key cannot create workspaces');
  t.equal((await call('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'x', scopes: ['read'] })).statusCode, 403);
  t.equal((await call('GET', `/v1/workspaces/${workspaceId}`)).statusCode, 200, 'a key reads its own workspace');
  const other = await workspaceWithKey(app);
  const res = await call('GET', `/v1/workspaces/${other.workspaceId}`);
  t.equal(res.statusCode, 404, "another workspace is a 404, not a 403");
  t.equal((await root('GET', '/v1/customers')).statusCode, 403, 'the root token does not read workspace data');
});

t.test('no key, a bad key, a revoked key, an expired key: 401 with problem+json', async (t) => {
  const anonymous = caller(app, null);
  const none = await anonymous('GET', '/v1/customers');
  t.equal(none.statusCode, 401);
  t.equal(none.headers['content-type'], 'application/problem+json');
  t.match(none.headers['www-authenticate'], /Bearer/);
  t.match(none.json(), { status: 401, code: 'unauthorized', type: /problems\/unauthorized$/ });
  t.equal((await caller(app, 'hk_nope_nope')('GET', '/v1/customers')).statusCode, 401);
  t.equal((await app.inject({ method: 'GET', url: '/v1/customers', headers: { authorization: 'Basic abc' } })).statusCode, 401);

  const { workspaceId, keyId, call } = await workspaceWithKey(app);
  t.equal((await call('GET', '/v1/customers')).statusCode, 200);
  t.equal((await root('DELETE', `/v1/workspaces/${workspaceId}/api-keys/${keyId}`)).statusCode, 204);
  t.equal((await call('GET', '/v1/customers')).statusCode, 401, 'revoked at once, even though the key was cached');
  t.equal((await root('DELETE', `/v1/workspaces/${workspaceId}/api-keys/00000000-0000-4000-8000-000000000000`)).statusCode, 404);

  const expiresAt = new Date(herald.clock.now().getTime() + 60_000).toISOString();
  const key = await root('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'short', scopes: ['read'], expiresAt });
  const shortLived = caller(app, key.json().token);
  t.equal((await shortLived('GET', '/v1/customers')).statusCode, 200);
  herald.clock.advance(61_000);
  t.equal((await shortLived('GET', '/v1/customers')).statusCode, 401, 'expired');
  const past = await root('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'past', scopes: ['read'], expiresAt: '2001-01-01T00:00:00Z' });
  t.equal(past.statusCode, 400);
});

t.test('scopes: a read key cannot write', async (t) => {
  const { call } = await workspaceWithKey(app, ['read']);
  t.equal((await call('GET', '/v1/customers')).statusCode, 200);
  const res = await call('POST', '/v1/customers', { externalId: 'x' });
  t.equal(res.statusCode, 403);
  t.match(res.json().detail, /write/);
});

t.test('only the root token lifts the SSRF guard (allowPrivateNetworkTargets); a key may keep it or turn it off', async (t) => {
  const { workspaceId, call } = await workspaceWithKey(app);
  const settings = (allow: boolean) => ({ settings: { quietHours: { start: '22:00', end: '08:00', behavior: 'skip' }, allowPrivateNetworkTargets: allow } });
  const stored = async () => (await root('GET', `/v1/workspaces/${workspaceId}`)).json().settings;
  const refused = await call('PATCH', `/v1/workspaces/${workspaceId}`, settings(true));
  t.equal(refused.statusCode, 403, refused.body);
  t.match(refused.json(), { status: 403, detail: /root token/ });
  t.same(await stored(), {}, 'nothing written');
  t.equal((await call('PATCH', `/v1/workspaces/${workspaceId}`, settings(false))).statusCode, 200, 'a key may say false');
  t.equal((await root('PATCH', `/v1/workspaces/${workspaceId}`, settings(true))).statusCode, 200, 'the root token may say true');
  t.equal((await call('PATCH', `/v1/workspaces/${workspaceId}`, { ...settings(true), name: 'renamed' })).statusCode, 200, 'a key may keep what the root token allowed');
  t.match(await stored(), { allowPrivateNetworkTargets: true });
  t.equal((await call('PATCH', `/v1/workspaces/${workspaceId}`, settings(false))).statusCode, 200, 'and turn it off');
  t.equal((await call('PATCH', `/v1/workspaces/${workspaceId}`, settings(true))).statusCode, 403, 'but not on again');
  t.match(await stored(), { allowPrivateNetworkTargets: false });
});

t.test('bad workspace input', async (t) => {
  const bad = await root('POST', '/v1/workspaces', { name: 'x', timeZone: 'Mars/Olympus' });
  t.equal(bad.statusCode, 400);
  t.same(bad.json().errors, [{ pointer: '/timeZone', detail: '"Mars/Olympus" is not an IANA time zone' }]);
  const unknown = await root('POST', '/v1/workspaces', { name: 'x', plan: 'gold' });
  t.equal(unknown.statusCode, 400);
  t.same(unknown.json().errors, [{ pointer: '/plan', detail: 'is not a known field' }]);
  t.equal((await root('POST', '/v1/workspaces/00000000-0000-4000-8000-000000000000/api-keys', { name: 'x', scopes: ['read'] })).statusCode, 404, 'unknown workspace');
  const badScope = await root('POST', '/v1/workspaces/00000000-0000-4000-8000-000000000000/api-keys', { name: 'x', scopes: ['admin'] });
  t.equal(badScope.statusCode, 400);
  t.match(badScope.json().errors, [{ pointer: '/scopes/0' }]);
  t.equal((await root('GET', '/v1/workspaces/not-a-uuid')).statusCode, 400);
});

t.test('a revocation this process did not hear (its LISTEN connection was down) is honoured once it listens again', async (t) => {
  const { workspaceId, keyId, call } = await workspaceWithKey(app);
  t.equal((await call('GET', '/v1/customers')).statusCode, 200, 'cached');
  const sql = herald.runtime.deps.database.sql;
  // The one connection postgres.js LISTENs on, for key revocations and flow changes: its last query is one of the two (pg-boss listens on a connection of its own).
  const listener = () => sql<{ pid: number }[]>`
    select pid from pg_stat_activity where datname = current_database() and (query ilike 'listen %herald_api_key_revoked%' or query ilike 'listen %herald_flows_changed%')`;
  const [before] = await listener();
  t.ok(before, 'the listening connection');
  // Revoked by another process while this one is not listening: no NOTIFY reaches it.
  await sql`select pg_terminate_backend(${before!.pid})`;
  await sql`update api_keys set revoked_at = now() where workspace_id = ${workspaceId} and id = ${keyId}`;
  const [after] = await eventually(async () => {
    const rows = await listener();
    return rows.length && rows[0]!.pid !== before!.pid ? rows : undefined;
  });
  t.not(after!.pid, before!.pid, 'listening again on a new connection');
  // Its LISTENs are made again one after the other: the revocations' (and the cache dropped with it) within moments.
  const status = await eventually(async () => {
    const code = (await call('GET', '/v1/customers')).statusCode;
    return code === 401 ? code : undefined;
  }, 5000).catch(() => 200);
  t.equal(status, 401, 'the cache went with the connection: the key is looked up again');
});
