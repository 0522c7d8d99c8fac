// Action runs. The scheduler (a pg-boss cron, every minute) claims due actions with SKIP LOCKED,
// records a run under a unique key and queues a job for it in the same transaction; a worker
// executes the run as one INSERT ... SELECT from the compiled audience into the outbox. A run
// moves pending -> running/finished under a row lock, so two processes never run it twice.
// Triggered actions also run soon after an event that can change their audience arrives.
import { performance } from 'node:perf_hooks';
import type { Job, PgBoss } from 'pg-boss';
import type { Sql, TransactionSql } from 'postgres';
import { compileAudience, loadSegments, matchingIdsSql } from '../../audience/audience.service.ts';
import type { Filter } from '../../audience/filter.ts';
import type { Deps } from '../../deps.ts';
import { isDatabaseDown } from '../../db/errors.ts';
import { newId } from '../../ids.ts';
import { fromPostgres } from '../../jobs/postgres-adapter.ts';
import type { JobDefinition } from '../../jobs/queue.ts';
import { HEARTBEAT_SECONDS } from '../../engine/engine.jobs.ts';
import type { EventHook } from '../events/events.hooks.ts';
import { SEND_QUEUE } from '../messages/outbox.ts';
import { nextRun, type StoredSchedule } from './actions.schedule.ts';
import type { ActionKind } from './actions.schemas.ts';

export const RUN_QUEUE = 'action-runs';
export const TRIGGER_QUEUE = 'action-triggers';
const SCHEDULE_QUEUE = 'action-scheduler';

type D = Pick<Deps, 'database' | 'clock' | 'boss'>;

interface NewRun {
  workspaceId: string;
  actionId: string;
  trigger: 'launch' | 'schedule' | 'event';
  runKey: string;
  scheduledFor: Date;
}

/** Records a run (once per key) and queues its job in the caller's transaction; null when the key was taken. */
export async function startRun(tx: TransactionSql, boss: PgBoss, run: NewRun): Promise<string | null> {
  const id = newId();
  const [row] = await tx`
    insert into action_runs (workspace_id, id, action_id, run_key, trigger, status, scheduled_for)
    values (${run.workspaceId}, ${id}, ${run.actionId}, ${run.runKey}, ${run.trigger}, 'pending', ${run.scheduledFor})
    on conflict (workspace_id, action_id, run_key) do nothing returning id`;
  if (!row) return null;
  await boss.send(RUN_QUEUE, { workspaceId: run.workspaceId, runId: id }, { db: fromPostgres(tx) });
  return id;
}

/** Starts the runs of every active action that is due; returns the runs it queued. */
export async function scheduleDueActions(deps: D, limit = 200): Promise<{ workspaceId: string; runId: string }[]> {
  const now = deps.clock.now();
  return deps.database.sql.begin(async (tx) => {
    const due = await tx<{ workspace_id: string; id: string; kind: ActionKind; schedule: StoredSchedule; start_at: Date | null; end_at: Date | null; next_run_at: Date }[]>`
      select workspace_id, id, kind, schedule, start_at, end_at, next_run_at from actions
      where status = 'active' and deleted_at is null and next_run_at <= ${now}
      order by next_run_at limit ${limit} for update skip locked`;
    const runs: { workspaceId: string; runId: string }[] = [];
    for (const a of due) {
      const slot = a.next_run_at;
      const timing = { kind: a.kind, schedule: a.schedule, startAt: a.start_at, endAt: a.end_at };
      if (a.end_at && a.end_at < now) {
        await tx`update actions set status = 'completed', next_run_at = null, updated_at = ${now} where workspace_id = ${a.workspace_id} and id = ${a.id}`;
        continue;
      }
      const runId = await startRun(tx, deps.boss, { workspaceId: a.workspace_id, actionId: a.id, trigger: 'schedule', runKey: `schedule:${slot.toISOString()}`, scheduledFor: slot });
      if (runId) runs.push({ workspaceId: a.workspace_id, runId });
      await tx`update actions set next_run_at = ${nextRun(timing, slot, now)} where workspace_id = ${a.workspace_id} and id = ${a.id}`;
    }
    return runs;
  });
}

interface RunRow {
  action_id: string;
  status: string;
  trigger: string;
}
interface RunAction {
  kind: ActionKind;
  status: string;
  deleted_at: Date | null;
  channel: string;
  channel_config_id: string;
  template_id: string;
  audience: Filter;
  schedule: StoredSchedule;
  next_run_at: Date | null;
}

/**
 * Executes a pending run: the audience as of now, one INSERT ... SELECT of the messages of those
 * who have not had this action (or, for "many times", not in this run), all in one transaction
 * with the run's record and the send workers' wake-up.
 */
