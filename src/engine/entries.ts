// How customers get into flows, and how an awaited event wakes them: inside the ingest
// transaction (the EventHooks seam) entries are inserted and waits woken, and the engine is
// woken in that same transaction, so an event reaches the first step in well under a second.
import type { PgBoss } from 'pg-boss';
import type { Sql, TransactionSql } from 'postgres';
import { compileAudience, matchingIdsSql } from '../audience/audience.service.ts';
import type { Deps } from '../deps.ts';
import { fromPostgres } from '../jobs/postgres-adapter.ts';
import type { FlowGraph } from '../modules/flows/flows.graph.ts';
import type { EventHook, IngestedEvent } from '../modules/events/events.hooks.ts';
import { FLOW_TICK_QUEUE } from './engine.jobs.ts';
import { nextFire, nextScheduleAt } from './schedule.ts';

interface Trigger {
  flowId: string;
  version: number;
  nodeId: string;
}
interface WorkspaceIndex {
  until: number;
  triggers: Map<string, Trigger[]>;
  awaited: Set<string>;
}

const INDEX_TTL_MS = 5_000;

/** Per workspace: the event triggers of running flows by event type, and the event types their waits await. A cache of at most 5 s. */
class FlowIndex {
  readonly #cache = new Map<string, WorkspaceIndex>();

  async get(sql: Sql | TransactionSql, workspaceId: string): Promise<WorkspaceIndex> {
    const now = Date.now();
    const cached = this.#cache.get(workspaceId);
    if (cached && cached.until > now) return cached;
    const rows = await sql<{ id: string; status: string; version: number; graph: FlowGraph }[]>`
      select f.id, f.status, v.version, v.graph from flows f
      join flow_versions v on v.workspace_id = f.workspace_id and v.flow_id = f.id and v.version = f.active_version
      where f.workspace_id = ${workspaceId} and f.deleted_at is null and f.status in ('active', 'paused')`;
    const index: WorkspaceIndex = { until: now + INDEX_TTL_MS, triggers: new Map(), awaited: new Set() };
    for (const flow of rows) {
      for (const node of flow.graph.nodes) {
        if (node.type === 'event_trigger' && flow.status === 'active') index.triggers.set(node.eventType, [...(index.triggers.get(node.eventType) ?? []), { flowId: flow.id, version: flow.version, nodeId: node.id }]);
        if (node.type === 'wait' && node.mode === 'event' && node.eventType) index.awaited.add(node.eventType);
      }
    }
    this.#cache.set(workspaceId, index);
    return index;
  }

  forget(workspaceId: string): void {
    this.#cache.delete(workspaceId);
  }

  /** Every workspace's (changes may have been missed: the listener was reconnecting). */
  forgetAll(): void {
    this.#cache.clear();
  }
}

/**
 * A flow's launch, pause, resume or delete is broadcast on this channel (its workspace id), in
 * its transaction: every process drops that workspace's index at once, not after up to 5 s (the
 * tick sets right what an old index let in meanwhile: settleStrays).
 */
export const FLOWS_CHANGED_CHANNEL = 'herald_flows_changed';

export async function flowsChanged(tx: TransactionSql, workspaceId: string): Promise<void> {
  await tx`select pg_notify(${FLOWS_CHANGED_CHANNEL}, ${workspaceId})`;
}

export const flowIndex = new FlowIndex();

