import { parse } from 'csv-parse/sync';
import t from 'tap';
import { executePendingRuns, executeRun, scheduleDueActions } from '../src/modules/actions/actions.runs.ts';
import { drainDueMessages } from '../src/modules/messages/send.worker.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

// API role: no workers, so the test decides when the scheduler, the runs and the sends happen.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const MINUTE = 60_000;

async function setup(call: Call) {
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'news@acme.example' } })).json();
  const template = (await call('POST', '/v1/templates', { name: 'Hello', channel: 'email', content: { subject: 'Hello {{ customer.first_name | default: "you" }}', html: '<p>Hi <a href="https://acme.example/sale">sale</a></p>' } })).json();
  return { channelConfigId: config.id as string, templateId: template.id as string };
}

async function customers(call: Call, names: string[], custom: Record<string, unknown> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (const name of names) ids.push((await call('POST', '/v1/customers', { externalId: name, email: `${name}@x.example`, custom })).json().id);
  return ids;
}

const gold = { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' };
/** Schedules what is due and answers the runs of one workspace (other tests' actions share the scheduler). */
const due = async (workspaceId: string) => (await scheduleDueActions(deps)).filter((r) => r.workspaceId === workspaceId);
const messagesOf = async (actionId: string) =>
  sql<{ customer_id: string; status: string; entry_id: string; run_id: string }[]>`select customer_id, status, entry_id, run_id from messages where source_type = 'action' and source_id = ${actionId} order by created_at, id`;

t.test('single send: launched, run once to the audience, sent, reported and tracked; then completed', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['ann', 'bob', 'cid'], { plan: 'gold' });
  await customers(call, ['dan'], { plan: 'free' });
  const created = await call('POST', '/v1/actions', { name: 'June sale', kind: 'single_send', channel: 'email', ...refs, audience: gold });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { status: 'inactive', kind: 'single_send', nextRunAt: null });
  const id = created.json().id;
  t.same((await call('POST', `/v1/actions/${id}/preview`, { limit: 0 })).json().count, 3, 'execute: who would get it');
  t.same((await messagesOf(id)).length, 0, 'saving sends nothing');

  const launched = await call('POST', `/v1/actions/${id}/launch`);
  t.equal(launched.statusCode, 200);
  t.equal(launched.json().status, 'active');
  t.equal(await executePendingRuns(deps), 1, 'the launch queued one run');
  t.equal((await messagesOf(id)).length, 3);
  t.equal((await call('GET', `/v1/actions/${id}`)).json().status, 'completed', 'a single send completes after its run');
  t.equal(await drainDueMessages(deps), 3);

  const report = (await call('GET', `/v1/actions/${id}/report`)).json();
  t.match(report.funnel, { messages: 3, byStatus: { sent: 3 } });
  t.match(report.funnel.actionTemplates.find((a: { kind: string }) => a.kind === 'sent'), { channel: 'email', customers: 3 });
  t.equal(report.runs.length, 1);
  t.match(report.runs[0], { trigger: 'launch', status: 'finished', matched: 3, queued: 3, sent: 3, skipped: {} });
  t.type(report.runs[0].durationMs, 'number');

  const page = (await call('GET', `/v1/actions/${id}/tracking?columns=externalId,email,custom.plan,status,sent,opened&limit=2`)).json();
  t.same(page.columns, ['externalId', 'email', 'custom.plan', 'status', 'sent', 'opened']);
  t.equal(page.data.length, 2);
  const first = page.data[0].values;
  t.match(first, { email: `${first.externalId}@x.example`, 'custom.plan': 'gold', status: 'sent', opened: null });
  t.match(first.sent, /^2026-06-01T10:00:00/);
  const rest = (await call('GET', `/v1/actions/${id}/tracking?columns=externalId&cursor=${page.nextCursor}`)).json();
  t.equal(rest.data.length, 1);
  t.equal(rest.nextCursor, null);
  t.same([...page.data, ...rest.data].map((r: { values: { externalId: string } }) => r.values.externalId).sort(), ['ann', 'bob', 'cid'], 'the pages hold every message once');

  const csv = await call('GET', `/v1/actions/${id}/tracking?columns=externalId,status,sent,custom.plan`, undefined, { accept: 'text/csv' });
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.headers['content-disposition'], /attachment; filename="action-.*-tracking\.csv"/);
  const rows = parse(csv.body, { columns: true }) as Record<string, string>[];
  t.same(rows.map((r) => [r.externalId, r.status, r['custom.plan']]).sort(), [['ann', 'sent', 'gold'], ['bob', 'sent', 'gold'], ['cid', 'sent', 'gold']], 'the CSV matches the messages sent');
  t.ok(rows.every((r) => r.sent!.startsWith('2026-06-01T10:00:00')));
  t.equal((await call('GET', `/v1/actions/${id}/tracking?columns=password`)).statusCode, 400, 'unknown columns are refused');

  const again = await call('POST', `/v1/actions/${id}/launch`);
  t.equal(again.json().status, 'active', 'a completed single send can be launched again');
  await executePendingRuns(deps);
  t.equal((await messagesOf(id)).length, 3, 'nobody gets it twice');
  const runs = (await call('GET', `/v1/actions/${id}/report`)).json().runs;
  t.match(runs[0], { matched: 3, queued: 0, skipped: { already_received: 3 } });
});

