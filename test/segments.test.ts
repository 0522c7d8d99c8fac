import t from 'tap';
import { countAudience, matchCustomers } from '../src/audience/audience.service.ts';
import type { Filter } from '../src/audience/filter.ts';
import { assignActions } from '../src/modules/messages/action-templates.ts';
import { enqueueMessages } from '../src/modules/messages/outbox.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

// API role: no send workers, so the messages written below stay as the test leaves them.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const DAY = 86_400_000;

async function customer(call: Call, body: Record<string, unknown>): Promise<string> {
  const res = await call('POST', '/v1/customers', body);
  if (res.statusCode >= 300) throw new Error(res.body);
  return res.json().id;
}

/** The external ids matching a filter, through the HTTP preview. */
async function matching(call: Call, filter: unknown): Promise<string[]> {
  const res = await call('POST', '/v1/segments/preview', { filter, limit: 500, columns: ['externalId'] });
  if (res.statusCode !== 200) throw new Error(res.body);
  t.equal(res.json().count, res.json().data.length, 'the count is the number of rows');
  return res.json().data.map((r: { externalId: string }) => r.externalId).sort();
}

t.test('field conditions: text, numbers, dates, lists, missing values', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call } = await workspaceWithKey(app);
  await customer(call, { externalId: 'ann', email: 'ann@acme.example', custom: { plan: 'gold', spend: 120, tags: ['vip', 'beta'], trialEndsAt: '2026-06-20T00:00:00Z', address: { city: 'Paris' } } });
  await customer(call, { externalId: 'bob', email: 'bob@other.example', custom: { plan: 'silver', spend: 80.5, tags: ['beta'], trialEndsAt: '2026-05-01', address: { city: 'Lyon' } } });
  await customer(call, { externalId: 'cid', phone: '+33600000000', custom: { plan: 'gold', spend: '999', trialEndsAt: 'not a date' } });
  await customer(call, { externalId: 'dee', custom: {} });

  t.same(await matching(call, { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' }), ['ann', 'cid']);
  t.same(await matching(call, { type: 'field', field: 'custom.plan', op: 'neq', value: 'gold' }), ['bob', 'dee'], 'neq includes a missing value');
  t.same(await matching(call, { type: 'field', field: 'custom.plan', op: 'in', value: ['silver', 'bronze'] }), ['bob']);
  t.same(await matching(call, { type: 'field', field: 'custom.plan', op: 'notIn', value: ['silver'] }), ['ann', 'cid', 'dee']);
  t.same(await matching(call, { type: 'field', field: 'custom.spend', op: 'gt', value: 100 }), ['ann'], 'a number stored as text is no number');
  t.same(await matching(call, { type: 'field', field: 'custom.spend', op: 'lte', value: 80.5 }), ['bob']);
  t.same(await matching(call, { type: 'field', field: 'custom.tags', op: 'contains', value: 'vip' }), ['ann'], 'contains looks into lists');
  t.same(await matching(call, { type: 'field', field: 'email', op: 'contains', value: 'ACME' }), ['ann'], 'contains on text ignores case');
  t.same(await matching(call, { type: 'field', field: 'email', op: 'startsWith', value: 'bo' }), ['bob']);
  t.same(await matching(call, { type: 'field', field: 'email', op: 'contains', value: '%' }), [], 'LIKE wildcards in values are literal');
  t.same(await matching(call, { type: 'field', field: 'email', op: 'notExists' }), ['cid', 'dee']);
  t.same(await matching(call, { type: 'field', field: 'phone', op: 'exists' }), ['cid']);
  t.same(await matching(call, { type: 'field', field: 'custom.address.city', op: 'eq', value: 'Lyon' }), ['bob'], 'nested custom fields');
  t.same(await matching(call, { type: 'field', field: 'custom.trialEndsAt', op: 'withinNext', duration: { amount: 7, unit: 'days' } }), ['ann']);
  t.same(await matching(call, { type: 'field', field: 'custom.trialEndsAt', op: 'moreThanAgo', duration: { amount: 30, unit: 'days' } }), ['bob'], 'a value that is not a date never matches a date test');
  t.same(await matching(call, { type: 'field', field: 'custom.trialEndsAt', op: 'lt', value: '2026-06-01' }), ['bob']);
  t.same(await matching(call, { type: 'field', field: 'createdAt', op: 'withinLast', duration: { amount: 1, unit: 'hours' } }), ['ann', 'bob', 'cid', 'dee']);
  t.same(await matching(call, { all: [{ type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' }, { not: { type: 'field', field: 'email', op: 'exists' } }] }), ['cid']);
  t.same(await matching(call, { any: [{ type: 'field', field: 'externalId', op: 'eq', value: 'dee' }, { type: 'field', field: 'custom.spend', op: 'gte', value: 120 }] }), ['ann', 'dee']);
  t.same(await matching(call, { not: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } }), ['bob', 'dee'], 'not of a missing value is a match');
});

t.test('birthdays in the next 7 days, in each customer\'s time zone, across the end of the year', async (t) => {
  // 23:30 UTC on 28 December: already 29 December in Tokyo, still the 28th in New York.
  clock.set('2026-12-28T23:30:00Z');
  const { call } = await workspaceWithKey(app);
  await customer(call, { externalId: 'tokyo-28', timeZone: 'Asia/Tokyo', custom: { birthday: '1990-12-28' } });
  await customer(call, { externalId: 'ny-28', timeZone: 'America/New_York', custom: { birthday: '1990-12-28' } });
  await customer(call, { externalId: 'jan-3', timeZone: 'America/New_York', custom: { birthday: '2001-01-03' } });
  await customer(call, { externalId: 'jan-5', timeZone: 'Asia/Tokyo', custom: { birthday: '2001-01-05' } });
  await customer(call, { externalId: 'jan-5-ny', timeZone: 'America/New_York', custom: { birthday: '2001-01-05' } });
  await customer(call, { externalId: 'march', custom: { birthday: '1985-03-01' } });
  await customer(call, { externalId: 'junk', custom: { birthday: 'soon' } });
  const birthdays = { type: 'field', field: 'custom.birthday', op: 'anniversaryWithinNext', duration: { amount: 7, unit: 'days' } };
  // Tokyo: 29 Dec to 5 Jan; New York: 28 Dec to 4 Jan.
  t.same(await matching(call, birthdays), ['jan-3', 'jan-5', 'ny-28']);
  t.same(await matching(call, { ...birthdays, duration: { amount: 0, unit: 'days' } }), ['ny-28'], 'zero days: birthdays today');
  t.same(await matching(call, { ...birthdays, duration: { amount: 53, unit: 'weeks' } }), ['jan-3', 'jan-5', 'jan-5-ny', 'march', 'ny-28', 'tokyo-28'], 'a year or more: every valid date');
});

t.test('consent: no record counts as subscribed', async (t) => {
  const { call } = await workspaceWithKey(app);
  const a = await customer(call, { externalId: 'a', email: 'a@x.example' });
  const b = await customer(call, { externalId: 'b', email: 'b@x.example' });
  await customer(call, { externalId: 'c', email: 'c@x.example' });
  t.equal((await call('PUT', `/v1/customers/${a}/consents/email`, { status: 'unsubscribed' })).statusCode, 200);
  t.equal((await call('PUT', `/v1/customers/${b}/consents/sms`, { status: 'pending_confirmation' })).statusCode, 200);
  t.same(await matching(call, { type: 'consent', channel: 'email', status: 'subscribed' }), ['b', 'c']);
  t.same(await matching(call, { type: 'consent', channel: 'email', status: 'unsubscribed' }), ['a']);
  t.same(await matching(call, { type: 'consent', channel: 'sms', status: 'pending_confirmation' }), ['b']);
});

t.test('events: counts, time windows and property filters', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call } = await workspaceWithKey(app);
  const now = clock.now().getTime();
  const at = (days: number) => new Date(now - days * DAY).toISOString();
  for (const id of ['none', 'one', 'two', 'three', 'old']) await customer(call, { externalId: id });
  const events = [
    { externalId: 'one', type: 'order.placed', occurredAt: at(2), properties: { total: 40, currency: 'EUR' } },
    { externalId: 'two', type: 'order.placed', occurredAt: at(1), properties: { total: 150, currency: 'EUR' } },
    { externalId: 'two', type: 'order.placed', occurredAt: at(10), properties: { total: 20, currency: 'USD' } },
    { externalId: 'three', type: 'order.placed', occurredAt: at(3), properties: { total: 5, items: { count: 3 } } },
    { externalId: 'three', type: 'order.placed', occurredAt: at(4), properties: { total: 5 } },
    { externalId: 'three', type: 'order.placed', occurredAt: at(5), properties: { total: 5 } },
    { externalId: 'old', type: 'order.placed', occurredAt: at(60), properties: { total: 500 } },
    { externalId: 'old', type: 'order.placed', occurredAt: at(61), properties: { total: 500 } },
    { externalId: 'none', type: 'page.viewed', occurredAt: at(1) },
  ];
  t.equal((await call('POST', '/v1/events', { events })).statusCode, 200);
  const orders = (extra: object) => ({ type: 'event', name: 'order.placed', within: { amount: 30, unit: 'days' }, ...extra });
  t.same(await matching(call, orders({ count: { op: 'gte', value: 2 } })), ['three', 'two'], '2+ orders in 30 days');
  t.same(await matching(call, orders({})), ['one', 'three', 'two'], 'at least one by default');
  t.same(await matching(call, orders({ count: { op: 'eq', value: 1 } })), ['one']);
  t.same(await matching(call, orders({ count: { op: 'lt', value: 1 } })), ['none', 'old'], 'no order in 30 days');
  t.same(await matching(call, orders({ count: { op: 'lte', value: 2 } })), ['none', 'old', 'one', 'two']);
  t.same(await matching(call, orders({ count: { op: 'gt', value: 2 } })), ['three']);
  t.same(await matching(call, { type: 'event', name: 'order.placed', count: { op: 'gte', value: 2 } }), ['old', 'three', 'two'], 'no window: ever');
  t.same(await matching(call, orders({ where: [{ property: 'total', op: 'gte', value: 100 }] })), ['two']);
  t.same(await matching(call, orders({ where: [{ property: 'currency', op: 'eq', value: 'EUR' }, { property: 'total', op: 'lt', value: 100 }] })), ['one']);
  t.same(await matching(call, orders({ where: [{ property: 'items.count', op: 'exists' }] })), ['three'], 'nested properties');
  t.same(await matching(call, { all: [orders({}), { not: { type: 'event', name: 'page.viewed' } }] }), ['one', 'three', 'two']);
});

t.test('action templates: sent but not opened within 3 days, opened but not clicked, unsubscribed', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email' })).json();
  const template = (await call('POST', '/v1/templates', { name: 'Hi', channel: 'email', content: { subject: 'Hi', html: '<p>Hi</p>' } })).json();
  const ids: Record<string, string> = {};
  for (const name of ['unopened', 'late-open', 'opened', 'clicked', 'recent', 'unsub', 'never']) ids[name] = await customer(call, { externalId: name, email: `${name}@x.example` });
  const source = { sourceType: 'action', sourceId: 'campaign-1' };
  const now = clock.now().getTime();
  const sentAt: Record<string, number> = { unopened: 10, 'late-open': 10, opened: 10, clicked: 10, recent: 1, unsub: 10 };
  const messages = new Map<string, string>();
  await sql.begin(async (tx) => {
    for (const [name, days] of Object.entries(sentAt)) {
      const [id] = await enqueueMessages(tx, deps.boss, [{ workspaceId, customerId: ids[name]!, channel: 'email', channelConfigId: config.id, templateId: template.id, templateVersion: 1, ...source }], new Date(now - days * DAY));
      messages.set(name, id!);
    }
  });
  const assign = (name: string, kind: string, daysAgo: number) => ({ workspaceId, messageId: messages.get(name)!, customerId: ids[name]!, ...source, kind, occurredAt: new Date(now - daysAgo * DAY) });
  await assignActions(sql, [
    ...Object.entries(sentAt).map(([name, days]) => assign(name, 'sent', days)),
    assign('late-open', 'opened', 5), // 5 days after the send: outside the 3-day window
    assign('opened', 'opened', 9),
    assign('clicked', 'opened', 9), assign('clicked', 'clicked', 9),
    assign('unsub', 'opened', 9), assign('unsub', 'unsubscribed', 9),
  ]);
  const sentNotOpened = { type: 'action', ...source, kind: 'sent', without: { kind: 'opened', within: { amount: 3, unit: 'days' } } };
  t.same(await matching(call, sentNotOpened), ['late-open', 'unopened'], 'the recent send has not had its 3 days yet');
  t.same(await matching(call, { type: 'action', ...source, kind: 'opened', without: { kind: 'clicked' } }), ['late-open', 'opened', 'unsub']);
  t.same(await matching(call, { type: 'action', ...source, kind: 'unsubscribed' }), ['unsub']);
  t.same(await matching(call, { type: 'action', ...source, kind: 'sent', within: { amount: 2, unit: 'days' } }), ['recent']);
  const list = (await call('GET', `/v1/action-templates?sourceType=action&sourceId=campaign-1`)).json().data as { id: string; kind: string }[];
  const clickedId = list.find((a) => a.kind === 'clicked')!.id;
  t.same(await matching(call, { type: 'action', actionTemplateId: clickedId }), ['clicked'], 'by action template id');
  t.same(await matching(call, { type: 'action', actionTemplateId: clickedId.toUpperCase() }), ['clicked'], 'ids in any case');
  t.same(await matching(call, { type: 'action', sourceType: 'action', sourceId: 'no-such-source', kind: 'sent' }), [], 'an unknown source matches nobody');
});

t.test('action conditions on a flow: a set per send step and channel; "sent" matches any step, "without" looks at the message\'s own step', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email' })).json();
  const template = (await call('POST', '/v1/templates', { name: 'Hi', channel: 'email', content: { subject: 'Hi', html: '<p>Hi</p>' } })).json();
  const ids: Record<string, string> = {};
  for (const name of ['mailed', 'opener', 'texted', 'none']) ids[name] = await customer(call, { externalId: name, email: `${name}@x.example` });
  const source = { sourceType: 'flow', sourceId: 'flow-1' };
  const steps: Record<string, [string, string]> = { mailed: ['mail/0', 'email'], opener: ['mail/0', 'email'], texted: ['text/0', 'sms'] };
  const messages = new Map<string, string>();
  await sql.begin(async (tx) => {
    for (const [name, [stepId, channel]] of Object.entries(steps)) {
      const [id] = await enqueueMessages(tx, deps.boss, [{ workspaceId, customerId: ids[name]!, channel, channelConfigId: config.id, templateId: template.id, templateVersion: 1, ...source, stepId }], clock.now());
      messages.set(name, id!);
    }
  });
  const assign = (name: string, kind: string) => ({ workspaceId, messageId: messages.get(name)!, customerId: ids[name]!, ...source, kind, occurredAt: clock.now() });
  t.equal(await assignActions(sql, [assign('mailed', 'sent'), assign('opener', 'sent'), assign('opener', 'opened'), assign('texted', 'sent')]), 4, 'each to its own step\'s template');
  const list = (await call('GET', '/v1/action-templates?sourceType=flow&sourceId=flow-1')).json().data as { stepId: string; channel: string; kind: string }[];
  t.same([...new Set(list.map((a) => `${a.stepId} ${a.channel}`))], ['mail/0 email', 'text/0 sms']);
  t.same(await matching(call, { type: 'action', ...source, kind: 'sent' }), ['mailed', 'opener', 'texted'], 'sent by any step of the flow');
  t.same(await matching(call, { type: 'action', ...source, kind: 'sent', without: { kind: 'opened' } }), ['mailed', 'texted'], 'sent and that message not opened');
  t.same(await matching(call, { type: 'action', ...source, kind: 'opened' }), ['opener']);
});

t.test('one compiler, two modes: "everyone who matches" and "which of these match" agree', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push(await customer(call, { externalId: `c${i}`, email: i % 3 ? `c${i}@x.example` : undefined, custom: { n: i, plan: i % 2 ? 'gold' : 'free' } }));
  const events = ids.flatMap((id, i) => Array.from({ length: i % 4 }, (_, k) => ({ customerId: id, type: 'order.placed', occurredAt: new Date(clock.now().getTime() - (k * 12 + 1) * DAY).toISOString(), properties: { total: i * 10 + k } })));
  await call('POST', '/v1/events', { events });
  const filters: Filter[] = [
    { type: 'event', name: 'order.placed', count: { op: 'gte', value: 2 }, within: { amount: 30, unit: 'days' } },
    { type: 'event', name: 'order.placed', count: { op: 'eq', value: 0 } },
    { any: [{ type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' }, { type: 'event', name: 'order.placed', where: [{ property: 'total', op: 'gt', value: 50 }] }] },
    { not: { all: [{ type: 'field', field: 'email', op: 'exists' }, { type: 'event', name: 'order.placed', count: { op: 'lt', value: 3 } }] } },
  ];
  const half = ids.filter((_, i) => i % 2 === 0);
  for (const [i, filter] of filters.entries()) {
    const everyone = (await sql.unsafe(`select 1`)) && (await matching(call, filter));
    const byId = new Map(ids.map((id, k) => [id, `c${k}`]));
    const subset = await matchCustomers(sql, { workspaceId, filter, now: clock.now(), customerIds: half });
    t.same([...subset].map((id) => byId.get(id)).sort(), everyone.filter((e) => half.map((id) => byId.get(id)).includes(e)), `filter ${i}: the subset mode picks the same customers`);
    t.equal(await countAudience(sql, { workspaceId, filter, now: clock.now() }), everyone.length, `filter ${i}: the count agrees`);
  }
});

t.test('saved segments: CRUD, preview with columns and pages, references and cycles', async (t) => {
  clock.set('2026-06-15T12:00:00Z');
  const { call } = await workspaceWithKey(app);
  for (let i = 0; i < 5; i++) await customer(call, { externalId: `g${i}`, email: `g${i}@x.example`, custom: { plan: i < 3 ? 'gold' : 'free', profile: { age: 20 + i } } });
  const gold = await call('POST', '/v1/segments', { name: 'Gold', description: 'Paying customers', filter: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } });
  t.equal(gold.statusCode, 201);
  t.match(gold.json(), { name: 'Gold', description: 'Paying customers', filter: { type: 'field', field: 'custom.plan' } });
  const goldId = gold.json().id;
  t.same((await call('GET', `/v1/segments/${goldId}`)).json(), gold.json());

  const page1 = await call('POST', `/v1/segments/${goldId}/preview`, { limit: 2, columns: ['email', 'custom.profile.age', 'custom.missing'] });
  t.equal(page1.statusCode, 200);
  t.equal(page1.json().count, 3);
  t.equal(page1.json().data.length, 2);
  t.same(page1.json().data[0].fields, { email: 'g0@x.example', 'custom.profile.age': 20, 'custom.missing': null });
  const page2 = await call('POST', `/v1/segments/${goldId}/preview`, { limit: 2, cursor: page1.json().nextCursor });
  t.equal(page2.json().data.length, 1);
  t.equal(page2.json().nextCursor, null);
  t.same((await call('POST', `/v1/segments/${goldId}/preview`, { limit: 0 })).json(), { count: 3, data: [], nextCursor: null }, 'limit 0: the count only');

  const young = (await call('POST', '/v1/segments', { name: 'Young gold', filter: { all: [{ type: 'segment', segmentId: goldId }, { type: 'field', field: 'custom.profile.age', op: 'lt', value: 22 }] } })).json();
  t.same(await matching(call, { type: 'segment', segmentId: young.id }), ['g0', 'g1'], 'segments nest');

  const self = await call('PUT', `/v1/segments/${goldId}`, { name: 'Gold', filter: { type: 'segment', segmentId: goldId } });
  t.equal(self.statusCode, 400, 'a segment cannot refer to itself');
  const cycle = await call('PUT', `/v1/segments/${goldId}`, { name: 'Gold', filter: { any: [{ type: 'segment', segmentId: young.id }] } });
  t.equal(cycle.statusCode, 400, 'nor reach itself through another');
  t.match(cycle.json().errors[0].detail, /cycle/);
  t.equal((await call('GET', `/v1/segments/${goldId}`)).json().filter.type, 'field', 'a refused save changes nothing');

  const missing = await call('POST', '/v1/segments', { name: 'x', filter: { type: 'segment', segmentId: '00000000-0000-4000-8000-000000000000' } });
  t.equal(missing.statusCode, 422);

  const inUse = await call('DELETE', `/v1/segments/${goldId}`);
  t.equal(inUse.statusCode, 409, 'another segment uses it');
  t.match(inUse.json().detail, /Young gold/);
  const renamed = await call('PUT', `/v1/segments/${young.id}`, { name: 'Young', filter: { type: 'field', field: 'custom.profile.age', op: 'lt', value: 22 } });
  t.equal(renamed.statusCode, 200);
  t.equal(renamed.json().name, 'Young');
  t.equal((await call('DELETE', `/v1/segments/${goldId}`)).statusCode, 204);
  t.equal((await call('GET', `/v1/segments/${goldId}`)).statusCode, 404);
  const list = (await call('GET', '/v1/segments')).json();
  t.same(list.data.map((s: { name: string }) => s.name), ['Young']);

  const other = await workspaceWithKey(app);
  t.equal((await other.call('GET', `/v1/segments/${young.id}`)).statusCode, 404, 'another workspace sees nothing');
  t.equal((await other.call('POST', `/v1/segments/${young.id}/preview`, {})).statusCode, 404);
  t.equal((await other.call('POST', '/v1/segments/preview', { filter: { type: 'segment', segmentId: young.id } })).statusCode, 422, 'nor can it refer to it');
});

t.test('bad filters: each fault named by its JSON pointer, nothing saved', async (t) => {
  const { call } = await workspaceWithKey(app);
  const bad = await call('POST', '/v1/segments', {
    name: 'bad',
    filter: {
      all: [
        { type: 'field', field: 'custom.plan', op: 'like', value: 'x' },
        { type: 'field', field: 'password', op: 'eq', value: 'x' },
        { type: 'event', name: 'order.placed', count: { op: 'gte', value: -1 }, within: { amount: 3, unit: 'fortnights' }, color: 'red' },
        { type: 'field', field: 'email', op: 'gt', value: 3 },
        { type: 'field', field: 'custom.n', op: 'in', value: [] },
        { type: 'action', sourceType: 'action', kind: 'read' },
        { type: 'magic' },
        { any: [] },
        'text',
      ],
    },
  });
  t.equal(bad.statusCode, 400);
  t.equal(bad.headers['content-type'], 'application/problem+json');
  const pointers = bad.json().errors.map((e: { pointer: string }) => e.pointer);
  t.same(pointers, [
    '/filter/all/0/op', '/filter/all/1/field', '/filter/all/2/color', '/filter/all/2/count/value', '/filter/all/2/within/unit', '/filter/all/3/op', '/filter/all/4/value',
    '/filter/all/5/sourceId', '/filter/all/5/kind', '/filter/all/6/type', '/filter/all/7/any', '/filter/all/8',
  ]);
  t.match(bad.json().errors[0].detail, /unknown operator "like"/);
  t.equal((await call('GET', '/v1/segments')).json().data.length, 0, 'nothing saved');

  let deep: unknown = { type: 'field', field: 'email', op: 'exists' };
  for (let i = 0; i < 12; i++) deep = { not: deep };
  t.equal((await call('POST', '/v1/segments/preview', { filter: deep })).statusCode, 400, 'too deep');
  const wide = { any: Array.from({ length: 50 }, () => ({ all: Array.from({ length: 5 }, () => ({ type: 'field', field: 'email', op: 'exists' })) })) };
  const tooMany = await call('POST', '/v1/segments/preview', { filter: wide });
  t.equal(tooMany.statusCode, 400, 'too many nodes');
  t.match(tooMany.json().errors[0].detail, /at most 200 nodes/);
  const columns = await call('POST', '/v1/segments/preview', { filter: { type: 'field', field: 'email', op: 'exists' }, columns: ['email', 'password'] });
  t.equal(columns.statusCode, 400);
  t.same(columns.json().errors.map((e: { pointer: string }) => e.pointer), ['/columns/1']);
  const unknownBody = await call('POST', '/v1/segments', { name: 'x', filter: { type: 'field', field: 'email', op: 'exists' }, extra: 1 });
  t.equal(unknownBody.statusCode, 400, 'unknown body fields are refused as everywhere');
});
