import t from 'tap';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;
const sql = herald.runtime.deps.database.sql;

t.test('create, then update by externalId: one customer, custom fields merged', async (t) => {
  const { call } = await workspaceWithKey(app);
  const first = await call('POST', '/v1/customers', { externalId: 'u1', email: 'Ann@Example.com', timeZone: 'Europe/Paris', custom: { plan: 'pro', age: 31 } });
  t.equal(first.statusCode, 201);
  t.match(first.json(), { externalId: 'u1', email: 'ann@example.com', timeZone: 'Europe/Paris', custom: { plan: 'pro', age: 31 } });
  const second = await call('POST', '/v1/customers', { externalId: 'u1', phone: '+33612345678', custom: { plan: 'team' } });
  t.equal(second.statusCode, 200, 'an update answers 200');
  t.equal(second.json().id, first.json().id);
  t.match(second.json(), { email: 'ann@example.com', phone: '+33612345678', custom: { plan: 'team', age: 31 } });
  const anonymous = await call('POST', '/v1/customers', { email: 'nobody@example.com' });
  t.equal(anonymous.statusCode, 201, 'a customer without externalId is allowed');
});

t.test('two concurrent creates with one externalId make one customer', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => call('POST', '/v1/customers', { externalId: 'race', custom: { [`k${i}`]: i } })));
  t.same(answers.map((a) => a.statusCode).sort(), [200, 200, 200, 200, 200, 200, 200, 201]);
  t.equal(new Set(answers.map((a) => a.json().id)).size, 1);
  const [row] = await sql`select count(*)::int as n, (array_agg(custom))[1] as custom from customers where workspace_id = ${workspaceId}`;
  t.equal(row!.n, 1);
  t.equal(Object.keys(row!.custom).length, 8, 'every merge landed');
});

