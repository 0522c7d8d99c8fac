// Flows: the life cycle of maestra-flows.md. A flow has at most one draft and one active
// version; every save of the draft is a version row of its own (the history), launching the
// draft makes it the active version and moves customers in flight to the same node id.
import type { Sql, TransactionSql } from 'postgres';
import type { Deps } from '../../deps.ts';
import { conflict, invalid, notFound, unprocessable } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { newId } from '../../ids.ts';
import { channelDefaultLock, defaultConfigIds } from '../channels/channels.service.ts';
import { ensureActionTemplates } from '../messages/action-templates.ts';
import { flowIndex, flowsChanged, wake } from '../../engine/entries.ts';
import { nextScheduleAt } from '../../engine/schedule.ts';
import { nodeKind, type FlowGraph } from './flows.graph.ts';
import type { CreateFlowBody, Flow, FlowSettings, FlowVersion, ListFlowsQuery, SaveDraftBody } from './flows.schemas.ts';
import { checkGraph, graphProblems, type Problem } from './flows.validate.ts';

type D = Pick<Deps, 'database' | 'clock' | 'boss'>;
type Db = Sql | TransactionSql;

interface FlowRow {
  workspace_id: string;
  id: string;
  name: string;
  status: Flow['status'];
  active_version: number | null;
  draft_version: number | null;
  created_at: Date;
  updated_at: Date;
}
interface VersionRow {
  version: number;
  graph: FlowGraph;
  settings: FlowSettings;
  problems: Problem[];
  drafted_at: Date;
  launched_at: Date | null;
  stopped_at: Date | null;
  discarded_at: Date | null;
}

const EMPTY: FlowGraph = { nodes: [], edges: [] };
const iso = (d: Date | null) => (d ? d.toISOString() : null);

async function findFlow(db: Db, workspaceId: string, id: string, lock = false): Promise<FlowRow> {
  const [row] = await db<FlowRow[]>`select * from flows where workspace_id = ${workspaceId} and id = ${id} and deleted_at is null ${lock ? db`for update` : db``}`;
  if (!row) throw notFound('Flow');
  return row;
}

async function versionRow(db: Db, workspaceId: string, flowId: string, version: number): Promise<VersionRow> {
  const [row] = await db<VersionRow[]>`select * from flow_versions where workspace_id = ${workspaceId} and flow_id = ${flowId} and version = ${version}`;
  if (!row) throw notFound(`Version ${version} of the flow`);
  return row;
}

/** Flows with what their answer needs of their draft and active versions, in one query. */
async function flowViews(db: Db, workspaceId: string, where: { id?: string; after?: string; limit?: number }): Promise<Flow[]> {
  const rows = await db<(FlowRow & { draft_problems: Problem[] | null; settings: FlowSettings | null })[]>`
    select f.*, dv.problems as draft_problems, coalesce(av.settings, dv.settings) as settings
    from flows f
    left join flow_versions dv on dv.workspace_id = f.workspace_id and dv.flow_id = f.id and dv.version = f.draft_version
    left join flow_versions av on av.workspace_id = f.workspace_id and av.flow_id = f.id and av.version = f.active_version
    where f.workspace_id = ${workspaceId} and f.deleted_at is null
      ${where.id ? db`and f.id = ${where.id}` : db``} ${where.after ? db`and f.id > ${where.after}` : db``}
    order by f.id ${where.limit ? db`limit ${where.limit}` : db``}`;
  return rows.map((row) => {
    const draftStatus = row.draft_version ? (row.draft_problems?.length ? 'draft' : 'ready') : null;
    return {
      id: row.id, name: row.name,
      status: row.active_version ? row.status : (draftStatus ?? 'draft'),
      activeVersion: row.active_version, draftVersion: row.draft_version, draftStatus,
      problems: row.draft_problems ?? [],
      settings: row.settings ?? {},
      createdAt: row.created_at.toISOString(), updatedAt: row.updated_at.toISOString(),
    };
  });
}

async function toFlow(db: Db, row: FlowRow): Promise<Flow> {
  const [flow] = await flowViews(db, row.workspace_id, { id: row.id });
  if (!flow) throw notFound('Flow');
  return flow;
}