export async function executeRun(deps: D, workspaceId: string, runId: string, retriesLeft = false): Promise<void> {
  const started = performance.now();
  const now = deps.clock.now();
  try {
    await deps.database.sql.begin(async (tx) => {
      const [run] = await tx<RunRow[]>`select action_id, status, trigger from action_runs where workspace_id = ${workspaceId} and id = ${runId} for update`;
      if (!run || run.status !== 'pending') return; // another process ran it, or is running it and holds the lock
      const [action] = await tx<RunAction[]>`select * from actions where workspace_id = ${workspaceId} and id = ${run.action_id} for update`;
      if (!action || action.deleted_at || action.status !== 'active') {
        await tx`update action_runs set status = 'cancelled', finished_at = ${now} where workspace_id = ${workspaceId} and id = ${runId}`;
        return;
      }
      const [template] = await tx<{ current_version: number }[]>`select current_version from templates where workspace_id = ${workspaceId} and id = ${action.template_id}`;
      const compiled = await compileAudience(tx, { workspaceId, filter: action.audience, now }, 'all', '/audience');
      const many = action.kind === 'recurring' && action.schedule.repeat === 'many';
      const n = compiled.params.length;
      const [counts] = await tx.unsafe<{ matched: number; queued: number }[]>(
        `with m as (${matchingIdsSql(compiled)}),
         ins as (
           insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id, entry_id, run_id, status, next_attempt_at, created_at, updated_at)
           select $1::uuid, herald_uuid_v7($${n + 1}::timestamptz), m.id, $${n + 2}::text, $${n + 3}::uuid, $${n + 4}::uuid, $${n + 5}::int, 'action', $${n + 6}::text, '', $${n + 7}::text, $${n + 8}::uuid, 'queued',
             $${n + 1}::timestamptz, $${n + 1}::timestamptz, $${n + 1}::timestamptz
           from m
           on conflict (workspace_id, source_type, source_id, customer_id, step_id, entry_id) do nothing
           returning workspace_id, id),
         q as (insert into message_queue (workspace_id, message_id, due_at) select workspace_id, id, $${n + 1}::timestamptz from ins)
         select (select count(*) from m)::int as matched, (select count(*) from ins)::int as queued`,
        [...compiled.params, now.toISOString(), action.channel, action.channel_config_id, action.template_id, template!.current_version, run.action_id, many ? runId : '', runId] as never[],
      );
      const { matched, queued } = counts!;
      const skipped = matched > queued ? { already_received: matched - queued } : {};
      await tx`
        update action_runs set status = 'finished', started_at = ${now}, finished_at = ${deps.clock.now()}, duration_ms = ${Math.round(performance.now() - started)},
          matched = ${matched}, queued = ${queued}, skipped = ${JSON.stringify(skipped)}::jsonb
        where workspace_id = ${workspaceId} and id = ${runId}`;
      // The last run of an action completes it (single send, launch one time, past its end).
      await tx`
        update actions set last_run_at = ${now}, status = case when next_run_at is null then 'completed' else status end
        where workspace_id = ${workspaceId} and id = ${run.action_id}`;
      if (queued > 0) await deps.boss.send(SEND_QUEUE, {}, { db: fromPostgres(tx) });
    });
  } catch (error) {
    // A passing failure (the database down or restarting, a deadlock, a serialization failure, a
    // statement timeout) leaves the run pending for the job's retry while it has one; the last
    // try fails it, visibly (a timeout that comes back every time would leave it pending for good).
    if (retriesLeft && (isDatabaseDown(error) || TRANSIENT_CODES.has((error as { code?: string }).code ?? ''))) throw error;
    // A run that cannot work (a segment deleted under an inactive action, say) fails once, visibly, instead of retrying forever.
    const detail = error instanceof Error ? error.message : String(error);
    const failed = await deps.database.sql`
      update action_runs set status = 'failed', finished_at = ${now}, error = ${detail.slice(0, 500)}
      where workspace_id = ${workspaceId} and id = ${runId} and status = 'pending' returning 1`;
    if (!failed.length) throw error;
  }
}

/** SQLSTATEs of failures that pass: serialization failure, deadlock, statement timeout, lock timeout. */
const TRANSIENT_CODES = new Set(['40001', '40P01', '57014', '55P03']);

/** Runs every pending run (for tests and operators; workers normally take them from the queue). */
export async function executePendingRuns(deps: D): Promise<number> {
  const pending = await deps.database.sql<{ workspace_id: string; id: string }[]>`select workspace_id, id from action_runs where status = 'pending' order by scheduled_for`;
  for (const r of pending) await executeRun(deps, r.workspace_id, r.id);
  return pending.length;
}

// ---- triggered actions: right away when an event that can change the answer arrives ----------------

const INDEX_TTL_MS = 10_000;

/** Per workspace, which event types each active triggered action's audience looks at (through segments too). A cache: stale for at most 10 s. */
class TriggerIndex {
  readonly #cache = new Map<string, { until: number; byType: Map<string, string[]> }>();

