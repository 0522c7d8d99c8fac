// Live per-node counts of a flow, and the dry run: the draft (or the active version) run
// against real customers and the events of a past period, with waits collapsed, in a
// transaction that is rolled back, so that nothing is sent and nothing changes.
import type { Sql } from 'postgres';
import type { Deps } from '../../deps.ts';
import { notFound } from '../../http/errors.ts';
import { newId } from '../../ids.ts';
import { compileAudience, matchingIdsSql } from '../../audience/audience.service.ts';
import { advance, type Entry, type Run } from '../../engine/engine.ts';
import type { FlowGraph } from './flows.graph.ts';
import type { DryRunBody, StatsQuery } from './flows.schemas.ts';
import { findFlow, versionRow, withDefaultConfigs } from './flows.service.ts';

type D = Pick<Deps, 'database' | 'clock' | 'boss'>;

export async function flowStats(deps: D, workspaceId: string, id: string, q: StatsQuery) {
  const { sql } = deps.database;
  const flow = await findFlow(sql, workspaceId, id);
  const version = flow.active_version ?? flow.draft_version;
  const graph: FlowGraph = version ? (await versionRow(sql, workspaceId, id, version)).graph : { nodes: [], edges: [] };
  // The counts the engine keeps as it decides (flow_node_counts): O(rows since the last fold), not O(decisions).
  const [counts, here, totals] = await Promise.all([
    sql<{ node_id: string; branch: string | null; entered: number; decisions: number }[]>`
      select node_id, branch, sum(entered)::float8 as entered, sum(decisions)::float8 as decisions from flow_node_counts
      where workspace_id = ${workspaceId} and flow_id = ${id} group by 1, 2`,
    sql<{ node_id: string; state: string; exit_reason: string | null; n: number }[]>`select node_id, state, exit_reason, count(*)::int as n from flow_entries where workspace_id = ${workspaceId} and flow_id = ${id} group by 1, 2, 3`,
    sql<{ state: string; n: number }[]>`select state, count(*)::int as n from flow_entries where workspace_id = ${workspaceId} and flow_id = ${id} group by 1`,
  ]);
  const conversions = new Map<string, Record<string, number>>();
  if (q.conversionEvent) {
    for (const node of graph.nodes.filter((n) => n.type === 'ab_test')) {
      const rows = await sql<{ branch: string; n: number }[]>`
        select d.branch, count(distinct d.customer_id)::int as n from flow_decision_list d
        where d.workspace_id = ${workspaceId} and d.flow_id = ${id} and d.node_id = ${node.id} and d.branch is not null
          and exists (select 1 from events e where e.workspace_id = d.workspace_id and e.customer_id = d.customer_id and e.type = ${q.conversionEvent} and e.occurred_at >= d.at)
        group by 1`;
      conversions.set(node.id, Object.fromEntries(rows.map((r) => [r.branch, r.n])));
    }
  }
  return {
    nodes: graph.nodes.map((node) => ({
      nodeId: node.id, type: node.type,
      entered: counts.filter((r) => r.node_id === node.id && r.branch === null).reduce((s, r) => s + r.entered, 0),
      waiting: here.filter((r) => r.node_id === node.id && r.state !== 'done').reduce((s, r) => s + r.n, 0),
      branches: Object.fromEntries(counts.filter((r) => r.node_id === node.id && r.branch !== null).map((r) => [r.branch || 'next', r.decisions])),
      exited: Object.fromEntries(here.filter((r) => r.node_id === node.id && r.state === 'done').map((r) => [r.exit_reason ?? 'unknown', r.n])),
      ...(conversions.has(node.id) ? { conversions: conversions.get(node.id)! } : {}),
    })),
    entries: { active: 0, paused: 0, done: 0, ...Object.fromEntries(totals.map((r) => [r.state, r.n])) },
  };
}

/** Flows with more count rows than this are folded by compactFlowCounts. */
const FOLD_ABOVE = 64;

/**
 * Folds the count rows of each flow that has piled up more than `above` into one row per node
 * and branch. One statement per flow deletes the rows it sums and inserts the sums, so a reader
 * sees the rows before or after, never half; rows a tick adds meanwhile are not in its snapshot
 * and stay; two folds of one flow at once each sum only the rows they deleted. Returns the
 * number of flows folded.
 */
export async function compactFlowCounts(sql: Sql, above = FOLD_ABOVE): Promise<number> {
  const flows = await sql<{ workspace_id: string; flow_id: string }[]>`
    select workspace_id, flow_id from flow_node_counts group by 1, 2 having count(*) > ${above}`;
  for (const f of flows) {
    await sql`
      with gone as (
        delete from flow_node_counts where workspace_id = ${f.workspace_id} and flow_id = ${f.flow_id}
        returning node_id, branch, entered, decisions
      )
      insert into flow_node_counts (workspace_id, id, flow_id, node_id, branch, entered, decisions)
      select ${f.workspace_id}, gen_random_uuid(), ${f.flow_id}, node_id, branch, sum(entered), sum(decisions) from gone group by node_id, branch`;
  }
  return flows.length;
}