function versionStatus(row: FlowRow, v: VersionRow): FlowVersion['status'] {
  if (v.version === row.active_version) return row.status === 'paused' ? 'paused' : 'active';
  if (v.version === row.draft_version) return v.problems.length ? 'draft' : 'ready';
  if (v.launched_at) return 'stopped';
  return v.discarded_at ? 'discarded' : 'superseded';
}

const toVersion = (row: FlowRow, v: VersionRow): FlowVersion => ({
  version: v.version, status: versionStatus(row, v), graph: v.graph, settings: v.settings, problems: v.problems,
  draftedAt: v.drafted_at.toISOString(), launchedAt: iso(v.launched_at), stoppedAt: iso(v.stopped_at),
});

/** Checks a graph (400 on faults of shape) and lists what keeps it from being ready. */
export async function checkedGraph(sql: Sql, workspaceId: string, graph: unknown, now: Date, settings?: FlowSettings): Promise<{ graph: FlowGraph; problems: Problem[] }> {
  const errors = checkGraph(graph);
  if (settings?.reentry?.mode === 'period' && !settings.reentry.period) errors.push({ pointer: '/settings/reentry/period', detail: 'a period re-entry needs the period' });
  if (settings?.startAt && settings.endAt && Date.parse(settings.endAt) <= Date.parse(settings.startAt)) errors.push({ pointer: '/settings/endAt', detail: 'is before startAt' });
  if (errors.length) throw invalid('The flow is not valid', errors);
  return { graph: graph as FlowGraph, problems: await graphProblems(sql, workspaceId, graph as FlowGraph, now) };
}

async function saveVersion(tx: TransactionSql, workspaceId: string, flowId: string, graph: FlowGraph, settings: FlowSettings, problems: Problem[], now: Date): Promise<number> {
  const [{ next }] = (await tx<{ next: number }[]>`select coalesce(max(version), 0) + 1 as next from flow_versions where workspace_id = ${workspaceId} and flow_id = ${flowId}`) as unknown as [{ next: number }];
  await tx`
    insert into flow_versions (workspace_id, flow_id, version, graph, settings, problems, drafted_at)
    values (${workspaceId}, ${flowId}, ${next}, ${JSON.stringify(graph)}::jsonb, ${JSON.stringify(settings)}::jsonb, ${JSON.stringify(problems)}::jsonb, ${now})`;
  return next;
}

export async function createFlow(deps: D, workspaceId: string, body: CreateFlowBody): Promise<Flow> {
  const { sql } = deps.database;
  const { graph, problems } = await checkedGraph(sql, workspaceId, body.graph ?? EMPTY, deps.clock.now(), body.settings);
  const now = deps.clock.now();
  const id = newId();
  await sql.begin(async (tx) => {
    await tx`insert into flows (workspace_id, id, name, status, created_at, updated_at) values (${workspaceId}, ${id}, ${body.name}, 'draft', ${now}, ${now})`;
    const version = await saveVersion(tx, workspaceId, id, graph, body.settings ?? {}, problems, now);
    await tx`update flows set draft_version = ${version} where workspace_id = ${workspaceId} and id = ${id}`;
  });
  return toFlow(sql, await findFlow(sql, workspaceId, id));
}

export async function getFlow(deps: D, workspaceId: string, id: string): Promise<Flow> {
  return toFlow(deps.database.sql, await findFlow(deps.database.sql, workspaceId, id));
}

export async function listFlows(deps: D, workspaceId: string, q: ListFlowsQuery) {
  const { sql } = deps.database;
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const rows = await flowViews(sql, workspaceId, { ...(after ? { after: after[0] as string } : {}), limit: limit + 1 });
  return pageOf(rows, limit, (r) => [r.id]);
}

/** Saves a new draft (each save is kept as a version; the latest is the draft). Two saves at once: the later one wins whole. */
export async function saveDraft(deps: D, workspaceId: string, id: string, body: SaveDraftBody): Promise<FlowVersion> {
  const { sql } = deps.database;
  const { graph, problems } = await checkedGraph(sql, workspaceId, body.graph, deps.clock.now(), body.settings);
  const now = deps.clock.now();
  return sql.begin(async (tx) => {
    const row = await findFlow(tx, workspaceId, id, true);
    const settings = body.settings ?? (row.draft_version ? (await versionRow(tx, workspaceId, id, row.draft_version)).settings : row.active_version ? (await versionRow(tx, workspaceId, id, row.active_version)).settings : {});
    const version = await saveVersion(tx, workspaceId, id, graph, settings, problems, now);
    const [updated] = await tx<FlowRow[]>`
      update flows set draft_version = ${version}, name = ${body.name ?? row.name}, updated_at = ${now}
      where workspace_id = ${workspaceId} and id = ${id} returning *`;
    return toVersion(updated!, await versionRow(tx, workspaceId, id, version));
  });
}