  async actionsFor(sql: Sql | TransactionSql, workspaceId: string, types: Set<string>): Promise<string[]> {
    const now = Date.now();
    let entry = this.#cache.get(workspaceId);
    if (!entry || entry.until < now) {
      entry = { until: now + INDEX_TTL_MS, byType: await this.#build(sql, workspaceId) };
      this.#cache.set(workspaceId, entry);
    }
    const ids = new Set<string>();
    for (const type of types) for (const id of entry.byType.get(type) ?? []) ids.add(id);
    return [...ids];
  }

  async #build(sql: Sql | TransactionSql, workspaceId: string): Promise<Map<string, string[]>> {
    const byType = new Map<string, string[]>();
    const actions = await sql<{ id: string; audience: Filter }[]>`
      select id, audience from actions where workspace_id = ${workspaceId} and kind = 'triggered' and status = 'active' and deleted_at is null`;
    for (const a of actions) {
      const segments = await loadSegments(sql, workspaceId, a.audience).catch(() => new Map<string, Filter>());
      for (const type of eventTypes([a.audience, ...segments.values()])) byType.set(type, [...(byType.get(type) ?? []), a.id]);
    }
    return byType;
  }
}

function eventTypes(filters: Filter[]): Set<string> {
  const types = new Set<string>();
  const walk = (f: Filter) => {
    if ('all' in f) f.all.forEach(walk);
    else if ('any' in f) f.any.forEach(walk);
    else if ('not' in f) walk(f.not);
    else if (f.type === 'event') types.add(f.name);
  };
  filters.forEach(walk);
  return types;
}

/** The ingest hook: queues (at most one waiting per action) a run of each triggered action the events concern. */
export function triggeredActionsHook(deps: Pick<Deps, 'boss'>): EventHook {
  const index = new TriggerIndex();
  return async (tx, workspaceId, events) => {
    const ids = await index.actionsFor(tx, workspaceId, new Set(events.map((e) => e.type)));
    for (const actionId of ids) await deps.boss.send(TRIGGER_QUEUE, { workspaceId, actionId }, { db: fromPostgres(tx), singletonKey: actionId });
  };
}

async function runTriggered(deps: Deps, job: Job<{ workspaceId: string; actionId: string }>): Promise<void> {
  const { workspaceId, actionId } = job.data;
  const runId = await deps.database.sql.begin(async (tx) => {
    // Within its window only: an event before startAt or after endAt runs nothing (the scheduled path keeps the same bounds).
    const now = deps.clock.now();
    const [active] = await tx`
      select 1 from actions where workspace_id = ${workspaceId} and id = ${actionId} and kind = 'triggered' and status = 'active' and deleted_at is null
        and (start_at is null or start_at <= ${now}) and (end_at is null or end_at > ${now})`;
    return active ? startRun(tx, deps.boss, { workspaceId, actionId, trigger: 'event', runKey: `event:${job.id}`, scheduledFor: now }) : null;
  });
  if (runId) await executeRun(deps, workspaceId, runId, retriesLeftOf(job));
}

/** The jobs' retryLimit (actionRunJob, actionTriggerJob). */
const JOB_RETRIES = 3;
const retriesLeftOf = (job: { retryCount?: number }) => (job.retryCount ?? 0) < JOB_RETRIES;

export const actionSchedulerJob: JobDefinition = {
  name: SCHEDULE_QUEUE,
  queue: { retryLimit: 1, expireInSeconds: 120, heartbeatSeconds: HEARTBEAT_SECONDS, policy: 'singleton' } as never,
  cron: '* * * * *',
  handler: async (deps) => {
    while ((await scheduleDueActions(deps)).length === 200);
  },
};

export const actionRunJob: JobDefinition<{ workspaceId: string; runId: string }> = {
  name: RUN_QUEUE,
  queue: { retryLimit: JOB_RETRIES, retryDelay: 5, expireInSeconds: 1800, heartbeatSeconds: HEARTBEAT_SECONDS, notify: true } as never,
  work: { pollingIntervalSeconds: 1, batchSize: 1 },
  handler: async (deps, jobs) => {
    for (const job of jobs) await executeRun(deps, job.data.workspaceId, job.data.runId, retriesLeftOf(job));
  },
};

export const actionTriggerJob: JobDefinition<{ workspaceId: string; actionId: string }> = {
  name: TRIGGER_QUEUE,
  // short: one run waiting per action, however many events arrive (runs are keyed by job, and
  // the outbox's unique key makes concurrent runs of one action harmless).
  queue: { retryLimit: JOB_RETRIES, retryDelay: 5, expireInSeconds: 1800, heartbeatSeconds: HEARTBEAT_SECONDS, policy: 'short', notify: true } as never,
  work: { pollingIntervalSeconds: 1, batchSize: 1 },
  handler: async (deps, jobs) => {
    for (const job of jobs) await runTriggered(deps, job);
  },
};
