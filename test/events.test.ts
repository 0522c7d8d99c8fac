import t from 'tap';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;
const { sql } = herald.runtime.deps.database;
const count = async (table: string, workspaceId: string) => (await sql`select count(*)::int as n from ${sql(table)} where workspace_id = ${workspaceId}`)[0]!.n as number;

t.test('one event by externalId creates the customer; occurredAt defaults to now', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/events', { externalId: 'new-1', type: 'registration', properties: { source: 'ads' } });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { accepted: 1, duplicates: 0, events: [{ status: 'created', clientId: null }] });
  const customers = await call('GET', '/v1/customers?externalId=new-1');
  t.equal(customers.json().data.length, 1);
  t.equal(res.json().events[0].customerId, customers.json().data[0].id);
  const [row] = await sql`select occurred_at, properties from events where workspace_id = ${workspaceId}`;
  t.equal(row!.occurred_at.toISOString(), herald.clock.now().toISOString());
  t.same(row!.properties, { source: 'ads' });
});

t.test('a batch: customers by id or externalId, occurredAt kept, order kept', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const known = (await call('POST', '/v1/customers', { externalId: 'known' })).json().id;
  const res = await call('POST', '/v1/events', {
    events: [
      { customerId: known, type: 'order.placed', properties: { total: 10 }, occurredAt: '2026-01-02T03:04:05.000Z' },
      { externalId: 'fresh', type: 'order.placed' },
      { externalId: 'fresh', type: 'subscription.changed', properties: { plan: 'pro' } },
      { externalId: 'known', type: 'custom_thing' },
    ],
  });
  t.equal(res.statusCode, 200);
  t.equal(res.json().accepted, 4);
  const ids = res.json().events.map((e: { customerId: string }) => e.customerId);
  t.equal(ids[0], known);
  t.equal(ids[3], known);
  t.equal(ids[1], ids[2], 'one new customer for the two events naming it');
  t.equal(await count('customers', workspaceId), 2);
  const [first] = await sql`select occurred_at from events where workspace_id = ${workspaceId} and type = 'order.placed' and customer_id = ${known}`;
  t.equal(first!.occurred_at.toISOString(), '2026-01-02T03:04:05.000Z');
});

t.test('a client id makes a post idempotent, within a batch and across posts', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const once = await call('POST', '/v1/events', { events: [{ id: 'evt-1', externalId: 'c', type: 'a' }, { id: 'evt-1', externalId: 'c', type: 'a' }, { id: 'evt-2', externalId: 'c', type: 'b' }] });
  t.match(once.json(), { accepted: 2, duplicates: 1 });
  t.equal(once.json().events[1].id, once.json().events[0].id, 'the duplicate reports the stored event');
  const again = await call('POST', '/v1/events', { id: 'evt-1', externalId: 'c', type: 'a' });
  t.match(again.json(), { accepted: 0, duplicates: 1, events: [{ id: once.json().events[0].id, status: 'duplicate' }] });
  const racing = await Promise.all(Array.from({ length: 6 }, () => call('POST', '/v1/events', { id: 'evt-race', externalId: 'c', type: 'a' })));
  t.equal(racing.filter((r) => r.json().accepted === 1).length, 1, 'concurrent posts of one id store it once');
  t.equal(await count('events', workspaceId), 3);
  const other = await workspaceWithKey(app);
  t.equal((await other.call('POST', '/v1/events', { id: 'evt-1', externalId: 'c', type: 'a' })).json().accepted, 1, 'client ids are per workspace');
});

t.test('concurrent posts naming one new externalId make one customer', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => call('POST', '/v1/events', { externalId: 'same-new', type: 'ping', properties: { i } })));
  t.ok(answers.every((a) => a.statusCode === 200));
  t.equal(await count('customers', workspaceId), 1);
  t.equal(await count('events', workspaceId), 10);
});