export async function getDraft(deps: D, workspaceId: string, id: string): Promise<FlowVersion> {
  const row = await findFlow(deps.database.sql, workspaceId, id);
  if (!row.draft_version) throw notFound('The draft of this flow');
  return toVersion(row, await versionRow(deps.database.sql, workspaceId, id, row.draft_version));
}

export async function deleteDraft(deps: D, workspaceId: string, id: string): Promise<void> {
  await deps.database.sql.begin(async (tx) => {
    const row = await findFlow(tx, workspaceId, id, true);
    if (!row.draft_version) throw notFound('The draft of this flow');
    await tx`update flow_versions set discarded_at = ${deps.clock.now()} where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${row.draft_version}`;
    await tx`update flows set draft_version = null, updated_at = ${deps.clock.now()} where workspace_id = ${workspaceId} and id = ${id}`;
  });
}

export async function validateFlow(deps: D, workspaceId: string, id: string, graph?: unknown): Promise<{ ready: boolean; problems: Problem[] }> {
  const { sql } = deps.database;
  const row = await findFlow(sql, workspaceId, id);
  let target = graph;
  if (target === undefined) {
    if (!row.draft_version) throw notFound('The draft of this flow');
    target = (await versionRow(sql, workspaceId, id, row.draft_version)).graph;
  }
  const { problems } = await checkedGraph(sql, workspaceId, target, deps.clock.now());
  // The stored draft's problems (its draftStatus) follow what changed since its save: a
  // template deleted, a channel's default config created. A derived field brought up to date,
  // not the caller's content, so a read-scoped key's check may write it.
  if (graph === undefined) {
    await sql`update flow_versions set problems = ${JSON.stringify(problems)}::jsonb where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${row.draft_version} and launched_at is null`;
  }
  return { ready: problems.length === 0, problems };
}

/**
 * Makes the draft the active version. Customers in flight move to the node with the same id in
 * the new version, or exit with node_removed. A second launch while one runs is a 409.
 */
/** A draft found not ready inside the launch's transaction: its problems are kept after the rollback. */
class NotReady extends Error {
  readonly version: number;
  readonly problems: Problem[];
  constructor(version: number, problems: Problem[]) {
    super('not ready');
    this.version = version;
    this.problems = problems;
  }
}