t.test('get, list with cursor pagination and filters', async (t) => {
  const { call } = await workspaceWithKey(app);
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push((await call('POST', '/v1/customers', { externalId: `p${i}`, email: `p${i}@x.io` })).json().id);
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await call('GET', `/v1/customers?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(page.statusCode, 200);
    t.ok(page.json().data.length <= 3);
    seen.push(...page.json().data.map((c: { id: string }) => c.id));
    cursor = page.json().nextCursor;
  } while (cursor);
  t.same(seen, ids, 'every customer once, in creation order');
  t.same((await call('GET', '/v1/customers?email=P3@X.IO')).json().data.map((c: { id: string }) => c.id), [ids[3]]);
  t.same((await call('GET', '/v1/customers?externalId=p5')).json().data.map((c: { id: string }) => c.id), [ids[5]]);
  herald.clock.advance(60_000);
  const since = herald.clock.now().toISOString();
  await call('PATCH', `/v1/customers/${ids[6]}`, { locale: 'fr-FR' });
  t.same((await call('GET', `/v1/customers?updatedSince=${encodeURIComponent(since)}`)).json().data.map((c: { id: string }) => c.id), [ids[6]]);
  const detail = await call('GET', `/v1/customers/${ids[0]}`);
  t.match(detail.json(), { id: ids[0], consents: [], pushSubscriptions: [] });
  const bad = await call('GET', '/v1/customers?cursor=garbage');
  t.equal(bad.statusCode, 400);
  t.match(bad.json().errors, [{ pointer: '/query/cursor' }]);
  t.equal((await call('GET', '/v1/customers?limit=0')).statusCode, 400);
  t.equal((await call('GET', '/v1/customers?limit=501')).statusCode, 400);
  t.equal((await call('GET', '/v1/customers?color=red')).statusCode, 400, 'unknown query parameter');
});

t.test('patch merges custom fields (null removes one) and guards externalId', async (t) => {
  const { call } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'm1', custom: { a: 1, b: { deep: null }, c: 3 } })).json().id;
  const patched = await call('PATCH', `/v1/customers/${id}`, { email: 'm1@x.io', custom: { a: 2, c: null, d: 'new' } });
  t.equal(patched.statusCode, 200);
  t.same(patched.json().custom, { a: 2, b: { deep: null }, d: 'new' });
  const cleared = await call('PATCH', `/v1/customers/${id}`, { email: null });
  t.equal(cleared.json().email, null);
  await call('POST', '/v1/customers', { externalId: 'taken' });
  const clash = await call('PATCH', `/v1/customers/${id}`, { externalId: 'taken' });
  t.equal(clash.statusCode, 409);
  t.equal(clash.headers['content-type'], 'application/problem+json');
  t.equal((await call('PATCH', `/v1/customers/${id}`, {})).statusCode, 400, 'an empty patch');
  const bad = await call('PATCH', `/v1/customers/${id}`, { timeZone: 'Nowhere/Land' });
  t.equal(bad.statusCode, 400);
  t.same(bad.json().errors, [{ pointer: '/timeZone', detail: '"Nowhere/Land" is not an IANA time zone' }]);
  t.equal((await call('GET', `/v1/customers/${id}`)).json().timeZone, null, 'nothing half-written');
});

t.test('bad input is a 400 naming each bad field, and writes nothing', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/customers', { externalId: 5, email: 'not-an-email', phone: '0612', locale: '!!', bogus: true });
  t.equal(res.statusCode, 400);
  t.equal(res.headers['content-type'], 'application/problem+json');
  const pointers = res.json().errors.map((e: { pointer: string }) => e.pointer).sort();
  t.same(pointers, ['/bogus', '/email', '/externalId', '/locale', '/phone']);
  const malformed = await call('POST', '/v1/customers', '{"externalId": ', { 'content-type': 'application/json' });
  t.equal(malformed.statusCode, 400, 'malformed JSON');
  t.equal(malformed.json().code, 'malformed_json');
  t.equal((await call('POST', '/v1/customers', ['a'])).statusCode, 400, 'an array body');
  const [row] = await sql`select count(*)::int as n from customers where workspace_id = ${workspaceId}`;
  t.equal(row!.n, 0);
});

t.test('consent per channel, with history', async (t) => {
  const { call } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'c1' })).json().id;
  const sub = await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'pending_confirmation', source: 'signup-form' });
  t.equal(sub.statusCode, 200);
  t.match(sub.json(), { channel: 'email', status: 'pending_confirmation', source: 'signup-form', history: [{ fromStatus: null, toStatus: 'pending_confirmation' }] });
  herald.clock.advance(1000);
  await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'subscribed' });
  herald.clock.advance(1000);
  const same = await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'subscribed' });
  t.equal(same.json().history.length, 2, 'setting the same status again is not a change');
  herald.clock.advance(1000);
  const unsub = await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'unsubscribed', source: 'preference-center' });
  t.same(unsub.json().history.map((h: { toStatus: string }) => h.toStatus), ['unsubscribed', 'subscribed', 'pending_confirmation'], 'newest first');
  await call('PUT', `/v1/customers/${id}/consents/sms`, { status: 'subscribed' });
  const detail = (await call('GET', `/v1/customers/${id}`)).json();
  t.same(detail.consents.map((c: { channel: string; status: string }) => [c.channel, c.status]), [['email', 'unsubscribed'], ['sms', 'subscribed']]);
  t.equal((await call('PUT', `/v1/customers/${id}/consents/fax`, { status: 'subscribed' })).statusCode, 400, 'unknown channel');
  t.equal((await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'maybe' })).statusCode, 400, 'unknown status');
  t.equal((await call('PUT', '/v1/customers/00000000-0000-4000-8000-000000000000/consents/email', { status: 'subscribed' })).statusCode, 404);
});

t.test('push subscriptions: web and mobile; a device that changes hands moves', async (t) => {
  const { call } = await workspaceWithKey(app);
  const a = (await call('POST', '/v1/customers', { externalId: 'a' })).json().id;
  const b = (await call('POST', '/v1/customers', { externalId: 'b' })).json().id;
  const web = { kind: 'web_push', endpoint: 'https://push.example.com/send/abc', keys: { p256dh: 'BPk', auth: 'xyz' } };
  const created = await call('POST', `/v1/customers/${a}/push-subscriptions`, web);
  t.equal(created.statusCode, 201);
  t.match(created.json(), { kind: 'web_push', endpoint: web.endpoint, token: null, platform: 'web', customerId: a });
  const mobile = await call('POST', `/v1/customers/${a}/push-subscriptions`, { kind: 'mobile_push', token: 'fcm-token-1', platform: 'android' });
  t.match(mobile.json(), { kind: 'mobile_push', token: 'fcm-token-1', endpoint: null, platform: 'android' });
  const moved = await call('POST', `/v1/customers/${b}/push-subscriptions`, web);
  t.equal(moved.statusCode, 200);
  t.equal(moved.json().id, created.json().id);
  t.equal((await call('GET', `/v1/customers/${a}`)).json().pushSubscriptions.length, 1);
  t.equal((await call('GET', `/v1/customers/${b}`)).json().pushSubscriptions.length, 1);
  const bad = await call('POST', `/v1/customers/${a}/push-subscriptions`, { kind: 'web_push', endpoint: 'http://insecure.example.com', keys: { p256dh: 'x', auth: 'y' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().errors, [{ pointer: '/endpoint' }]);
  const noKeys = await call('POST', `/v1/customers/${a}/push-subscriptions`, { kind: 'mobile_push', token: 't' });
  t.same(noKeys.json().errors, [{ pointer: '/platform', detail: 'is required' }], 'the error names the branch the client meant');
});

t.test('delete removes the customer with events, consents and subscriptions', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'gone' })).json().id;
  await call('POST', '/v1/events', { customerId: id, type: 'registration' });
  await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'subscribed' });
  await call('POST', `/v1/customers/${id}/push-subscriptions`, { kind: 'mobile_push', token: 'tok', platform: 'ios' });
  t.equal((await call('DELETE', `/v1/customers/${id}`)).statusCode, 204);
  t.equal((await call('GET', `/v1/customers/${id}`)).statusCode, 404);
  t.equal((await call('DELETE', `/v1/customers/${id}`)).statusCode, 404);
  for (const table of ['events', 'customer_consents', 'consent_changes', 'push_subscriptions']) {
    const [row] = await sql`select count(*)::int as n from ${sql(table)} where workspace_id = ${workspaceId}`;
    t.equal(row!.n, 0, `${table} is empty`);
  }
});

t.test("another workspace's customer is a 404 on every route", async (t) => {
  const owner = await workspaceWithKey(app);
  const stranger = await workspaceWithKey(app);
  const id = (await owner.call('POST', '/v1/customers', { externalId: 'private' })).json().id;
  t.equal((await stranger.call('GET', `/v1/customers/${id}`)).statusCode, 404);
  t.equal((await stranger.call('PATCH', `/v1/customers/${id}`, { locale: 'en' })).statusCode, 404);
  t.equal((await stranger.call('DELETE', `/v1/customers/${id}`)).statusCode, 404);
  t.equal((await stranger.call('PUT', `/v1/customers/${id}/consents/email`, { status: 'unsubscribed' })).statusCode, 404);
  t.equal((await stranger.call('POST', `/v1/customers/${id}/push-subscriptions`, { kind: 'mobile_push', token: 'x', platform: 'ios' })).statusCode, 404);
  t.same((await stranger.call('GET', '/v1/customers?externalId=private')).json().data, []);
  const sameExternalId = await stranger.call('POST', '/v1/customers', { externalId: 'private' });
  t.equal(sameExternalId.statusCode, 201, 'externalIds are per workspace');
  t.not(sameExternalId.json().id, id);
  t.equal((await owner.call('GET', `/v1/customers/${id}`)).json().custom.constructor, Object, "the owner's customer is untouched");
});
