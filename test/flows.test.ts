import t from 'tap';
import { drainFlows } from '../src/engine/engine.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

// API role: the test runs the engine itself (drainFlows) against a controllable clock.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function refs(call: Call) {
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'news@acme.example' } })).json();
  const welcome = (await call('POST', '/v1/templates', { name: 'Confirm', channel: 'email', content: { subject: 'Please confirm', html: '<p>Confirm</p>' } })).json();
  const reminder = (await call('POST', '/v1/templates', { name: 'Reminder', channel: 'email', content: { subject: 'Still there?', html: '<p>Reminder</p>' } })).json();
  const send = (templateId: string) => ({ type: 'send', channel: 'email', channelConfigId: config.id, templateId });
  return { send, welcome: welcome.id as string, reminder: reminder.id as string };
}

async function post(call: Call, externalId: string, type: string, properties: Record<string, unknown> = {}) {
  const res = await call('POST', '/v1/events', { externalId, type, properties, occurredAt: clock.now().toISOString() });
  if (res.statusCode !== 200) throw new Error(res.body);
  return res.json().events[0].customerId as string;
}

const sentTo = async (flowId: string) =>
  (await sql<{ external_id: string; step_id: string }[]>`select c.external_id, m.step_id from messages m join customers c on c.id = m.customer_id where m.source_type = 'flow' and m.source_id = ${flowId} order by m.created_at, c.external_id`)
    .map((r) => `${r.external_id}:${r.step_id}`);

t.test('the seed\'s example: a confirmation email, then a reminder to those who do not confirm within 24 hours', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'subscription.changed', where: [{ property: 'status', op: 'eq', value: 'pending_confirmation' }] },
      { id: 'first', type: 'steps', name: 'Confirmation email', steps: [r.send(r.welcome)] },
      { id: 'await', type: 'wait', mode: 'event', eventType: 'subscription.confirmed', timeout: { amount: 24, unit: 'hours' } },
      { id: 'remind', type: 'steps', steps: [r.send(r.reminder)] },
      { id: 'done', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'first' }, { from: 'first', to: 'await' },
      { from: 'await', to: 'done', branch: 'event' }, { from: 'await', to: 'remind', branch: 'timeout' }, { from: 'remind', to: 'done' },
    ],
  };
  const created = await call('POST', '/v1/flows', { name: 'Double opt-in', graph });
  t.equal(created.statusCode, 201, created.body);
  t.match(created.json(), { status: 'ready', draftStatus: 'ready', problems: [] });
  const id = created.json().id;
  const launched = await call('POST', `/v1/flows/${id}/launch`);
  t.equal(launched.statusCode, 200, launched.body);
  t.match(launched.json(), { status: 'active', activeVersion: 1, draftVersion: null });

  await post(call, 'ann', 'subscription.changed', { status: 'pending_confirmation' });
  await post(call, 'bob', 'subscription.changed', { status: 'pending_confirmation' });
  await post(call, 'cid', 'subscription.changed', { status: 'subscribed' });
  await drainFlows(deps);
  t.same(await sentTo(id), ['ann:first/0', 'bob:first/0'], 'the filter on the event keeps cid out');

  clock.advance(2 * HOUR);
  await post(call, 'ann', 'subscription.confirmed');
  await drainFlows(deps);
  clock.advance(22 * HOUR - 1000);
  await drainFlows(deps);
  t.same(await sentTo(id), ['ann:first/0', 'bob:first/0'], 'not before 24 hours');
  clock.advance(1000);
  await drainFlows(deps);
  t.same(await sentTo(id), ['ann:first/0', 'bob:first/0', 'bob:remind/0'], 'the reminder goes to the one who did not confirm');

  const stats = (await call('GET', `/v1/flows/${id}/stats`)).json();
  const node = (nodeId: string) => stats.nodes.find((n: { nodeId: string }) => n.nodeId === nodeId);
  t.match(node('start'), { entered: 3, branches: { next: 2 }, exited: { filtered: 1 } });
  t.match(node('await'), { entered: 2, waiting: 0, branches: { event: 1, timeout: 1 } });
  t.match(node('done'), { entered: 2, exited: { completed: 2 } });
  t.same(stats.entries, { active: 0, paused: 0, done: 3 });

  const ann = (await call('GET', '/v1/customers?externalId=ann')).json().data[0].id;
  const timeline = (await call('GET', `/v1/customers/${ann}/timeline?kinds=flow`)).json().data;
  t.ok(timeline.length >= 3, 'decisions are on the timeline');
  t.match(timeline[0], { kind: 'flow', data: { flowId: id, nodeId: 'done' } });
});