export async function launchFlow(deps: D, workspaceId: string, id: string): Promise<Flow> {
  const { sql } = deps.database;
  const now = deps.clock.now();
  await sql.begin(async (tx) => {
    const [{ locked }] = (await tx<{ locked: boolean }[]>`select pg_try_advisory_xact_lock(hashtextextended(${`flow-launch:${id}`}, 0)) as locked`) as unknown as [{ locked: boolean }];
    if (!locked) throw conflict('This flow is being launched by another request');
    const row = await findFlow(tx, workspaceId, id, true);
    if (!row.draft_version) throw conflict(row.active_version ? 'There is no draft to launch; edit the flow first (or resume it if paused)' : 'The flow has no draft');
    const draft = await versionRow(tx, workspaceId, id, row.draft_version);
    // Templates or configs may have gone (or defaults come) since the save: check again. The
    // problems are kept on the draft after this transaction rolls back (below).
    const problems = await graphProblems(tx, workspaceId, draft.graph, now);
    if (problems.length) throw new NotReady(draft.version, problems);
    const graph = await withDefaultConfigs(tx, workspaceId, draft.graph, 'launch');
    if (row.active_version) await tx`update flow_versions set stopped_at = ${now} where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${row.active_version}`;
    await tx`
      update flow_versions set launched_at = ${now}, problems = '[]'::jsonb ${graph === draft.graph ? tx`` : tx`, graph = ${JSON.stringify(graph)}::jsonb`}
      where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${draft.version}`;
    const nodeIds = draft.graph.nodes.map((n) => n.id);
    await tx`
      update flow_entries set version = ${draft.version}, updated_at = ${now}
      where workspace_id = ${workspaceId} and flow_id = ${id} and state in ('active', 'paused') and node_id = any(${nodeIds}::text[])`;
    // Customers at a node whose kind changed (a wait that became a condition, a fixed wait that
    // became a wait for an event, another awaited event) are not held to what the old node set
    // (its wake time, the event it awaited): they take the new node at once.
    if (row.active_version) {
      const before = new Map((await versionRow(tx, workspaceId, id, row.active_version)).graph.nodes.map((n) => [n.id, nodeKind(n)]));
      const changed = draft.graph.nodes.filter((n) => before.has(n.id) && before.get(n.id) !== nodeKind(n)).map((n) => n.id);
      if (changed.length) {
        await tx`
          update flow_entries set wake_at = ${now}, waiting_for = null, context = context - 'wait' - 'arrived', updated_at = ${now}
          where workspace_id = ${workspaceId} and flow_id = ${id} and state in ('active', 'paused') and node_id = any(${changed}::text[])`;
      }
    }
    await tx`
      update flow_entries set state = 'done', exit_reason = 'node_removed', exited_at = ${now}, updated_at = ${now}, waiting_for = null
      where workspace_id = ${workspaceId} and flow_id = ${id} and state in ('active', 'paused') and not (node_id = any(${nodeIds}::text[]))`;
    await tx`update flow_customers set active_entry_id = null where workspace_id = ${workspaceId} and flow_id = ${id} and active_entry_id in (select id from flow_entries where workspace_id = ${workspaceId} and flow_id = ${id} and exit_reason = 'node_removed' and exited_at = ${now})`;
    const status = row.status === 'paused' ? 'paused' : 'active';
    await tx`
      update flows set active_version = ${draft.version}, draft_version = null, status = ${status}, next_schedule_at = ${nextScheduleAt(draft.graph, now)}, updated_at = ${now}
      where workspace_id = ${workspaceId} and id = ${id}`;
    // Each send step its own set, for its channel (its messages' step_id is `node/index`).
    const steps = draft.graph.nodes.flatMap((n) => (n.type === 'steps' ? n.steps.flatMap((s, i) => (s.type === 'send' ? [{ stepId: `${n.id}/${i}`, channel: s.channel }] : [])) : []));
    await ensureActionTemplates(tx, steps.map((s) => ({ workspaceId, sourceType: 'flow', sourceId: id, stepId: s.stepId, channel: s.channel })));
    await flowsChanged(tx, workspaceId);
  }).catch(async (error: unknown) => {
    if (!(error instanceof NotReady)) throw error;
    // Kept on the draft (its draftStatus), then answered.
    await sql`update flow_versions set problems = ${JSON.stringify(error.problems)}::jsonb where workspace_id = ${workspaceId} and flow_id = ${id} and version = ${error.version} and launched_at is null`;
    throw unprocessable('The flow is not ready to launch', error.problems.map((p) => ({ pointer: `/nodes/${p.nodeId ?? ''}/${p.field}`, detail: p.detail })));
  });
  flowIndex.forget(workspaceId);
  return toFlow(sql, await findFlow(sql, workspaceId, id));
}

/** Stands in for a missing default in a dry run, which sends nothing: the steps still run. */
const NO_CONFIG = '00000000-0000-0000-0000-000000000000';

/**
 * The graph with the channel's default config written into each send step that names none: the
 * launched version records the config it sends through, and a later change of default does not
 * move it (as with an action). The same graph when every step names its config. For a launch the
 * channels' default locks are taken first (sorted), so a default being moved meanwhile is read
 * after the move, not missed (a 422 for a channel that has one); a missing default is a 422. A
 * dry run takes no lock and puts a placeholder where a default is missing.
 */
export async function withDefaultConfigs(tx: TransactionSql, workspaceId: string, graph: FlowGraph, mode: 'launch' | 'dry-run'): Promise<FlowGraph> {
  const channels = new Set(graph.nodes.flatMap((n) => (n.type === 'steps' ? n.steps.flatMap((s) => (s.type === 'send' && !s.channelConfigId ? [s.channel] : [])) : [])));
  if (channels.size === 0) return graph;
  if (mode === 'launch') for (const channel of [...channels].sort()) await tx`select pg_advisory_xact_lock(hashtextextended(${channelDefaultLock(workspaceId, channel)}, 0))`;
  const defaults = await defaultConfigIds(tx, workspaceId, [...channels]);
  const problems: { pointer: string; detail: string }[] = [];
  const nodes = graph.nodes.map((n) => n.type !== 'steps' ? n : {
    ...n,
    steps: n.steps.map((s, i) => {
      if (s.type !== 'send' || s.channelConfigId) return s;
      const channelConfigId = defaults.get(s.channel);
      if (!channelConfigId) problems.push({ pointer: `/nodes/${n.id}/steps/${i}/channelConfigId`, detail: `is required: the workspace has no default ${s.channel} config` });
      return { ...s, channelConfigId: channelConfigId ?? NO_CONFIG };
    }),
  });
  // The default was deleted since the check above.
  if (problems.length && mode === 'launch') throw unprocessable('The flow is not ready to launch', problems);
  return { ...graph, nodes } as FlowGraph;
}