t.test('triggered: every 5 minutes newcomers get it, until the end date', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['t1', 't2'], { plan: 'gold' });
  const created = await call('POST', '/v1/actions', {
    name: 'Welcome gold', kind: 'triggered', channel: 'email', ...refs, audience: gold, endAt: '2026-06-01T10:12:00Z', launch: true,
  });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { status: 'active', everyMinutes: 5, nextRunAt: '2026-06-01T10:05:00.000Z' }, 'save and launch: first run now, next in 5 minutes');
  const id = created.json().id;
  await executePendingRuns(deps);
  t.equal((await messagesOf(id)).length, 2);

  await customers(call, ['t3'], { plan: 'gold' });
  clock.advance(4 * MINUTE);
  t.same(await due(workspaceId), [], 'not due before 5 minutes');
  clock.advance(MINUTE);
  t.equal((await due(workspaceId)).length, 1, 'due at 5 minutes');
  t.same(await due(workspaceId), [], 'one run per slot');
  await executePendingRuns(deps);
  t.equal((await messagesOf(id)).length, 3, 'only the newcomer got it');
  const run = (await call('GET', `/v1/actions/${id}/report`)).json().runs[0];
  t.match(run, { trigger: 'schedule', scheduledFor: '2026-06-01T10:05:00.000Z', matched: 3, queued: 1, skipped: { already_received: 2 } });

  clock.advance(5 * MINUTE);
  t.equal((await due(workspaceId)).length, 1, 'the 10:10 run');
  await executePendingRuns(deps);
  const after = (await call('GET', `/v1/actions/${id}`)).json();
  t.match(after, { status: 'completed', nextRunAt: null }, 'no run left before 10:12: completed');
  clock.advance(10 * MINUTE);
  t.same(await due(workspaceId), []);
});

t.test('everyMinutes, pause and resume, edits taking effect at the next run', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['p1'], { plan: 'gold' });
  await customers(call, ['p2'], { plan: 'silver' });
  const id = (await call('POST', '/v1/actions', { name: 'Every minute', kind: 'triggered', channel: 'email', ...refs, audience: gold, everyMinutes: 1, launch: true })).json().id;
  await executePendingRuns(deps);
  t.equal((await call('POST', `/v1/actions/${id}/pause`)).json().status, 'paused');
  t.equal((await call('POST', `/v1/actions/${id}/pause`)).statusCode, 409, 'pausing a paused action is a conflict');
  clock.advance(3 * MINUTE);
  t.same(await due(workspaceId), [], 'a paused action does not run');
  const edited = await call('PUT', `/v1/actions/${id}`, { name: 'Every minute, silver', channel: 'email', ...refs, audience: { type: 'field', field: 'custom.plan', op: 'eq', value: 'silver' }, everyMinutes: 1 });
  t.equal(edited.statusCode, 200);
  t.equal(edited.json().status, 'paused', 'an edit keeps the status');
  t.equal((await call('POST', `/v1/actions/${id}/launch`)).json().status, 'active', 'launch resumes');
  await executePendingRuns(deps);
  const got = await sql`select c.external_id from messages m join customers c on c.id = m.customer_id where m.source_id = ${id} order by 1`;
  t.same(got.map((r) => r.external_id), ['p1', 'p2'], 'the new audience from the next run');
});

