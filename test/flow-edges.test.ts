// Flows at their edges, from an audit (each test failed before its fix): entries made on an old
// view of the flow (another process's pause or launch), customers held by a node whose kind
// changed, a one-off schedule already past, and a dry run that must lock nothing live needs.
import t from 'tap';
import { drainFlows, STRAY_RECHECK_MS } from '../src/engine/engine.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const HOUR = 3_600_000;

async function refs(call: Call) {
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'news@acme.example' } })).json();
  const tpl = (await call('POST', '/v1/templates', { name: 'T', channel: 'email', content: { subject: 'S', html: '<p>x</p>' } })).json();
  return { send: { type: 'send', channel: 'email', channelConfigId: config.id, templateId: tpl.id } };
}
const chain = (...nodes: Record<string, unknown>[]) => ({ nodes, edges: nodes.slice(1).map((n, i) => ({ from: nodes[i]!.id as string, to: n.id as string })) });
async function launch(call: Call, body: Record<string, unknown>): Promise<string> {
  const c = await call('POST', '/v1/flows', body);
  if (c.statusCode !== 201) throw new Error(c.body);
  const l = await call('POST', `/v1/flows/${c.json().id}/launch`);
  if (l.statusCode !== 200) throw new Error(l.body);
  return c.json().id;
}
const post = (call: Call, externalId: string, type: string, properties: Record<string, unknown> = {}) =>
  call('POST', '/v1/events', { externalId, type, properties, occurredAt: clock.now().toISOString() });
const sentTo = async (flowId: string) => (await sql<{ external_id: string; step_id: string }[]>`
  select c.external_id, m.step_id from messages m join customers c on c.id = m.customer_id where m.source_id = ${flowId} order by 1, 2`).map((r) => `${r.external_id}:${r.step_id}`);

t.test('a flow paused by another process (its flow index cached here): nothing is sent, the entry waits paused with the flow', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const r = await refs(call);
  const id = await launch(call, { name: 'P', settings: { reentry: { mode: 'every_time' } }, graph: chain({ id: 'start', type: 'event_trigger', eventType: 'p' }, { id: 'mail', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }) });
  await post(call, 'warm', 'p'); // this process caches the workspace's flow index (5 s)
  await drainFlows(deps);
  // What setRunning does in ANOTHER process: its flowIndex.forget() does not reach this one.
  await sql`update flows set status = 'paused' where workspace_id = ${workspaceId} and id = ${id}`;
  await sql`update flow_entries set state = 'paused' where workspace_id = ${workspaceId} and flow_id = ${id} and state = 'active'`;
  await post(call, 'late', 'p');
  await drainFlows(deps);
  t.same(await sentTo(id), ['warm:mail/0'], 'nothing is sent while paused');
  const [late] = await sql<{ state: string; wake_at: Date }[]>`select e.state, e.wake_at from flow_entries e join customers c on c.id = e.customer_id where e.flow_id = ${id} and c.external_id = 'late'`;
  t.match(late, { state: 'active' }, 'the entry the stale index let in waits, active (a resume meanwhile must not miss it)');
  t.equal(late!.wake_at.getTime(), clock.now().getTime() + STRAY_RECHECK_MS, 'looked at again later');
  t.equal((await call('POST', `/v1/flows/${id}/resume`)).statusCode, 200);
  clock.advance(STRAY_RECHECK_MS);
  await drainFlows(deps);
  t.same(await sentTo(id), ['late:mail/0', 'warm:mail/0'], 'and runs once the flow is active again');
});

t.test('after a launch in another process, an entry made on the old version runs the new one', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const id = await launch(call, { name: 'V', settings: { reentry: { mode: 'every_time' } }, graph: chain({ id: 'start', type: 'event_trigger', eventType: 'v' }, { id: 'old', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }) });
  await post(call, 'warm', 'v');
  await drainFlows(deps);
  await call('PUT', `/v1/flows/${id}/draft`, { graph: chain({ id: 'start', type: 'event_trigger', eventType: 'v' }, { id: 'new', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }) });
  const { flowIndex } = await import('../src/engine/entries.ts');
  const forget = flowIndex.forget;
  flowIndex.forget = () => {}; // the launch happens "elsewhere": this process's index is not told
  await call('POST', `/v1/flows/${id}/launch`);
  flowIndex.forget = forget;
  await post(call, 'after', 'v');
  await drainFlows(deps);
  t.same(await sentTo(id), ['after:new/0', 'warm:old/0'], 'the customer who came after the launch gets the new version');
});