t.test('bad posts are refused whole, with a pointer to each bad event', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const tooMany = await call('POST', '/v1/events', { events: Array.from({ length: 1001 }, () => ({ externalId: 'x', type: 'a' })) });
  t.equal(tooMany.statusCode, 400);
  t.match(tooMany.json().errors, [{ pointer: '/events', detail: /1000/ }]);
  const empty = await call('POST', '/v1/events', { events: [] });
  t.equal(empty.statusCode, 400);
  const unknown = await call('POST', '/v1/events', {
    events: [
      { externalId: 'ok', type: 'a' },
      { customerId: '00000000-0000-4000-8000-000000000000', type: 'a' },
    ],
  });
  t.equal(unknown.statusCode, 422);
  t.same(unknown.json().errors, [{ pointer: '/events/1/customerId', detail: 'no customer with this id in the workspace' }]);
  const noCustomer = await call('POST', '/v1/events', { type: 'a' });
  t.equal(noCustomer.statusCode, 422);
  t.match(noCustomer.json().errors, [{ pointer: '/customerId' }]);
  const both = await call('POST', '/v1/events', { events: [{ type: 'a', externalId: 'x', customerId: '00000000-0000-4000-8000-000000000000' }] });
  t.equal(both.statusCode, 422);
  t.match(both.json().errors, [{ pointer: '/events/0' }]);
  const shapes = await call('POST', '/v1/events', { events: [{ externalId: 'x', type: 'bad type!' }, { externalId: 'x', type: 'a', occurredAt: 'yesterday' }, { externalId: 'x', type: 'a', properties: [1] }, { externalId: 'x', type: 'a', extra: 1 }] });
  t.equal(shapes.statusCode, 400);
  t.same(shapes.json().errors.map((e: { pointer: string }) => e.pointer).sort(), ['/events/0/type', '/events/1/occurredAt', '/events/2/properties', '/events/3/extra']);
  t.equal(await count('events', workspaceId), 0, 'nothing written');
  t.equal(await count('customers', workspaceId), 0, 'not even the customers the valid events named');
  const other = await workspaceWithKey(app);
  const theirs = (await other.call('POST', '/v1/customers', { externalId: 'theirs' })).json().id;
  const cross = await call('POST', '/v1/events', { customerId: theirs, type: 'a' });
  t.equal(cross.statusCode, 422, "another workspace's customer does not exist here");
});

t.test('the ingestion seam: a hook runs in the same transaction as the events', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const seen: string[] = [];
  let fail = false;
  herald.runtime.deps.eventHooks.add(async (tx, ws, events) => {
    if (ws !== workspaceId) return;
    seen.push(...events.map((e) => e.type));
    const [row] = await tx`select count(*)::int as n from events where workspace_id = ${ws}`;
    t.ok(row!.n >= events.length, 'the hook sees the new events inside the transaction');
    if (fail) throw new Error('trigger failed');
  });
  await call('POST', '/v1/events', { events: [{ externalId: 'h', type: 'one' }, { externalId: 'h', type: 'two' }] });
  t.same(seen, ['one', 'two']);
  fail = true;
  const res = await call('POST', '/v1/events', { externalId: 'h2', type: 'three' });
  t.equal(res.statusCode, 500);
  t.notMatch(res.body, /trigger failed|at .*\.ts/, 'no stack or message leaks');
  t.equal(await count('events', workspaceId), 2, 'a failing hook rolls the events back');
  t.equal((await call('GET', '/v1/customers?externalId=h2')).json().data.length, 0, 'and the customer it created');
  fail = false;
  await call('POST', '/v1/events', { externalId: 'h', type: 'dup', id: 'd1' });
  const before = seen.length;
  await call('POST', '/v1/events', { externalId: 'h', type: 'dup', id: 'd1' });
  t.equal(seen.length, before, 'duplicates do not reach the hooks');
});

