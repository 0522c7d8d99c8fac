import t from 'tap';
import { drainFlows } from '../src/engine/engine.ts';
import { sendDueMessages } from '../src/modules/messages/send.worker.ts';
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

  // Decisions are stored a tick's worth per row and listed one by one: paging one at a time
  // gives each once, newest first, in the order they were made within a tick.
  const made = await sql<{ id: string; node_id: string }[]>`select id, node_id from flow_decision_list where customer_id = ${ann} order by at desc, row_id desc, position desc`;
  t.ok(made.length >= 4, `ann's decisions: ${made.map((d) => d.node_id).join(', ')}`);
  const paged: { id: string; nodeId: string }[] = [];
  for (let cursor: string | null = null, n = 0; n < 20; n++) {
    const page: { data: { id: string; data: { nodeId: string } }[]; nextCursor: string | null } = (await call('GET', `/v1/customers/${ann}/timeline?kinds=flow&limit=1${cursor ? `&cursor=${cursor}` : ''}`)).json();
    paged.push(...page.data.map((e: { id: string; data: { nodeId: string } }) => ({ id: e.id, nodeId: e.data.nodeId })));
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  t.same(paged, made.map((d) => ({ id: d.id, nodeId: d.node_id })), 'one page at a time: every decision once, in order');
  t.same(timeline.map((e: { id: string }) => e.id), made.map((d) => d.id), 'one page: the same');
  const all = (await call('GET', `/v1/customers/${ann}/timeline?limit=100`)).json().data;
  const byTwo: unknown[] = [];
  for (let cursor: string | null = null, n = 0; n < 50; n++) {
    const page: { data: unknown[]; nextCursor: string | null } = (await call('GET', `/v1/customers/${ann}/timeline?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json();
    byTwo.push(...page.data);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  t.same(byTwo, all, 'every kind merged, two at a time: the same as one page');

  // since/until (GraphQL), one entry a page: the full list cut to [since, until).
  const times = all.map((e: { at: string }) => Date.parse(e.at));
  const [since, until] = [new Date(Math.min(...times)).toISOString(), new Date(Math.max(...times)).toISOString()];
  const windowed: string[] = [];
  for (let after: string | null = null, n = 0; n < 50; n++) {
    const res = await call('POST', '/graphql', {
      query: 'query ($id: ID!, $after: String, $since: DateTime, $until: DateTime) { customer(id: $id) { timeline(first: 1, after: $after, since: $since, until: $until) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }',
      variables: { id: ann, after, since, until },
    });
    const page = res.json().data.customer.timeline as { edges: { node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string } };
    windowed.push(...page.edges.map((e) => e.node.id));
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  const expected = all.filter((e: { at: string }) => e.at >= since && e.at < until).map((e: { id: string }) => e.id);
  t.ok(expected.length > 1 && expected.length < all.length, `the window holds some entries (${expected.length} of ${all.length})`);
  t.same(windowed, expected, 'since and until with a cursor: the entries of the window, once each, in order');
});

const chain = (...nodes: Record<string, unknown>[]) => ({
  nodes,
  edges: nodes.slice(1).map((n, i) => ({ from: nodes[i]!.id as string, to: n.id as string })),
});

async function launchFlow(call: Call, body: Record<string, unknown>): Promise<string> {
  const created = await call('POST', '/v1/flows', body);
  if (created.statusCode !== 201) throw new Error(created.body);
  const launched = await call('POST', `/v1/flows/${created.json().id}/launch`);
  if (launched.statusCode !== 200) throw new Error(launched.body);
  return created.json().id;
}

t.test('life cycle: drafts with problems, ready, versions, editing an active flow, duplicate', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const partial = await call('POST', '/v1/flows', { name: 'Half done', graph: { nodes: [{ id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }], edges: [] } });
  t.equal(partial.statusCode, 201, 'an unfinished flow is saved as a draft');
  t.equal(partial.json().status, 'draft');
  t.same(partial.json().problems.map((p: { nodeId: string | null; field: string }) => `${p.nodeId}:${p.field}`).sort(), ['end:edges', 'mail:edges', 'mail:next', 'null:nodes']);
  const id = partial.json().id;
  const notReady = await call('POST', `/v1/flows/${id}/launch`);
  t.equal(notReady.statusCode, 422, 'a flow that is not ready cannot be launched');
  t.match(notReady.json().errors, [{ pointer: /\/nodes\// }]);
  const validate = await call('POST', `/v1/flows/${id}/validate`, {});
  t.match(validate.json(), { ready: false });

  const v1 = chain({ id: 'start', type: 'event_trigger', eventType: 'visit' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'pause', type: 'wait', mode: 'fixed', duration: { amount: 1, unit: 'days' } }, { id: 'later', type: 'steps', steps: [r.send(r.reminder)] }, { id: 'end', type: 'exit' });
  const saved = await call('PUT', `/v1/flows/${id}/draft`, { graph: v1 });
  t.equal(saved.statusCode, 200);
  t.match(saved.json(), { version: 2, status: 'ready', problems: [] });
  t.equal((await call('POST', `/v1/flows/${id}/launch`)).json().status, 'active');
  await post(call, 'ann', 'visit');
  await drainFlows(deps);

  // Edit the active flow: a draft is made; the active version keeps running until it is launched.
  const v2 = chain({ id: 'start', type: 'event_trigger', eventType: 'visit' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'pause', type: 'wait', mode: 'fixed', duration: { amount: 1, unit: 'days' } }, { id: 'end', type: 'exit' });
  t.equal((await call('PUT', `/v1/flows/${id}/draft`, { graph: v2 })).json().version, 3);
  t.match((await call('GET', `/v1/flows/${id}`)).json(), { status: 'active', activeVersion: 2, draftVersion: 3, draftStatus: 'ready' });
  const v4 = chain({ id: 'start', type: 'event_trigger', eventType: 'visit' }, { id: 'end', type: 'exit' });
  t.equal((await call('PUT', `/v1/flows/${id}/draft`, { graph: v4 })).json().version, 4, 'a new draft replaces the old one');
  t.equal((await call('DELETE', `/v1/flows/${id}/draft`)).statusCode, 204, 'the draft can be discarded');
  t.equal((await call('GET', `/v1/flows/${id}/draft`)).statusCode, 404);
  t.equal((await call('PUT', `/v1/flows/${id}/draft`, { graph: v2 })).json().version, 5);
  t.equal((await call('POST', `/v1/flows/${id}/launch`)).json().activeVersion, 5);
  const [ann] = await sql`select node_id, version, state from flow_entries where flow_id = ${id}`;
  t.match(ann, { node_id: 'pause', version: 5, state: 'active' }, 'in flight: moved to the same node of the new version');
  clock.advance(DAY);
  await drainFlows(deps);
  t.same(await sentTo(id), ['ann:mail/0'], 'the removed step is not run');

  // A launch that removes the node a customer waits at: they exit with node_removed.
  await post(call, 'bob', 'visit');
  await drainFlows(deps);
  await call('PUT', `/v1/flows/${id}/draft`, { graph: v4 });
  await call('POST', `/v1/flows/${id}/launch`);
  const [bob] = await sql`select e.state, e.exit_reason from flow_entries e join customers c on c.id = e.customer_id where e.flow_id = ${id} and c.external_id = 'bob'`;
  t.match(bob, { state: 'done', exit_reason: 'node_removed' });

  const versions = (await call('GET', `/v1/flows/${id}/versions`)).json().data;
  t.same(versions.map((v: { version: number; status: string }) => `${v.version}:${v.status}`), ['6:active', '5:stopped', '4:discarded', '3:superseded', '2:stopped', '1:superseded']);
  t.ok(versions[1].launchedAt && versions[1].stoppedAt, 'launched and stopped times are kept');
  t.same((await call('GET', `/v1/flows/${id}/versions/2`)).json().graph, v1, 'a version exactly as it ran');

  const copy = await call('POST', `/v1/flows/${id}/duplicate`, { name: 'Copy' });
  t.equal(copy.statusCode, 201);
  t.match(copy.json(), { name: 'Copy', status: 'ready', activeVersion: null, draftVersion: 1 });
  t.same((await call('GET', `/v1/flows/${copy.json().id}/draft`)).json().graph, v4);
  const other = await workspaceWithKey(app);
  t.equal((await other.call('GET', `/v1/flows/${id}`)).statusCode, 404, 'another workspace sees nothing');
  t.equal((await other.call('POST', `/v1/flows/${id}/launch`)).statusCode, 404);
});

t.test('bad input: each a clear answer, the active version untouched', async (t) => {
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const good = chain({ id: 'start', type: 'event_trigger', eventType: 'visit' }, { id: 'end', type: 'exit' });
  const id = await launchFlow(call, { name: 'Guarded', graph: good });
  const cases: [string, unknown, string[]][] = [
    ['an edge to a missing node', { nodes: good.nodes, edges: [{ from: 'start', to: 'nowhere' }] }, ['/graph/edges/0/to']],
    ['an unknown node type', { nodes: [...good.nodes, { id: 'x', type: 'teleport' }], edges: good.edges }, ['/graph/nodes/2/type']],
    ['a wait of -1 days', { nodes: [...good.nodes, { id: 'w', type: 'wait', mode: 'fixed', duration: { amount: -1, unit: 'days' } }], edges: good.edges }, ['/graph/nodes/2/duration/amount']],
    ['a timed delay with no allowed hours', { nodes: [...good.nodes, { id: 'w', type: 'wait', mode: 'timed', days: ['mon'], from: '10:00', to: '10:00' }], edges: good.edges }, ['/graph/nodes/2/to']],
    ['a timed delay with no days', { nodes: [...good.nodes, { id: 'w', type: 'wait', mode: 'timed', days: [], from: '09:00', to: '17:00' }], edges: good.edges }, ['/graph/nodes/2/days']],
    ['shares that do not add up', { nodes: [...good.nodes, { id: 's', type: 'splitter', mode: 'percent', branches: [{ key: 'a', percent: 60 }, { key: 'b', percent: 30 }] }], edges: good.edges }, ['/graph/nodes/2/branches']],
    ['A/B shares that do not add up', { nodes: [...good.nodes, { id: 'ab', type: 'ab_test', variants: [{ key: 'a', share: 50 }], control: 10 }], edges: good.edges }, ['/graph/nodes/2/variants']],
    ['a limitation without a cap', { nodes: [...good.nodes, { id: 'l', type: 'limitation' }], edges: good.edges }, ['/graph/nodes/2/limit']],
    ['a bad filter inside a condition', { nodes: [...good.nodes, { id: 'c', type: 'condition', filter: { type: 'field', field: 'custom.x', op: 'like', value: 1 } }], edges: good.edges }, ['/graph/nodes/2/filter/op']],
    ['a branch a node does not have', { nodes: [...good.nodes, { id: 'c', type: 'condition', filter: { type: 'field', field: 'email', op: 'exists' } }], edges: [...good.edges, { from: 'c', to: 'end', branch: 'maybe' }] }, ['/graph/edges/1/branch']],
    ['two nodes with one id', { nodes: [...good.nodes, { id: 'end', type: 'exit' }], edges: good.edges }, ['/graph/nodes/2/id']],
    ['10,000 nodes', { nodes: Array.from({ length: 10000 }, (_, i) => ({ id: `n${i}`, type: 'exit' })), edges: [] }, ['/graph/nodes']],
  ];
  for (const [what, graph, pointers] of cases) {
    const res = await call('PUT', `/v1/flows/${id}/draft`, { graph });
    t.equal(res.statusCode, 400, what);
    t.same(res.json().errors?.map((e: { pointer: string }) => e.pointer), pointers, `${what}: ${res.json().errors?.[0]?.detail}`);
  }
  t.match((await call('GET', `/v1/flows/${id}`)).json(), { status: 'active', activeVersion: 1, draftVersion: null }, 'nothing saved, the active version untouched');

  // A cycle with no wait, and a send step whose template is gone: saved, but not ready.
  const loop = { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'x' }, { id: 'a', type: 'condition', filter: { type: 'field', field: 'email', op: 'exists' } }, { id: 'b', type: 'steps', steps: [r.send('00000000-0000-4000-8000-000000000000')] }], edges: [{ from: 'start', to: 'a' }, { from: 'a', to: 'b', branch: 'yes' }, { from: 'a', to: 'b', branch: 'no' }, { from: 'b', to: 'a' }] };
  const draft = await call('PUT', `/v1/flows/${id}/draft`, { graph: loop });
  t.equal(draft.json().status, 'draft');
  t.same(draft.json().problems.map((p: { nodeId: string; field: string }) => `${p.nodeId}:${p.field}`).sort(), ['a:edges', 'b:steps/0/templateId']);
  t.match(draft.json().problems.find((p: { field: string }) => p.field === 'edges').detail, /cycle with no wait/);

  // Two launches at once: one wins, the other is a 409.
  await call('PUT', `/v1/flows/${id}/draft`, { graph: good });
  const both = await Promise.all([call('POST', `/v1/flows/${id}/launch`), call('POST', `/v1/flows/${id}/launch`)]);
  t.same(both.map((b) => b.statusCode).sort(), [200, 409]);
  // Two drafts saved at once: the later one wins whole, both are in the history.
  const a = chain({ id: 'start', type: 'event_trigger', eventType: 'a' }, { id: 'end', type: 'exit' });
  const b = chain({ id: 'start', type: 'event_trigger', eventType: 'b' }, { id: 'stop', type: 'exit' });
  const saves = await Promise.all([call('PUT', `/v1/flows/${id}/draft`, { graph: a }), call('PUT', `/v1/flows/${id}/draft`, { graph: b })]);
  const last = saves.map((s) => s.json()).sort((x, y) => y.version - x.version)[0];
  t.same((await call('GET', `/v1/flows/${id}/draft`)).json().graph, last.graph, 'the draft is one save, whole');
  t.equal((await call('POST', `/v1/flows/${id}/resume`)).statusCode, 409, 'resuming an active flow is a conflict');
});

t.test('re-entry: the seed\'s August example (once per 7 days, from the last group of steps)', async (t) => {
  clock.set('2026-08-10T13:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const graph = chain(
    { id: 'start', type: 'event_trigger', eventType: 'session.ended' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] },
    { id: 'later', type: 'wait', mode: 'fixed', duration: { amount: 3, unit: 'days' } }, { id: 'promo', type: 'steps', steps: [r.send(r.reminder)] }, { id: 'end', type: 'exit' },
  );
  const id = await launchFlow(call, { name: 'Sessions', graph, settings: { reentry: { mode: 'period', period: { amount: 7, unit: 'days' } } } });
  const at = async (iso: string) => {
    clock.set(iso);
    await post(call, 'ann', 'session.ended');
    await drainFlows(deps);
  };
  await at('2026-08-10T13:00:00Z');
  clock.set('2026-08-13T13:00:00Z');
  await drainFlows(deps);
  t.same(await sentTo(id), ['ann:mail/0', 'ann:promo/0'], 'the promo code goes out on 13 August: the limit does not affect the current run');
  await at('2026-08-17T13:00:00Z');
  await at('2026-08-20T12:59:00Z');
  t.equal((await sentTo(id)).length, 2, 'no re-entry before 20 August 13:00 (7 days after the last group of steps)');
  await at('2026-08-20T13:00:00Z');
  t.equal((await sentTo(id)).length, 3, 're-entry from 20 August 13:00');
  const blocked = await sql`select count(*)::int as n from flow_entries where flow_id = ${id} and exit_reason = 'reentry_blocked'`;
  t.equal(blocked[0]!.n, 2);

  // once: never again, even after the flow is edited; every_time: each event.
  const onceId = await launchFlow(call, { name: 'Once', graph: chain({ id: 'start', type: 'event_trigger', eventType: 'ping' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }), settings: { reentry: { mode: 'once' } } });
  const everyId = await launchFlow(call, { name: 'Every', graph: chain({ id: 'start', type: 'event_trigger', eventType: 'ping' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }), settings: { reentry: { mode: 'every_time' } } });
  await post(call, 'bob', 'ping');
  await drainFlows(deps);
  await call('PUT', `/v1/flows/${onceId}/draft`, { graph: chain({ id: 'start', type: 'event_trigger', eventType: 'ping' }, { id: 'mail', type: 'steps', steps: [r.send(r.reminder)] }, { id: 'end', type: 'exit' }), settings: { reentry: { mode: 'every_time' } } });
  await call('POST', `/v1/flows/${onceId}/launch`);
  clock.advance(DAY);
  await post(call, 'bob', 'ping');
  await post(call, 'bob', 'ping');
  await post(call, 'cat', 'ping');
  await post(call, 'cat', 'ping');
  await drainFlows(deps);
  t.same(await sentTo(onceId), ['bob:mail/0', 'cat:mail/0', 'cat:mail/0'], 'after the edit to every_time, the new rule applies to newcomers; bob, launched under once, never re-enters');
  t.equal((await sentTo(everyId)).length, 5, 'every_time: each event');
});

t.test('splitter, A/B test and limitation: deterministic per customer, caps shared and exact', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'join' },
      { id: 'split', type: 'splitter', mode: 'percent', branches: [{ key: 'left', percent: 50 }, { key: 'right', percent: 50 }] },
      { id: 'ab', type: 'ab_test', variants: [{ key: 'a', share: 45 }, { key: 'b', share: 45 }], control: 10 },
      { id: 'cap', type: 'limitation', limit: { kind: 'customers', max: 30, period: { amount: 1, unit: 'days' } } },
      { id: 'budget', type: 'limitation', limit: { kind: 'budget', total: 1, costPerCustomer: 0.25 } },
      { id: 'end', type: 'exit' }, { id: 'over', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'split' }, { from: 'split', to: 'ab', branch: 'left' }, { from: 'split', to: 'cap', branch: 'right' },
      { from: 'ab', to: 'end', branch: 'a' }, { from: 'ab', to: 'end', branch: 'b' }, { from: 'ab', to: 'end', branch: 'control' },
      { from: 'cap', to: 'budget' }, { from: 'cap', to: 'over', branch: 'overflow' }, { from: 'budget', to: 'end' }, { from: 'budget', to: 'over', branch: 'overflow' },
    ],
  };
  const id = await launchFlow(call, { name: 'Routing', graph, settings: { reentry: { mode: 'every_time' } } });
  const events = Array.from({ length: 400 }, (_, i) => ({ externalId: `u${i}`, type: 'join' }));
  await call('POST', '/v1/events', { events });
  await drainFlows(deps);
  const stats = (await call('GET', `/v1/flows/${id}/stats?conversionEvent=purchase`)).json();
  const node = (nodeId: string) => stats.nodes.find((n: { nodeId: string }) => n.nodeId === nodeId);
  const { left, right } = node('split').branches;
  t.equal(left + right, 400);
  t.ok(left > 150 && left < 250, `about half go left (${left})`);
  const ab = node('ab').branches;
  t.equal(ab.a + ab.b + ab.control, left);
  t.ok(ab.control > 5 && ab.control < 45, `about 10% held back (${ab.control})`);
  t.same(node('cap').branches, { next: 30, overflow: right - 30 }, 'exactly 30 customers a day');
  t.same(node('budget').branches, { next: 4, overflow: 26 }, 'a budget of 1 at 0.25 each: 4');
  const [{ used }] = (await sql`select used from flow_limits where workspace_id = ${workspaceId} and node_id = 'budget'`) as unknown as [{ used: number }];
  t.equal(used, 1);

  // The same customers again (every_time): the same branches, the cap of a new day.
  const before = await sql`select customer_id, branch from flow_decision_list where flow_id = ${id} and node_id in ('split', 'ab') order by customer_id, node_id`;
  clock.advance(DAY);
  await call('POST', '/v1/events', { events });
  await drainFlows(deps);
  const after = await sql`select customer_id, branch from flow_decision_list where flow_id = ${id} and node_id in ('split', 'ab') and at = ${clock.now()} order by customer_id, node_id`;
  t.same(after.map((r) => `${r.customer_id}${r.branch}`), before.map((r) => `${r.customer_id}${r.branch}`), 'deterministic per customer');
  const day2 = (await call('GET', `/v1/flows/${id}/stats`)).json().nodes.find((n: { nodeId: string }) => n.nodeId === 'cap').branches;
  t.equal(day2.next, 60, 'a new period, 30 more');

  const a = (await sql`select customer_id from flow_decision_list where flow_id = ${id} and node_id = 'ab' and branch = 'a' limit 3`).map((r) => r.customer_id);
  await call('POST', '/v1/events', { events: a.map((customerId) => ({ customerId, type: 'purchase' })) });
  const conv = (await call('GET', `/v1/flows/${id}/stats?conversionEvent=purchase`)).json().nodes.find((n: { nodeId: string }) => n.nodeId === 'ab');
  t.same(conv.conversions, { a: 3 }, 'conversions per variant');

  // Conditions splitter: the first branch that matches, else otherwise.
  const byPlan = await launchFlow(call, {
    name: 'By plan',
    graph: {
      nodes: [
        { id: 'start', type: 'event_trigger', eventType: 'plan' },
        { id: 's', type: 'splitter', mode: 'conditions', otherwise: 'rest', branches: [{ key: 'gold', filter: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } }, { key: 'paid', filter: { type: 'field', field: 'custom.plan', op: 'exists' } }] },
        { id: 'end', type: 'exit' },
      ],
      edges: [{ from: 'start', to: 's' }, { from: 's', to: 'end', branch: 'gold' }, { from: 's', to: 'end', branch: 'paid' }, { from: 's', to: 'end', branch: 'rest' }],
    },
  });
  for (const [name, plan] of [['g', 'gold'], ['s', 'silver'], ['n', undefined]] as const) await call('POST', '/v1/customers', { externalId: `p-${name}`, custom: plan ? { plan } : {} });
  await call('POST', '/v1/events', { events: ['g', 's', 'n'].map((n) => ({ externalId: `p-${n}`, type: 'plan' })) });
  await drainFlows(deps);
  const routed = await sql`select c.external_id, d.branch from flow_decision_list d join customers c on c.id = d.customer_id where d.flow_id = ${byPlan} and d.node_id = 's' order by 1`;
  t.same(routed.map((r) => `${r.external_id}:${r.branch}`), ['p-g:gold', 'p-n:rest', 'p-s:paid']);
});

t.test('waits: fixed, dynamic (a date on the customer), timed (weekdays and hours in the customer\'s zone, across daylight saving)', async (t) => {
  // Friday 27 March 2026, 18:00 UTC (19:00 in Paris); Paris moves to summer time on Sunday 29 March.
  clock.set('2026-03-27T18:00:00Z');
  const { call } = await workspaceWithKey(app);
  await call('POST', '/v1/customers', { externalId: 'paris', timeZone: 'Europe/Paris', custom: { renewsAt: '2026-04-10T12:00:00Z' } });
  await call('POST', '/v1/customers', { externalId: 'tokyo', timeZone: 'Asia/Tokyo', custom: { renewsAt: 'someday' } });
  const id = await launchFlow(call, {
    name: 'Waits',
    graph: chain(
      { id: 'start', type: 'event_trigger', eventType: 'go' },
      { id: 'office', type: 'wait', mode: 'timed', days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:00' },
      { id: 'renewal', type: 'wait', mode: 'dynamic', source: 'customer', field: 'custom.renewsAt', offset: { amount: -3, unit: 'days' } },
      { id: 'end', type: 'exit' },
    ),
  });
  await post(call, 'paris', 'go');
  await post(call, 'tokyo', 'go');
  await drainFlows(deps);
  const wakes = async () => Object.fromEntries((await sql`select c.external_id, e.node_id, e.wake_at, e.state from flow_entries e join customers c on c.id = e.customer_id where e.flow_id = ${id}`).map((r) => [r.external_id, `${r.node_id} ${r.state === 'done' ? 'done' : r.wake_at.toISOString()}`]));
  t.same(await wakes(), { paris: 'office 2026-03-30T07:00:00.000Z', tokyo: 'office 2026-03-30T00:00:00.000Z' }, 'Monday 9:00 local: summer time in Paris, no change in Tokyo');
  clock.set('2026-03-30T07:00:00Z');
  await drainFlows(deps);
  t.same(await wakes(), { paris: 'renewal 2026-04-07T12:00:00.000Z', tokyo: 'end done' }, 'three days before the renewal; no date: go on');
  const [tokyoRenewal] = await sql`select reason from flow_decision_list d join customers c on c.id = d.customer_id where d.flow_id = ${id} and c.external_id = 'tokyo' and d.node_id = 'renewal'`;
  t.same(tokyoRenewal!.reason, { noDate: 'custom.renewsAt' });
});

t.test('steps: fields, consent, points (never below zero), promo codes (one each; an empty pool says so)', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  t.match((await call('POST', '/v1/promo-codes', { pool: 'SUMMER', codes: ['S-1', 'S-2'] })).json(), { pool: 'SUMMER', total: 2, free: 2 });
  const id = await launchFlow(call, {
    name: 'Rewards',
    settings: { reentry: { mode: 'every_time' } },
    graph: chain(
      { id: 'start', type: 'event_trigger', eventType: 'reward' },
      { id: 'give', type: 'steps', steps: [
        { type: 'update_fields', set: { tier: 'vip', trial: null } },
        { type: 'consent', channel: 'sms', status: 'unsubscribed' },
        { type: 'points', delta: 100, reason: 'welcome' },
        { type: 'promo_code', pool: 'SUMMER' },
      ] },
      { id: 'take', type: 'steps', steps: [{ type: 'points', delta: -150 }] },
      { id: 'end', type: 'exit' },
    ),
  });
  for (const name of ['r1', 'r2', 'r3']) await call('POST', '/v1/customers', { externalId: name, custom: { trial: true, keep: 1 } });
  await call('POST', '/v1/events', { events: ['r1', 'r2', 'r3'].map((n) => ({ externalId: n, type: 'reward' })) });
  await drainFlows(deps);
  const r1 = (await call('GET', '/v1/customers?externalId=r1')).json().data[0];
  t.same(r1.custom, { keep: 1, tier: 'vip' }, 'fields merged, null removes');
  const detail = (await call('GET', `/v1/customers/${r1.id}`)).json();
  t.match(detail.consents.find((c: { channel: string }) => c.channel === 'sms'), { status: 'unsubscribed', source: `flow:${id}` });
  const balances = await sql`select distinct on (customer_id) customer_id, balance from points_ledger where workspace_id = ${workspaceId} order by customer_id, at desc, id desc`;
  t.same(balances.map((b) => Number(b.balance)), [100, 100, 100], 'taking 150 of 100 is refused: never below zero');
  const take = await sql`select reason from flow_decision_list where flow_id = ${id} and node_id = 'take'`;
  t.ok(take.every((d) => d.reason.points.skipped === 'insufficient_balance'));
  const give = await sql`select reason from flow_decision_list where flow_id = ${id} and node_id = 'give'`;
  const codes = give.map((d) => d.reason.promoCode);
  t.same(codes.filter((c) => c.code).map((c) => c.code).sort(), ['S-1', 'S-2'], 'each code to one customer');
  t.same(codes.filter((c) => c.skipped), [{ pool: 'SUMMER', skipped: 'pool_empty' }], 'the third finds the pool empty and goes on');
  t.match((await call('GET', '/v1/promo-codes/SUMMER')).json(), { total: 2, issued: 2, free: 0 });
  t.same((await sql`select count(*)::int as n from flow_entries where flow_id = ${id} and exit_reason = 'completed'`)[0]!.n, 3);
});

t.test('pause and resume: waits keep their wake times, what came due runs on resume; nobody enters while paused', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const id = await launchFlow(call, { name: 'Pausable', graph: chain({ id: 'start', type: 'event_trigger', eventType: 'p' }, { id: 'w', type: 'wait', mode: 'fixed', duration: { amount: 1, unit: 'hours' } }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }) });
  await post(call, 'early', 'p');
  await drainFlows(deps);
  t.equal((await call('POST', `/v1/flows/${id}/pause`)).json().status, 'paused');
  await post(call, 'late', 'p');
  clock.advance(2 * HOUR);
  await drainFlows(deps);
  t.same(await sentTo(id), [], 'nothing moves while paused');
  const [e] = await sql`select wake_at, state from flow_entries where flow_id = ${id}`;
  t.match(e, { wake_at: new Date('2026-06-01T11:00:00Z'), state: 'paused' }, 'the wait kept its wake time');
  t.equal((await call('POST', `/v1/flows/${id}/resume`)).json().status, 'active');
  await drainFlows(deps);
  t.same(await sentTo(id), ['early:mail/0'], 'what came due ran on resume; the event during the pause entered nobody');
});

t.test('schedule trigger: a recurring audience entry in a time zone', async (t) => {
  clock.set('2026-06-01T05:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  for (const [n, plan] of [['s1', 'gold'], ['s2', 'gold'], ['s3', 'free']]) await call('POST', '/v1/customers', { externalId: n, custom: { plan } });
  const id = await launchFlow(call, {
    name: 'Daily gold',
    settings: { reentry: { mode: 'every_time' } },
    graph: chain({ id: 'start', type: 'schedule_trigger', audience: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' }, schedule: { cron: '0 9 * * *', timeZone: 'Europe/Paris' } }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }),
  });
  const { enterScheduled } = await import('../src/engine/entries.ts');
  t.equal(await enterScheduled(deps), 0, 'not before 9:00 in Paris');
  clock.set('2026-06-01T07:00:00Z');
  t.equal(await enterScheduled(deps), 2);
  t.equal(await enterScheduled(deps), 0, 'once per occurrence');
  await drainFlows(deps);
  t.same(await sentTo(id), ['s1:mail/0', 's2:mail/0']);
  const [flow] = await sql`select next_schedule_at from flows where id = ${id}`;
  t.same(flow!.next_schedule_at, new Date('2026-06-02T07:00:00Z'));
});

t.test('dry run: what the draft would do over a past period, sending nothing and changing nothing', async (t) => {
  clock.set('2026-06-10T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const r = await refs(call);
  const events = Array.from({ length: 20 }, (_, i) => ({ externalId: `d${i}`, type: 'signup', occurredAt: new Date(Date.parse('2026-06-05T10:00:00Z') + i * 60_000).toISOString() }));
  await call('POST', '/v1/events', { events });
  await call('POST', '/v1/events', { events: [0, 1, 2].map((i) => ({ externalId: `d${i}`, type: 'confirmed', occurredAt: '2026-06-05T12:00:00Z' })) });
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'signup' },
      { id: 'mail', type: 'steps', steps: [{ ...r.send(r.welcome), cost: 0.01 }] },
      { id: 'await', type: 'wait', mode: 'event', eventType: 'confirmed', timeout: { amount: 1, unit: 'days' } },
      { id: 'cap', type: 'limitation', limit: { kind: 'promotions', total: 10 } },
      { id: 'remind', type: 'steps', steps: [{ ...r.send(r.reminder), cost: 0.01 }] },
      { id: 'end', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'mail' }, { from: 'mail', to: 'await' }, { from: 'await', to: 'end', branch: 'event' }, { from: 'await', to: 'cap', branch: 'timeout' },
      { from: 'cap', to: 'remind' }, { from: 'cap', to: 'end', branch: 'overflow' }, { from: 'remind', to: 'end' },
    ],
  };
  const id = (await call('POST', '/v1/flows', { name: 'Dry', graph })).json().id;
  const res = await call('POST', `/v1/flows/${id}/dry-run`, { since: '2026-06-01T00:00:00Z' });
  t.equal(res.statusCode, 200, res.body);
  const report = res.json();
  t.match(report, { version: 1, entries: 20, truncated: false });
  const node = (nodeId: string) => report.nodes.find((n: { nodeId: string }) => n.nodeId === nodeId);
  t.same(node('await').branches, { event: 3, timeout: 17 }, 'waits collapse; the awaited event is looked up in history');
  t.match(node('cap'), { reached: 17, capped: 7, branches: { next: 10, overflow: 7 } });
  t.same(report.messages, [{ nodeId: 'mail', channel: 'email', count: 20, cost: 0.2 }, { nodeId: 'remind', channel: 'email', count: 10, cost: 0.1 }]);
  t.equal(Math.round(report.totalCost * 100) / 100, 0.3);
  const left = await sql`select (select count(*)::int from messages where workspace_id = ${workspaceId}) as m, (select count(*)::int from flow_entries where workspace_id = ${workspaceId}) as e,
    (select count(*)::int from flow_decisions where workspace_id = ${workspaceId}) as d, (select count(*)::int from flow_limits where workspace_id = ${workspaceId}) as l,
    (select count(*)::int from flow_node_counts where workspace_id = ${workspaceId}) as c`;
  t.same(left[0], { m: 0, e: 0, d: 0, l: 0, c: 0 }, 'nothing sent, nothing written, nothing counted');
  t.equal((await call('POST', `/v1/flows/${id}/dry-run`, { since: '2026-06-01T00:00:00Z', version: 'active' })).statusCode, 404, 'no active version yet');
});

t.test('150 nodes run, 1000 are accepted, 1001 are refused', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const nodes: Record<string, unknown>[] = [{ id: 'start', type: 'event_trigger', eventType: 'long' }];
  for (let i = 1; i < 149; i++) nodes.push({ id: `c${i}`, type: 'condition', filter: { type: 'field', field: 'custom.n', op: 'gte', value: i % 3 } });
  nodes.push({ id: 'end', type: 'exit' });
  const edges = nodes.slice(0, -1).flatMap((n, i) => (i === 0 ? [{ from: n.id, to: nodes[1]!.id }] : [{ from: n.id, to: nodes[i + 1]!.id, branch: 'yes' }, { from: n.id, to: 'end', branch: 'no' }]));
  const id = await launchFlow(call, { name: 'Long', graph: { nodes, edges }, settings: { reentry: { mode: 'every_time' } } });
  await call('POST', '/v1/events', { events: Array.from({ length: 50 }, (_, i) => ({ externalId: `l${i}`, type: 'long' })) });
  await sql`update customers set custom = '{"n": 5}' where external_id like 'l%'`;
  await drainFlows(deps);
  const stats = (await call('GET', `/v1/flows/${id}/stats`)).json();
  t.equal(stats.nodes.length, 150);
  t.match(stats.nodes.find((n: { nodeId: string }) => n.nodeId === 'end'), { entered: 50, exited: { completed: 50 } }, 'through 148 conditions to the end');
  const big = { nodes: Array.from({ length: 1000 }, (_, i) => ({ id: `n${i}`, type: 'exit' })), edges: [] };
  t.equal((await call('POST', '/v1/flows', { name: 'Big', graph: big })).statusCode, 201);
  t.equal((await call('POST', '/v1/flows', { name: 'Too big', graph: { nodes: [...big.nodes, { id: 'x', type: 'exit' }], edges: [] } })).statusCode, 400);
});

t.test('with workers running, an event reaches the first step without waiting for a poll', async (t) => {
  const live = await startHerald(t);
  const { call } = await workspaceWithKey(live.app);
  const r = await refs(call);
  const created = (await call('POST', '/v1/flows', { name: 'Live', graph: chain({ id: 'start', type: 'event_trigger', eventType: 'hello' }, { id: 'mail', type: 'steps', steps: [r.send(r.welcome)] }, { id: 'end', type: 'exit' }) })).json();
  await call('POST', `/v1/flows/${created.id}/launch`);
  const liveSql = live.runtime.deps.database.sql;
  const started = Date.now();
  await call('POST', '/v1/events', { externalId: 'quick', type: 'hello' });
  const { eventually } = await import('./helpers/app.ts');
  await eventually(async () => ((await liveSql`select 1 from messages where source_id = ${created.id}`).length ? true : undefined));
  t.ok(Date.now() - started < 10_000, `the first step ran ${Date.now() - started} ms after the event (woken by NOTIFY, not the per-minute tick)`);
});

t.test('each send step of a flow has its own action templates, for its channel, and its messages are assigned those', async (t) => {
  clock.set('2026-06-03T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const sms = (await call('POST', '/v1/channel-configs', { name: 'sms', provider: 'sandbox', channel: 'sms' })).json().id as string;
  const text = (await call('POST', '/v1/templates', { name: 'Text', channel: 'sms', content: { text: 'Hello' } })).json().id as string;
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'hello' },
      { id: 'mail', type: 'steps', steps: [r.send(r.welcome), r.send(r.reminder)] },
      { id: 'text', type: 'steps', steps: [{ type: 'send', channel: 'sms', channelConfigId: sms, templateId: text }] },
      { id: 'end', type: 'exit' },
    ],
    edges: [{ from: 'start', to: 'mail' }, { from: 'mail', to: 'text' }, { from: 'text', to: 'end' }],
  };
  const id = await launchFlow(call, { name: 'Two channels', graph });
  const list = async () => (await call('GET', `/v1/action-templates?sourceType=flow&sourceId=${id}`)).json().data as { stepId: string; kind: string; channel: string; customers: number }[];
  const byStep = (rows: Awaited<ReturnType<typeof list>>) => Object.fromEntries([...new Set(rows.map((a) => a.stepId))].map((s) => [s, rows.filter((a) => a.stepId === s).map((a) => `${a.channel}:${a.kind}`)]));
  const email = ['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed'].map((k) => `email:${k}`);
  t.same(byStep(await list()), { 'mail/0': email, 'mail/1': email, 'text/0': ['sms:sent', 'sms:delivered', 'sms:unsubscribed', 'sms:not_sent', 'sms:failed'] }, 'generated at launch, a set per send step');

  await call('POST', '/v1/customers', { externalId: 'two', email: 'two@x.io', phone: '+33612345670' });
  await call('POST', '/v1/customers', { externalId: 'mailonly', email: 'm@x.io' });
  await call('POST', '/v1/events', { events: ['two', 'mailonly'].map((externalId) => ({ externalId, type: 'hello' })) });
  await drainFlows(deps);
  await sendDueMessages(deps);
  const sent = (await list()).filter((a) => a.customers > 0).map((a) => `${a.stepId} ${a.kind} ${a.customers}`).sort();
  t.same(sent, ['mail/0 sent 2', 'mail/1 sent 2', 'text/0 not_sent 1', 'text/0 sent 1'], 'each message assigned its own step\'s templates (no phone: not_sent on the SMS step)');
});