t.test('a wait replaced by a condition of the same id: customers there are not held to the old wait', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  const id = await launch(call, { name: 'L', graph: chain({ id: 'start', type: 'event_trigger', eventType: 'l' }, { id: 'x', type: 'wait', mode: 'fixed', duration: { amount: 7, unit: 'days' } }, { id: 'mail', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }) });
  await post(call, 'cat', 'l');
  await drainFlows(deps);
  const put = await call('PUT', `/v1/flows/${id}/draft`, {
    graph: { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'l' }, { id: 'x', type: 'condition', filter: { type: 'field', field: 'custom.vip', op: 'exists' } }, { id: 'mail', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }],
      edges: [{ from: 'start', to: 'x' }, { from: 'x', to: 'mail', branch: 'no' }, { from: 'x', to: 'end', branch: 'yes' }, { from: 'mail', to: 'end' }] },
  });
  t.equal(put.statusCode, 200, put.body);
  t.equal((await call('POST', `/v1/flows/${id}/launch`)).statusCode, 200);
  clock.advance(HOUR);
  await drainFlows(deps);
  t.same(await sentTo(id), ['cat:mail/0'], 'the condition ran within the hour, not 7 days later');
});

t.test('a one-off schedule already past is a problem: the launch is refused, not a flow that never fires', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const r = await refs(call);
  await call('POST', '/v1/customers', { externalId: 's1' });
  const c = await call('POST', '/v1/flows', { name: 'S', graph: chain({ id: 'start', type: 'schedule_trigger', audience: { type: 'field', field: 'externalId', op: 'eq', value: 's1' }, schedule: { at: '2026-06-01T09:00:00Z' } }, { id: 'mail', type: 'steps', steps: [r.send] }, { id: 'end', type: 'exit' }) });
  t.match(c.json().problems, [{ nodeId: 'start', field: 'schedule/at', detail: /in the past/ }], 'saved with the problem named');
  const l = await call('POST', `/v1/flows/${c.json().id}/launch`);
  t.equal(l.statusCode, 422, l.body);
  t.match(l.json().errors, [{ pointer: '/nodes/start/schedule/at' }]);
});

t.test('a dry run locks no promo code: a live customer during it gets the only free code', async (t) => {
  clock.set('2026-06-10T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  await call('POST', '/v1/promo-codes', { pool: 'P', codes: ['P-1'] });
  await call('POST', '/v1/events', { externalId: 'dry', type: 'buy', occurredAt: '2026-06-05T10:00:00Z' });
  const dryCustomer = (await sql`select id from customers where workspace_id = ${workspaceId} and external_id = 'dry'`)[0]!.id as string;
  const id = await launch(call, { name: 'Promo', settings: { reentry: { mode: 'every_time' } }, graph: chain({ id: 'start', type: 'event_trigger', eventType: 'buy' }, { id: 'give', type: 'steps', steps: [{ type: 'promo_code', pool: 'P' }] }, { id: 'end', type: 'exit' }) });
  await call('PUT', `/v1/flows/${id}/draft`, { graph: chain({ id: 'start', type: 'event_trigger', eventType: 'buy' }, { id: 'give', type: 'steps', steps: [{ type: 'promo_code', pool: 'P' }, { type: 'points', delta: 1 }] }, { id: 'end', type: 'exit' }) });
  // Hold the points step's per-customer lock so the dry run pauses right after it took the codes (stands for a slow dry run).
  const other = await sql.reserve();
  await other`begin`;
  await other`select pg_advisory_xact_lock(hashtextextended(${workspaceId} || ${dryCustomer}::text, 7))`;
  const dry = call('POST', `/v1/flows/${id}/dry-run`, { since: '2026-06-01T00:00:00Z' });
  for (let i = 0; i < 100; i++) {
    const [w] = await sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted`;
    if (w!.n > 0) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  await post(call, 'live', 'buy');
  await drainFlows(deps);
  await other`commit`;
  other.release();
  t.equal((await dry).statusCode, 200);
  const [d] = await sql`select reason from flow_decision_list d join customers c on c.id = d.customer_id where d.flow_id = ${id} and c.external_id = 'live' and d.node_id = 'give'`;
  t.same(d?.reason.promoCode, { pool: 'P', code: 'P-1' }, 'the live customer gets the only free code');
});