t.test('"events of a customer, newest first" and "customers with event T since D" are index scans', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  await call('POST', '/v1/events', { events: Array.from({ length: 50 }, (_, i) => ({ externalId: `i${i % 5}`, type: i % 2 ? 'order.placed' : 'page.viewed' })) });
  const customerId = (await call('GET', '/v1/customers?externalId=i1')).json().data[0].id;
  await sql`vacuum analyze events`;
  const plans = await sql.begin(async (tx) => {
    await tx`set local enable_seqscan = off`;
    await tx`set local enable_bitmapscan = off`;
    const a = await tx`explain select * from events where workspace_id = ${workspaceId} and customer_id = ${customerId} order by occurred_at desc limit 20`;
    const b = await tx`explain select distinct customer_id from events where workspace_id = ${workspaceId} and type = 'order.placed' and occurred_at >= now() - interval '30 days'`;
    return [a.map((r) => r['QUERY PLAN']).join('\n'), b.map((r) => r['QUERY PLAN']).join('\n')];
  });
  t.match(plans[0], /Index Scan (Backward )?using events_customer_time_idx/);
  t.notMatch(plans[0], /Sort/, 'no sort: the index gives newest first');
  t.match(plans[1], /Index (Only )?Scan using events_type_time_idx/);
});

t.test('group commit: concurrent posts share a transaction, never a failure', async (t) => {
  const { EventWriter } = await import('../src/modules/events/events.writer.ts');
  const { EventHooks } = await import('../src/modules/events/events.hooks.ts');
  const a = await workspaceWithKey(app);
  const b = await workspaceWithKey(app);
  const hooks = new EventHooks();
  const transactions = new Set<string>();
  let failFor: string | null = null;
  hooks.add(async (tx, ws) => {
    transactions.add(String((await tx`select txid_current() as id`)[0]!.id));
    if (ws === failFor) throw new Error('hook failed');
  });
  const writer = new EventWriter(sql, herald.clock, hooks, { maxInFlight: 1 });
  const post = (workspaceId: string, events: object[]) => writer.write({ workspaceId, events: events as never, pointer: '' });

  const results = await Promise.allSettled([
    post(a.workspaceId, [{ externalId: 'g1', type: 'one' }]),
    post(a.workspaceId, [{ externalId: 'g2', type: 'two' }]),
    post(b.workspaceId, [{ externalId: 'g1', type: 'three' }]),
    post(a.workspaceId, [{ customerId: '00000000-0000-4000-8000-000000000000', type: 'ghost' }]),
    post(b.workspaceId, [{ externalId: 'g3', type: 'four', id: 'same' }]),
    post(b.workspaceId, [{ externalId: 'g3', type: 'four', id: 'same' }]),
  ]);
  t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
  t.match((results[3] as PromiseRejectedResult).reason, { status: 422, errors: [{ pointer: '/customerId' }] });
  t.match((results[5] as PromiseFulfilledResult<unknown>).value, { accepted: 0, duplicates: 1 }, 'a client id repeated inside one transaction is stored once');
  t.ok(transactions.size <= 2, `six posts, ${transactions.size} transactions (an idle writer flushes the first at once)`);
  t.equal(await count('events', a.workspaceId), 2);
  t.equal(await count('events', b.workspaceId), 2);
  t.equal(await count('customers', a.workspaceId), 2, 'the refused post created no customer');

  failFor = b.workspaceId;
  const mixed = await Promise.allSettled([
    post(a.workspaceId, [{ externalId: 'h1', type: 'fine' }]),
    post(b.workspaceId, [{ externalId: 'h2', type: 'doomed' }]),
    post(a.workspaceId, [{ externalId: 'h3', type: 'fine' }]),
    post(a.workspaceId, [{ externalId: 'h4', type: 'fine' }]),
  ]);
  t.same(mixed.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'], 'only the post whose hook failed fails');
  t.equal(await count('events', a.workspaceId), 5);
  t.equal((await sql`select count(*)::int as n from customers where workspace_id = ${b.workspaceId} and external_id = 'h2'`)[0]!.n, 0, 'nothing of it was written');
});