export function flowEventsHook(deps: Pick<Deps, 'boss' | 'clock'>): EventHook {
  return async (tx, workspaceId, events) => {
    const index = await flowIndex.get(tx, workspaceId);
    if (!index.triggers.size && !index.awaited.size) return;
    const now = deps.clock.now();
    let work = 0;
    const entries = events.flatMap((e) => (index.triggers.get(e.type) ?? []).map((t) => ({ t, e })));
    if (entries.length) {
      const rows = entries.map(({ t, e }) => ({ f: t.flowId, v: t.version, n: t.nodeId, c: e.customerId, x: eventContext(e) }));
      const inserted = await tx`
        insert into flow_entries (workspace_id, id, flow_id, customer_id, version, node_id, state, wake_at, context, entered_at, updated_at)
        select ${workspaceId}::uuid, herald_uuid_v7(${now}::timestamptz), r.f, r.c, r.v, r.n, 'active', ${now}::timestamptz, jsonb_build_object('event', r.x), ${now}::timestamptz, ${now}::timestamptz
        from json_to_recordset(${JSON.stringify(rows)}::json) as r(f uuid, v int, n text, c uuid, x jsonb)
        returning 1`;
      work += inserted.length;
    }
    const awaited = events.filter((e) => index.awaited.has(e.type));
    if (awaited.length) {
      const rows = awaited.map((e) => ({ c: e.customerId, t: e.type, id: e.id }));
      const woken = await tx`
        update flow_entries f set wake_at = least(f.wake_at, ${now}::timestamptz), context = f.context || jsonb_build_object('arrived', jsonb_build_object('id', r.id, 'type', r.t))
        from json_to_recordset(${JSON.stringify(rows)}::json) as r(c uuid, t text, id uuid)
        where f.workspace_id = ${workspaceId} and f.customer_id = r.c and f.waiting_for = r.t and f.state in ('active', 'paused')
        returning 1`;
      work += woken.length;
    }
    if (work) await wake(deps.boss, tx);
  };
}

function eventContext(e: IngestedEvent) {
  return { id: e.id, type: e.type, properties: e.properties, occurredAt: e.occurredAt.toISOString() };
}

export async function wake(boss: PgBoss, tx?: TransactionSql): Promise<void> {
  await boss.send(FLOW_TICK_QUEUE, {}, { singletonKey: 'tick', ...(tx ? { db: fromPostgres(tx) } : {}) });
}

/** Enters the audiences of schedule triggers that are due; returns how many entries were made. */
export async function enterScheduled(deps: Pick<Deps, 'database' | 'boss' | 'clock'>): Promise<number> {
  const now = deps.clock.now();
  return deps.database.sql.begin(async (tx) => {
    const due = await tx<{ workspace_id: string; id: string; version: number; graph: FlowGraph; next_schedule_at: Date }[]>`
      select f.workspace_id, f.id, v.version, v.graph, f.next_schedule_at from flows f
      join flow_versions v on v.workspace_id = f.workspace_id and v.flow_id = f.id and v.version = f.active_version
      where f.status = 'active' and f.deleted_at is null and f.next_schedule_at <= ${now}
      order by f.next_schedule_at limit 50 for update of f skip locked`;
    let made = 0;
    for (const flow of due) {
      for (const node of flow.graph.nodes) {
        if (node.type !== 'schedule_trigger') continue;
        const fire = nextFire(node, new Date(flow.next_schedule_at.getTime() - 1));
        if (!fire || fire > now) continue;
        const compiled = await compileAudience(tx, { workspaceId: flow.workspace_id, filter: node.audience, now }, 'all', '/audience');
        const n = compiled.params.length;
        const inserted = await tx.unsafe(
          `insert into flow_entries (workspace_id, id, flow_id, customer_id, version, node_id, state, wake_at, context, entered_at, updated_at)
           select $1::uuid, herald_uuid_v7($${n + 1}::timestamptz), $${n + 2}::uuid, m.id, $${n + 3}::int, $${n + 4}::text, 'active', $${n + 1}::timestamptz,
             jsonb_build_object('schedule', $${n + 5}::text), $${n + 1}::timestamptz, $${n + 1}::timestamptz
           from (${matchingIdsSql(compiled)}) m returning 1`,
          [...compiled.params, now.toISOString(), flow.id, flow.version, node.id, fire.toISOString()] as never[],
        );
        made += inserted.length;
      }
      await tx`update flows set next_schedule_at = ${nextScheduleAt(flow.graph, new Date(now.getTime() + 1))} where workspace_id = ${flow.workspace_id} and id = ${flow.id}`;
    }
    if (made) await wake(deps.boss, tx);
    return made;
  });
}