t.test('an event that can change the audience runs a triggered action right away', async (t) => {
  // A process with workers: the event's hook queues a run that a worker takes at once.
  const live = await startHerald(t);
  const { call } = await workspaceWithKey(live.app);
  const refs = await setup(call);
  const audience = { type: 'event', name: 'cart.abandoned', within: { amount: 1, unit: 'days' } };
  const id = (await call('POST', '/v1/actions', { name: 'Cart reminder', kind: 'triggered', channel: 'email', ...refs, audience, everyMinutes: 60, launch: true })).json().id;
  const liveSql = live.runtime.deps.database.sql;
  const count = async () => Number((await liveSql`select count(*) as n from messages where source_id = ${id}`)[0]!.n);
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(await count(), 0, 'nobody matches yet');
  const posted = await call('POST', '/v1/events', { externalId: 'shopper', type: 'cart.abandoned', occurredAt: live.clock.now().toISOString() });
  t.equal(posted.statusCode, 200);
  const { eventually } = await import('./helpers/app.ts');
  await eventually(async () => ((await count()) === 1 ? true : undefined));
  const runs = await liveSql`select trigger, matched, queued from action_runs where action_id = ${id} order by scheduled_for`;
  t.match(runs.at(-1), { trigger: 'event', matched: 1, queued: 1 });
  await call('POST', '/v1/events', { externalId: 'browser', type: 'page.viewed' });
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal((await liveSql`select count(*)::int as n from action_runs where action_id = ${id} and trigger = 'event'`)[0]!.n, 1, 'an unrelated event runs nothing');
});

t.test('recurring: a cron schedule in a time zone across daylight saving; one time vs many times', async (t) => {
  // Friday 27 March 2026, 10:00 UTC; Paris moves to summer time on Sunday 29 March.
  clock.set('2026-03-27T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['r1', 'r2'], { plan: 'gold' });
  const body = (repeat: string) => ({ name: `Daily ${repeat}`, kind: 'recurring', channel: 'email', ...refs, audience: gold, schedule: { cron: '0 9 * * *', timeZone: 'Europe/Paris' }, repeat, launch: true });
  const once = (await call('POST', '/v1/actions', body('once'))).json();
  const many = (await call('POST', '/v1/actions', body('many'))).json();
  t.equal(once.nextRunAt, '2026-03-28T08:00:00.000Z', '9:00 in Paris in winter');
  t.equal(many.repeat, 'many');

  clock.set('2026-03-28T08:00:00Z');
  t.equal((await due(workspaceId)).length, 2);
  await executePendingRuns(deps);
  t.equal((await call('GET', `/v1/actions/${once.id}`)).json().nextRunAt, '2026-03-29T07:00:00.000Z', '9:00 in Paris in summer');
  await customers(call, ['r3'], { plan: 'gold' });
  clock.set('2026-03-29T07:00:00Z');
  t.equal((await due(workspaceId)).length, 2);
  await executePendingRuns(deps);
  t.equal((await messagesOf(once.id)).length, 3, 'one time: each customer once, later runs reach newcomers');
  const manyMessages = await messagesOf(many.id);
  t.equal(manyMessages.length, 5, 'many times: every matching customer on every run');
  t.equal(new Set(manyMessages.map((m) => m.run_id)).size, 2);
});

t.test('recurring: launch one time at a moment, then completed', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['o1'], { plan: 'gold' });
  const id = (await call('POST', '/v1/actions', { name: 'At noon', kind: 'recurring', channel: 'email', ...refs, audience: gold, schedule: { at: '2026-06-01T12:00:00Z' }, launch: true })).json().id;
  t.equal((await call('GET', `/v1/actions/${id}`)).json().nextRunAt, '2026-06-01T12:00:00.000Z');
  clock.set('2026-06-01T11:59:00Z');
  t.same(await due(workspaceId), []);
  clock.set('2026-06-01T12:00:30Z');
  t.equal((await due(workspaceId)).length, 1);
  await executePendingRuns(deps);
  t.match((await call('GET', `/v1/actions/${id}`)).json(), { status: 'completed', nextRunAt: null });
  t.equal((await messagesOf(id)).length, 1);
});