/** Pause: nothing moves (waits keep their wake times) and nobody enters until resume. */
export async function pauseFlow(deps: D, workspaceId: string, id: string): Promise<Flow> {
  return setRunning(deps, workspaceId, id, 'active', 'paused');
}

/** Resume: what came due while paused runs at once. */
export async function resumeFlow(deps: D, workspaceId: string, id: string): Promise<Flow> {
  return setRunning(deps, workspaceId, id, 'paused', 'active');
}

async function setRunning(deps: D, workspaceId: string, id: string, from: 'active' | 'paused', to: 'active' | 'paused'): Promise<Flow> {
  const { sql } = deps.database;
  const now = deps.clock.now();
  await sql.begin(async (tx) => {
    const row = await findFlow(tx, workspaceId, id, true);
    if (!row.active_version || row.status !== from) throw conflict(`Only ${from === 'active' ? 'an active' : 'a paused'} flow can be ${to === 'paused' ? 'paused' : 'resumed'}; this one is ${row.active_version ? row.status : 'not launched'}`);
    await tx`update flows set status = ${to}, updated_at = ${now} where workspace_id = ${workspaceId} and id = ${id}`;
    await tx`update flow_entries set state = ${to}, updated_at = ${now} where workspace_id = ${workspaceId} and flow_id = ${id} and state = ${from}`;
    await flowsChanged(tx, workspaceId);
  });
  flowIndex.forget(workspaceId);
  if (to === 'active') await wakeEngine(deps);
  return toFlow(sql, await findFlow(sql, workspaceId, id));
}

async function wakeEngine(deps: D): Promise<void> {
  await wake(deps.boss);
}

/** A new flow whose draft is a copy of this one's draft (or active version). */
export async function duplicateFlow(deps: D, workspaceId: string, id: string, name?: string): Promise<Flow> {
  const { sql } = deps.database;
  const row = await findFlow(sql, workspaceId, id);
  const source = await versionRow(sql, workspaceId, id, (row.draft_version ?? row.active_version)!);
  return createFlow(deps, workspaceId, { name: name ?? `${row.name} (copy)`, graph: source.graph, settings: source.settings });
}

export async function deleteFlow(deps: D, workspaceId: string, id: string): Promise<void> {
  const now = deps.clock.now();
  await deps.database.sql.begin(async (tx) => {
    await findFlow(tx, workspaceId, id, true);
    await tx`update flows set deleted_at = ${now}, status = 'paused', next_schedule_at = null where workspace_id = ${workspaceId} and id = ${id}`;
    await tx`
      update flow_entries set state = 'done', exit_reason = 'flow_deleted', exited_at = ${now}, updated_at = ${now}, waiting_for = null
      where workspace_id = ${workspaceId} and flow_id = ${id} and state in ('active', 'paused')`;
    await flowsChanged(tx, workspaceId);
  });
  flowIndex.forget(workspaceId);
}

export async function listVersions(deps: D, workspaceId: string, id: string): Promise<{ data: FlowVersion[] }> {
  const { sql } = deps.database;
  const row = await findFlow(sql, workspaceId, id);
  const rows = await sql<VersionRow[]>`select * from flow_versions where workspace_id = ${workspaceId} and flow_id = ${id} order by version desc`;
  return { data: rows.map((v) => toVersion(row, v)) };
}

export async function getVersion(deps: D, workspaceId: string, id: string, version: number): Promise<FlowVersion> {
  const { sql } = deps.database;
  const row = await findFlow(sql, workspaceId, id);
  return toVersion(row, await versionRow(sql, workspaceId, id, version));
}

export { findFlow, versionRow };
