// Flow stats as the engine keeps them (flow_node_counts): the same numbers the decisions give
// (distinct entries per node, decisions per node and branch) through waits, which decide on
// arrival and on leaving, and a cycle that brings every entry back to the same nodes; folded
// into one row per node and branch without changing a number, also while ticks run.
import t, { type Test } from 'tap';
import { drainFlows } from '../src/engine/engine.ts';
import { compactFlowCounts } from '../src/modules/flows/flows.stats.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const HOUR = 3_600_000;

interface NodeStats {
  nodeId: string;
  entered: number;
  branches: Record<string, number>;
}

/** What the stats were before the counts: counted from every decision of the flow. */
async function fromDecisions(workspaceId: string, flowId: string) {
  const entered = await sql<{ node_id: string; n: number }[]>`
    select node_id, count(distinct entry_id)::int as n from flow_decision_list where workspace_id = ${workspaceId} and flow_id = ${flowId} group by 1`;
  const branches = await sql<{ node_id: string; branch: string; n: number }[]>`
    select node_id, branch, count(*)::int as n from flow_decision_list where workspace_id = ${workspaceId} and flow_id = ${flowId} and branch is not null group by 1, 2`;
  return (nodeId: string) => ({
    entered: entered.find((r) => r.node_id === nodeId)?.n ?? 0,
    branches: Object.fromEntries(branches.filter((r) => r.node_id === nodeId).map((r) => [r.branch || 'next', r.n])),
  });
}

async function stats(call: Call, flowId: string): Promise<NodeStats[]> {
  const res = await call('GET', `/v1/flows/${flowId}/stats`);
  if (res.statusCode !== 200) throw new Error(res.body);
  return res.json().nodes;
}

async function matchesDecisions(t: Test, call: Call, workspaceId: string, flowId: string, label: string) {
  const expected = await fromDecisions(workspaceId, flowId);
  const nodes = await stats(call, flowId);
  for (const n of nodes) t.same({ entered: n.entered, branches: n.branches }, expected(n.nodeId), `${label}: ${n.nodeId} as the decisions count it`);
  return nodes;
}

const countRows = async (flowId: string) => (await sql<{ n: number }[]>`select count(*)::int as n from flow_node_counts where flow_id = ${flowId}`)[0]!.n;

t.test('waits and a cycle: each entry counted once per node, every decision once per branch; folding changes no number', async (t) => {
  clock.set('2026-07-01T08:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  // Every hour without a 'stop' the entry goes round again: w (wait) -> again -> w.
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'join' },
      { id: 'ab', type: 'ab_test', variants: [{ key: 'a', share: 45 }, { key: 'b', share: 45 }], control: 10 },
      { id: 'w', type: 'wait', mode: 'event', eventType: 'stop', timeout: { amount: 1, unit: 'hours' } },
      { id: 'again', type: 'steps', steps: [{ type: 'update_fields', set: { looped: true } }] },
      { id: 'done', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'ab' }, { from: 'ab', to: 'w', branch: 'a' }, { from: 'ab', to: 'w', branch: 'b' }, { from: 'ab', to: 'w', branch: 'control' },
      { from: 'w', to: 'again', branch: 'timeout' }, { from: 'again', to: 'w' }, { from: 'w', to: 'done', branch: 'event' },
    ],
  };
  const created = await call('POST', '/v1/flows', { name: 'Round and round', graph });
  t.equal(created.statusCode, 201, created.body);
  const id = created.json().id as string;
  t.equal((await call('POST', `/v1/flows/${id}/launch`)).statusCode, 200);

  await call('POST', '/v1/events', { events: Array.from({ length: 20 }, (_, i) => ({ externalId: `c${i}`, type: 'join', occurredAt: clock.now().toISOString() })) });
  await drainFlows(deps);
  await matchesDecisions(t, call, workspaceId, id, 'joined');
  for (let round = 1; round <= 3; round++) {
    clock.advance(HOUR);
    await drainFlows(deps);
  }
  let nodes = await matchesDecisions(t, call, workspaceId, id, 'three rounds');
  const node = (nodeId: string) => nodes.find((n) => n.nodeId === nodeId)!;
  t.equal(node('w').entered, 20, 'the wait is entered once per entry, though each arrived and left three times');
  t.equal(node('again').entered, 20, 'the cycle\'s node is entered once per entry, though passed three times');
  t.same(node('w').branches, { timeout: 60 }, 'every leaving counted');
  t.same(node('again').branches, { next: 60 });

  // Five stop; the others go round once more.
  await call('POST', '/v1/events', { events: Array.from({ length: 5 }, (_, i) => ({ externalId: `c${i}`, type: 'stop', occurredAt: clock.now().toISOString() })) });
  await drainFlows(deps);
  clock.advance(HOUR);
  await drainFlows(deps);
  nodes = await matchesDecisions(t, call, workspaceId, id, 'five stopped');
  t.equal(node('done').entered, 5);
  t.same(node('w').branches, { timeout: 75, event: 5 });

  const before = await countRows(id);
  t.ok(before > 8, `one row per node and branch per tick before folding (${before})`);
  await compactFlowCounts(sql, before);
  t.equal(await countRows(id), before, 'a flow with no more rows than the threshold is left alone');
  t.ok((await compactFlowCounts(sql, 0)) >= 1, 'the flow was folded');
  const groups = (await sql<{ n: number }[]>`select count(*)::int as n from (select distinct node_id, branch from flow_node_counts where flow_id = ${id}) g`)[0]!.n;
  t.equal(await countRows(id), groups, `one row per node and branch after (${groups})`);
  t.same(await stats(call, id), nodes, 'the same numbers after folding');

  // Folds and ticks at once: each fold sums only what it deleted, ticks append beside it.
  clock.advance(HOUR);
  await Promise.all([drainFlows(deps), compactFlowCounts(sql, 0), compactFlowCounts(sql, 0)]);
  await compactFlowCounts(sql, 0);
  nodes = await matchesDecisions(t, call, workspaceId, id, 'folded while ticking');
  t.same(node('w').branches, { timeout: 90, event: 5 });
});

t.test('counts are the flow\'s own: another workspace\'s flow with the same node ids does not add up', async (t) => {
  clock.set('2026-07-02T08:00:00Z');
  const graph = { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'go' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] };
  const flows: { call: Call; id: string }[] = [];
  for (const n of [3, 4]) {
    const { call } = await workspaceWithKey(app);
    const id = (await call('POST', '/v1/flows', { name: 'Same ids', graph })).json().id as string;
    await call('POST', `/v1/flows/${id}/launch`);
    await call('POST', '/v1/events', { events: Array.from({ length: n }, (_, i) => ({ externalId: `g${i}`, type: 'go' })) });
    flows.push({ call, id });
  }
  await drainFlows(deps);
  await compactFlowCounts(sql, 0);
  t.same((await stats(flows[0]!.call, flows[0]!.id)).map((n) => n.entered), [3, 3]);
  t.same((await stats(flows[1]!.call, flows[1]!.id)).map((n) => n.entered), [4, 4]);
});