class RolledBack extends Error {}

export async function dryRun(deps: D, workspaceId: string, id: string, body: DryRunBody) {
  const { sql } = deps.database;
  const flow = await findFlow(sql, workspaceId, id);
  const version = body.version === 'active' ? flow.active_version : flow.draft_version;
  if (!version) throw notFound(body.version === 'active' ? 'The active version of this flow' : 'The draft of this flow');
  const { graph } = await versionRow(sql, workspaceId, id, version);
  const now = deps.clock.now();
  const until = body.until ? new Date(body.until) : now;
  const limit = body.limit ?? 10_000;
  let report: Awaited<ReturnType<typeof summarize>> | undefined;
  try {
    await sql.begin(async (tx) => {
      // Its send steps as a launch would have them (the channels' defaults written in), for this
      // transaction only: it is rolled back.
      const filled = await withDefaultConfigs(tx, workspaceId, graph, 'dry-run');
      if (filled !== graph) await tx`update flow_versions set graph = ${JSON.stringify(filled)}::jsonb where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${version}`;
      const entries: Entry[] = [];
      const entry = (customerId: string, nodeId: string, context: Record<string, unknown>, at: Date): Entry => ({
        workspaceId, id: newId(), flowId: id, customerId, version, nodeId, context, enteredAt: at, state: 'active', wakeAt: now, waitingFor: null, exitReason: null, hops: 0,
      });
      for (const node of graph.nodes) {
        if (entries.length > limit) break;
        if (node.type === 'event_trigger') {
          const events = await tx<{ id: string; customer_id: string; type: string; properties: Record<string, unknown>; occurred_at: Date }[]>`
            select id, customer_id, type, properties, occurred_at from events
            where workspace_id = ${workspaceId} and type = ${node.eventType} and occurred_at >= ${new Date(body.since)} and occurred_at <= ${until}
            order by occurred_at limit ${limit + 1 - entries.length}`;
          for (const e of events) entries.push(entry(e.customer_id, node.id, { event: { id: e.id, type: e.type, properties: e.properties, occurredAt: e.occurred_at.toISOString() } }, e.occurred_at));
        }
        if (node.type === 'schedule_trigger') {
          const compiled = await compileAudience(tx, { workspaceId, filter: node.audience, now }, 'all', '/audience');
          const rows = await tx.unsafe<{ id: string }[]>(`${matchingIdsSql(compiled)} limit ${limit + 1 - entries.length}`, compiled.params as never[]);
          for (const r of rows) entries.push(entry(r.id, node.id, { schedule: 'dry-run' }, now));
        }
      }
      const truncated = entries.length > limit;
      const simulated = entries.slice(0, limit);
      const sent: Run['sent'] = [];
      const decisions = simulated.length ? await advance(tx, deps, simulated, { now, dry: true, sent }) : [];
      report = summarize(version, graph, simulated.length, truncated, decisions, sent);
      throw new RolledBack();
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
  }
  return report!;
}

function summarize(version: number, graph: FlowGraph, entries: number, truncated: boolean, decisions: Awaited<ReturnType<typeof advance>>, sent: Run['sent']) {
  const messages = new Map<string, { nodeId: string; channel: string; count: number; cost: number }>();
  for (const s of sent) {
    const key = `${s.nodeId}\u0000${s.channel}`;
    const m = messages.get(key) ?? { nodeId: s.nodeId, channel: s.channel, count: 0, cost: 0 };
    m.count += s.count;
    m.cost += s.cost;
    messages.set(key, m);
  }
  const list = [...messages.values()];
  const byNode = new Map<string, typeof decisions>();
  for (const d of decisions) {
    const list = byNode.get(d.nodeId);
    if (list) list.push(d);
    else byNode.set(d.nodeId, [d]);
  }
  return {
    version, entries, truncated,
    nodes: graph.nodes.map((node) => {
      const mine = byNode.get(node.id) ?? [];
      const branches: Record<string, number> = {};
      for (const d of mine) if (d.branch !== null) branches[d.branch || 'next'] = (branches[d.branch || 'next'] ?? 0) + 1;
      return { nodeId: node.id, type: node.type, reached: new Set(mine.map((d) => d.entry.id)).size, branches, capped: node.type === 'limitation' ? (branches.overflow ?? 0) : 0 };
    }),
    messages: list,
    totalCost: list.reduce((s, m) => s + m.cost, 0),
  };
}