t.test('two processes never run the same run twice', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['x1', 'x2', 'x3'], { plan: 'gold' });
  const id = (await call('POST', '/v1/actions', { name: 'Race', kind: 'recurring', channel: 'email', ...refs, audience: gold, schedule: { cron: '*/10 * * * *', timeZone: 'UTC' }, repeat: 'many', launch: true })).json().id;
  clock.set('2026-06-01T10:10:00Z');
  const [a, b] = await Promise.all([due(workspaceId), due(workspaceId)]);
  t.equal(a.length + b.length, 1, 'two schedulers at once start one run');
  const runId = (a[0] ?? b[0])!.runId;
  await Promise.all([executeRun(deps, workspaceId, runId), executeRun(deps, workspaceId, runId), executeRun(deps, workspaceId, runId)]);
  t.equal((await messagesOf(id)).length, 3, 'three workers on one run queue each message once');
  const [run] = await sql`select status, queued from action_runs where id = ${runId}`;
  t.match(run, { status: 'finished', queued: 3 });
});

t.test('clone, delete, inline templates', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  await customers(call, ['c1'], { plan: 'gold' });
  const inline = await call('POST', '/v1/actions', {
    name: 'Inline', kind: 'single_send', channel: 'email', channelConfigId: refs.channelConfigId, audience: gold,
    template: { content: { subject: 'Inline {{ customer.email }}', html: '<p>x</p>' } },
  });
  t.equal(inline.statusCode, 201);
  const listed = (await call('GET', '/v1/templates')).json().data.map((x: { id: string }) => x.id);
  t.notOk(listed.includes(inline.json().templateId), 'an inline template is not listed');
  const saved = await call('POST', '/v1/actions', {
    name: 'Inline saved', kind: 'single_send', channel: 'email', channelConfigId: refs.channelConfigId, audience: gold,
    template: { name: 'Saved from an action', content: { subject: 'S', html: '<p>x</p>' }, save: true },
  });
  t.ok((await call('GET', '/v1/templates')).json().data.some((x: { id: string; name: string }) => x.id === saved.json().templateId && x.name === 'Saved from an action'));
  const badInline = await call('POST', '/v1/actions', { name: 'Bad', kind: 'single_send', channel: 'email', channelConfigId: refs.channelConfigId, audience: gold, template: { content: { subject: '{% if %}', html: '<p>x</p>' } } });
  t.equal(badInline.statusCode, 400);
  t.match(badInline.json().errors[0].pointer, /^\/template\/content\/subject/);

  await call('POST', `/v1/actions/${inline.json().id}/launch`);
  await executePendingRuns(deps);
  const clone = await call('POST', `/v1/actions/${inline.json().id}/clone`, { name: 'Inline again' });
  t.equal(clone.statusCode, 201);
  t.match(clone.json(), { name: 'Inline again', status: 'inactive', kind: 'single_send', templateId: inline.json().templateId, audience: gold, lastRunAt: null });

  t.equal((await call('DELETE', `/v1/actions/${inline.json().id}`)).statusCode, 204);
  t.notOk((await call('GET', '/v1/actions')).json().data.some((a: { id: string }) => a.id === inline.json().id), 'gone from lists');
  t.match((await call('GET', `/v1/actions/${inline.json().id}`)).json(), { deletedAt: '2026-06-01T10:00:00.000Z' });
  t.equal((await call('GET', `/v1/actions/${inline.json().id}/report`)).json().funnel.messages, 1, 'its report stays readable');
  t.equal((await call('POST', `/v1/actions/${inline.json().id}/launch`)).statusCode, 404, 'it cannot run again');
  t.equal((await call('DELETE', `/v1/actions/${inline.json().id}`)).statusCode, 404);
  const other = await workspaceWithKey(app);
  t.equal((await other.call('GET', `/v1/actions/${clone.json().id}`)).statusCode, 404, 'another workspace sees nothing');
  t.equal((await other.call('GET', `/v1/actions/${clone.json().id}/tracking`)).statusCode, 404);
});

t.test('conversion chart: the conversion event within the window after each message', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  const [a, b, c] = await customers(call, ['v1', 'v2', 'v3'], { plan: 'gold' });
  const id = (await call('POST', '/v1/actions', { name: 'Convert', kind: 'single_send', channel: 'email', ...refs, audience: gold, launch: true })).json().id;
  await executePendingRuns(deps);
  await drainDueMessages(deps);
  await call('POST', '/v1/events', { events: [
    { customerId: a, type: 'order.placed', occurredAt: '2026-06-01T12:00:00Z' },
    { customerId: b, type: 'order.placed', occurredAt: '2026-06-05T12:00:00Z' }, // after 72 hours
    { customerId: c, type: 'order.placed', occurredAt: '2026-06-01T09:00:00Z' }, // before the message
    { customerId: a, type: 'order.placed', occurredAt: '2026-06-01T13:00:00Z' },
  ] });
  const report = (await call('GET', `/v1/actions/${id}/report?conversionEvent=order.placed&conversionWindowHours=72&interval=day&timeZone=Asia/Tokyo`)).json();
  t.match(report.conversion, { event: 'order.placed', windowHours: 72, sent: 3, converted: 1 });
  t.equal(report.conversion.rate, 1 / 3);
  t.same(report.conversion.series, [{ at: '2026-05-31T15:00:00.000Z', sent: 3, converted: 1 }], 'days start at midnight in the time zone asked for');
  const wide = (await call('GET', `/v1/actions/${id}/report?conversionEvent=order.placed&conversionWindowHours=200`)).json();
  t.equal(wide.conversion.converted, 2);
  t.equal((await call('GET', `/v1/actions/${id}/report?timeZone=Mars/Olympus`)).statusCode, 400);
  t.equal((await call('GET', `/v1/actions/${id}/report`)).json().conversion, null);
});

t.test('bad input: each a clear answer naming the fault, nothing half-written', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  const sms = (await call('POST', '/v1/templates', { name: 'Text', channel: 'sms', content: { text: 'Hi' } })).json();
  const base = { name: 'Bad', kind: 'recurring', channel: 'email', ...refs, audience: gold, schedule: { cron: '0 9 * * *', timeZone: 'UTC' } };
  const cases: [string, object, number, string[]][] = [
    ['an unknown operator', { ...base, audience: { type: 'field', field: 'custom.plan', op: 'like', value: 'x' } }, 400, ['/audience/op']],
    ['a schedule in the past', { ...base, schedule: { at: '2026-05-01T00:00:00Z' } }, 400, ['/schedule/at']],
    ['an end before its start', { ...base, startAt: '2026-07-01T00:00:00Z', endAt: '2026-06-15T00:00:00Z' }, 400, ['/endAt']],
    ['an end in the past', { ...base, endAt: '2026-05-15T00:00:00Z' }, 400, ['/endAt']],
    ['an unknown time zone', { ...base, schedule: { cron: '0 9 * * *', timeZone: 'Europe/Atlantis' } }, 400, ['/schedule/timeZone']],
    ['a bad cron', { ...base, schedule: { cron: '0 9 * *', timeZone: 'UTC' } }, 400, ['/schedule/cron']],
    ['a template for another channel', { ...base, templateId: sms.id }, 400, ['/templateId']],
    ['a schedule on a single send', { ...base, kind: 'single_send' }, 400, ['/schedule']],
    ['no template', { ...base, templateId: undefined }, 400, ['/templateId']],
    ['a missing channel config', { ...base, channelConfigId: '00000000-0000-4000-8000-000000000000' }, 422, ['/channelConfigId']],
    ['a missing segment', { ...base, audience: { type: 'segment', segmentId: '00000000-0000-4000-8000-000000000000' } }, 422, ['/audience']],
  ];
  for (const [what, body, status, pointers] of cases) {
    const res = await call('POST', '/v1/actions', body);
    t.equal(res.statusCode, status, what);
    t.same(res.json().errors?.map((e: { pointer: string }) => e.pointer), pointers, `${what}: ${res.json().detail}`);
  }
  t.equal((await call('GET', '/v1/actions')).json().data.length, 0, 'nothing saved');

  // A config deleted after saving, or one whose secrets no longer open: the launch says so.
  const doomed = (await call('POST', '/v1/channel-configs', { name: 'soon gone', provider: 'sandbox', channel: 'email' })).json();
  const a1 = (await call('POST', '/v1/actions', { ...base, channelConfigId: doomed.id })).json();
  await call('DELETE', `/v1/channel-configs/${doomed.id}`);
  const l1 = await call('POST', `/v1/actions/${a1.id}/launch`);
  t.equal(l1.statusCode, 422);
  t.match(l1.json(), { errors: [{ pointer: '/channelConfigId', detail: /does not exist/ }] });
  const sg = (await call('POST', '/v1/channel-configs', { name: 'sg', provider: 'sendgrid', settings: { fromEmail: 'a@acme.example' }, secrets: { apiKey: 'SG.x' } })).json();
  const a2 = (await call('POST', '/v1/actions', { ...base, channelConfigId: sg.id })).json();
  await sql`update channel_configs set sealed_secrets = 'v1.broken' where id = ${sg.id}`;
  const l2 = await call('POST', `/v1/actions/${a2.id}/launch`);
  t.equal(l2.statusCode, 422);
  t.match(l2.json().errors[0].detail, /cannot be used/);
  t.same((await call('GET', `/v1/actions/${a2.id}`)).json().status, 'inactive', 'a refused launch changes nothing');

  const segment = (await call('POST', '/v1/segments', { name: 'Gold', filter: gold })).json();
  const a3 = (await call('POST', '/v1/actions', { ...base, audience: { type: 'segment', segmentId: segment.id }, launch: true })).json();
  const del = await call('DELETE', `/v1/segments/${segment.id}`);
  t.equal(del.statusCode, 409, 'a segment an active action uses cannot be deleted');
  t.match(del.json().detail, new RegExp(a3.id));
  await call('DELETE', `/v1/actions/${a3.id}`);
  t.equal((await call('DELETE', `/v1/segments/${segment.id}`)).statusCode, 204, 'once the action is gone, it can');
  t.equal((await call('PUT', `/v1/actions/${a1.id}`, { ...base, kind: 'single_send' })).statusCode, 400, 'the kind cannot change');
});

t.test('an action whose channel is edited gets the new channel\'s set of action templates beside the old one', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  const created = (await call('POST', '/v1/actions', { name: 'Switch', kind: 'single_send', channel: 'email', ...refs, audience: gold })).json();
  const sms = (await call('POST', '/v1/channel-configs', { name: 'sms', provider: 'sandbox', channel: 'sms' })).json().id as string;
  const text = (await call('POST', '/v1/templates', { name: 'Text', channel: 'sms', content: { text: 'Hi' } })).json().id as string;
  const edited = await call('PUT', `/v1/actions/${created.id}`, { name: 'Switch', channel: 'sms', channelConfigId: sms, templateId: text, audience: gold });
  t.equal(edited.statusCode, 200, edited.body);
  const list = (await call('GET', `/v1/action-templates?sourceType=action&sourceId=${created.id}`)).json().data as { channel: string; kind: string }[];
  t.same(list.filter((a) => a.channel === 'sms').map((a) => a.kind), ['sent', 'delivered', 'unsubscribed', 'not_sent', 'failed'], 'the SMS set (it conflicted with the email one and was not made before)');
  t.equal(list.filter((a) => a.channel === 'email').length, 10, 'the email set stays, with what it was assigned');
});
