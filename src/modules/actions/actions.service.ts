// Actions (optikpi-actions.md): save, edit, launch, pause, clone, delete, execute. Runs live in
// actions.runs.ts, reports in actions.report.ts.
import type { Sql, TransactionSql } from 'postgres';
import { loadSegments, normalizeFilter, previewAudience } from '../../audience/audience.service.ts';
import type { Filter } from '../../audience/filter.ts';
import type { Deps } from '../../deps.ts';
import { conflict, invalid, notFound, unprocessable, type FieldError } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { newId } from '../../ids.ts';
import { defaultConfigIds, loadChannelConfig } from '../channels/channels.service.ts';
import { ensureActionTemplates } from '../messages/action-templates.ts';
import type { PreviewSavedBody } from '../segments/segments.schemas.ts';
import { createTemplate } from '../templates/templates.service.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { checkSchedule, firstRun, nextRun, type StoredSchedule, type Timing } from './actions.schedule.ts';
import type { Action, ActionKind, ActionStatus, CloneActionBody, CreateActionBody, ListActionsQuery, UpdateActionBody } from './actions.schemas.ts';
import { startRun } from './actions.runs.ts';

type D = Pick<Deps, 'db' | 'database' | 'clock' | 'boss' | 'config'>;
type Db = Sql | TransactionSql;

export interface ActionRow {
  workspace_id: string;
  id: string;
  name: string;
  kind: ActionKind;
  status: ActionStatus;
  channel: string;
  channel_config_id: string;
  template_id: string;
  audience: Filter;
  schedule: StoredSchedule;
  start_at: Date | null;
  end_at: Date | null;
  next_run_at: Date | null;
  last_run_at: Date | null;
  launched_at: Date | null;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toAction(r: ActionRow): Action {
  const s = r.schedule;
  return {
    id: r.id, name: r.name, kind: r.kind, status: r.status, channel: r.channel as Action['channel'], channelConfigId: r.channel_config_id, templateId: r.template_id,
    audience: r.audience,
    ...(r.kind === 'triggered' ? { everyMinutes: s.everyMinutes! } : {}),
    ...(s.at ? { schedule: { at: s.at } } : s.cron ? { schedule: { cron: s.cron, timeZone: s.timeZone! }, repeat: s.repeat ?? 'once' } : {}),
    startAt: iso(r.start_at), endAt: iso(r.end_at), nextRunAt: iso(r.next_run_at), lastRunAt: iso(r.last_run_at), launchedAt: iso(r.launched_at),
    createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(), deletedAt: iso(r.deleted_at),
  };
}

export const timingOf = (r: Pick<ActionRow, 'kind' | 'schedule' | 'start_at' | 'end_at'>): Timing => ({ kind: r.kind, schedule: r.schedule, startAt: r.start_at, endAt: r.end_at });

/** Reads an action; deleted ones too when `deleted` (their reports stay readable). */
export async function findAction(db: Db, workspaceId: string, id: string, options: { deleted?: boolean; lock?: boolean } = {}): Promise<ActionRow> {
  const [row] = await db<ActionRow[]>`
    select * from actions where workspace_id = ${workspaceId} and id = ${id} ${options.deleted ? db`` : db`and deleted_at is null`} ${options.lock ? db`for update` : db``}`;
  if (!row) throw notFound('Action');
  return row;
}

type Settings = Omit<CreateActionBody, 'kind' | 'launch'>;

/** Checks everything about an action's settings at once and reports every fault by pointer; creates an inline template last. */
async function prepare(deps: D, workspaceId: string, kind: ActionKind, body: Settings) {
  const now = deps.clock.now();
  const { schedule, errors } = checkSchedule(kind, body, now);
  const fail = (pointer: string, detail: string) => errors.push({ pointer, detail });
  const { sql } = deps.database;
  if ((body.templateId === undefined) === (body.template === undefined)) fail('/templateId', 'give templateId or an inline template, one of the two');
  if (body.templateId) {
    const [t] = await sql<{ channel: string }[]>`select channel from templates where workspace_id = ${workspaceId} and id = ${body.templateId} and deleted_at is null`;
    if (!t) return fail422('/templateId', 'the template does not exist');
    if (t.channel !== body.channel) fail('/templateId', `the template is for ${t.channel}, the action for ${body.channel}`);
  }
  // No config named: the channel's default, kept on the action (a later change of default does not move it).
  const configId = body.channelConfigId ?? (await defaultConfigIds(sql, workspaceId, [body.channel])).get(body.channel);
  const [config] = configId
    ? await sql<{ id: string; channel: string }[]>`select id, channel from channel_configs where workspace_id = ${workspaceId} and id = ${configId} and deleted_at is null`
    : [];
  if (!config && body.channelConfigId) return fail422('/channelConfigId', 'the channel config does not exist');
  if (!config) fail('/channelConfigId', `is required: the workspace has no default ${body.channel} config`);
  else if (config.channel !== body.channel) fail('/channelConfigId', `the channel config is for ${config.channel}, the action for ${body.channel}`);
  let audience: Filter | undefined;
  try {
    audience = normalizeFilter(body.audience, '/audience');
  } catch (error) {
    errors.push(...((error as { errors?: FieldError[] }).errors ?? []));
  }
  if (errors.length) throw invalid('The action is not valid', errors);
  await loadSegments(sql, workspaceId, audience!, '/audience');
  let templateId = body.templateId;
  if (body.template) {
    const t = body.template;
    const created = await createTemplate(deps, workspaceId, { name: t.name ?? `${body.name} (inline)`, channel: body.channel as TemplateChannel, content: t.content } as never, { listed: t.save ?? false })
      .catch((error: { errors?: FieldError[] }) => {
        if (error.errors) throw invalid('The inline template is not valid', error.errors.map((e) => ({ ...e, pointer: `/template${e.pointer}` })));
        throw error;
      });
    templateId = created.id;
  }
  return { schedule, audience: audience!, templateId: templateId!, channelConfigId: config!.id, startAt: body.startAt ? new Date(body.startAt) : null, endAt: body.endAt ? new Date(body.endAt) : null };
}

function fail422(pointer: string, detail: string): never {
  throw unprocessable(detail.charAt(0).toUpperCase() + detail.slice(1), [{ pointer, detail }]);
}

export async function createAction(deps: D, workspaceId: string, body: CreateActionBody): Promise<Action> {
  const p = await prepare(deps, workspaceId, body.kind, body);
  const now = deps.clock.now();
  const id = newId();
  await deps.database.sql`
    insert into actions (workspace_id, id, name, kind, status, channel, channel_config_id, template_id, audience, schedule, start_at, end_at, created_at, updated_at)
    values (${workspaceId}, ${id}, ${body.name}, ${body.kind}, 'inactive', ${body.channel}, ${p.channelConfigId}, ${p.templateId}, ${JSON.stringify(p.audience)}::jsonb,
      ${JSON.stringify(p.schedule)}::jsonb, ${p.startAt}, ${p.endAt}, ${now}, ${now})`;
  // Action templates exist from creation, so that other audiences can refer to them before any send.
  await ensureActionTemplates(deps.database.sql, [{ workspaceId, sourceType: 'action', sourceId: id, channel: body.channel }]);
  if (body.launch) return launchAction(deps, workspaceId, id);
  return toAction(await findAction(deps.database.sql, workspaceId, id));
}

export async function getAction(deps: D, workspaceId: string, id: string): Promise<Action> {
  return toAction(await findAction(deps.database.sql, workspaceId, id, { deleted: true }));
}

export async function listActions(deps: D, workspaceId: string, q: ListActionsQuery) {
  const { sql } = deps.database;
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const rows = await sql<ActionRow[]>`
    select * from actions where workspace_id = ${workspaceId} and deleted_at is null
      ${q.kind ? sql`and kind = ${q.kind}` : sql``} ${q.status ? sql`and status = ${q.status}` : sql``} ${after ? sql`and id > ${after[0] as string}` : sql``}
    order by id limit ${limit + 1}`;
  const page = pageOf(rows, limit, (r) => [r.id]);
  return { data: page.data.map(toAction), nextCursor: page.nextCursor };
}

export async function updateAction(deps: D, workspaceId: string, id: string, body: UpdateActionBody): Promise<Action> {
  const current = await findAction(deps.database.sql, workspaceId, id);
  const p = await prepare(deps, workspaceId, current.kind, body);
  const now = deps.clock.now();
  await deps.database.sql.begin(async (tx) => {
    const row = await findAction(tx, workspaceId, id, { lock: true });
    // An active action keeps running; a new schedule decides its next run from now.
    const timing: Timing = { kind: row.kind, schedule: p.schedule, startAt: p.startAt, endAt: p.endAt };
    const scheduleChanged = JSON.stringify(row.schedule) !== JSON.stringify(p.schedule) || iso(row.start_at) !== iso(p.startAt) || iso(row.end_at) !== iso(p.endAt);
    const next = row.status === 'active' && scheduleChanged && row.next_run_at ? firstRun(timing, now) : row.next_run_at;
    await tx`
      update actions set name = ${body.name}, channel = ${body.channel}, channel_config_id = ${p.channelConfigId}, template_id = ${p.templateId},
        audience = ${JSON.stringify(p.audience)}::jsonb, schedule = ${JSON.stringify(p.schedule)}::jsonb, start_at = ${p.startAt}, end_at = ${p.endAt},
        next_run_at = ${next}, updated_at = ${now}
      where workspace_id = ${workspaceId} and id = ${id}`;
    await ensureActionTemplates(tx, [{ workspaceId, sourceType: 'action', sourceId: id, channel: body.channel }]);
  });
  if (body.launch) return launchAction(deps, workspaceId, id);
  return toAction(await findAction(deps.database.sql, workspaceId, id));
}

/** Active from now: checks that it can send (config opens, template and segments exist), plans the first run, starts it if due. */
export async function launchAction(deps: D, workspaceId: string, id: string): Promise<Action> {
  const { sql } = deps.database;
  const now = deps.clock.now();
  await sql.begin(async (tx) => {
    const row = await findAction(tx, workspaceId, id, { lock: true });
    // Active: nothing to do, unless it has nothing ahead (its last run failed, so it never
    // completed): then it is launched again.
    if (row.status === 'active') {
      const [ahead] = await tx`select 1 from action_runs where workspace_id = ${workspaceId} and action_id = ${id} and status in ('pending', 'running') limit 1`;
      if (row.next_run_at || ahead) return;
    }
    await loadChannelConfig(deps, workspaceId, row.channel_config_id).catch((error: { status?: number }) => {
      fail422('/channelConfigId', error.status === 404 ? 'the channel config does not exist any more' : 'the channel config cannot be used (its secrets cannot be opened)');
    });
    const [template] = await tx`select 1 from templates where workspace_id = ${workspaceId} and id = ${row.template_id} and deleted_at is null`;
    if (!template) fail422('/templateId', 'the template does not exist any more');
    await loadSegments(tx, workspaceId, row.audience, '/audience');
    if (row.schedule.at && Date.parse(row.schedule.at) <= now.getTime()) fail422('/schedule/at', 'the moment to launch at has passed; edit the action');
    const timing = timingOf(row);
    const first = firstRun(timing, now);
    if (!first) fail422('/endAt', 'the action has no run left before its end');
    await ensureActionTemplates(tx, [{ workspaceId, sourceType: 'action', sourceId: id, channel: row.channel }]);
    let next: Date | null = first;
    if (first <= now) {
      await startRun(tx, deps.boss, { workspaceId, actionId: id, trigger: 'launch', runKey: `launch:${newId()}`, scheduledFor: now });
      next = nextRun(timing, first, now);
    }
    await tx`update actions set status = 'active', launched_at = ${now}, next_run_at = ${next}, updated_at = ${now} where workspace_id = ${workspaceId} and id = ${id}`;
  });
  return toAction(await findAction(sql, workspaceId, id));
}

export async function pauseAction(deps: D, workspaceId: string, id: string): Promise<Action> {
  const { sql } = deps.database;
  const rows = await sql`update actions set status = 'paused', updated_at = ${deps.clock.now()} where workspace_id = ${workspaceId} and id = ${id} and deleted_at is null and status = 'active' returning id`;
  if (!rows.length) {
    const row = await findAction(sql, workspaceId, id);
    throw conflict(`Only an active action can be paused; this one is ${row.status}`);
  }
  return toAction(await findAction(sql, workspaceId, id));
}

/** Same settings and audience under a new name, inactive. */
export async function cloneAction(deps: D, workspaceId: string, id: string, body: CloneActionBody): Promise<Action> {
  const { sql } = deps.database;
  const row = await findAction(sql, workspaceId, id);
  const now = deps.clock.now();
  const cloneId = newId();
  await sql`
    insert into actions (workspace_id, id, name, kind, status, channel, channel_config_id, template_id, audience, schedule, start_at, end_at, created_at, updated_at)
    values (${workspaceId}, ${cloneId}, ${body.name ?? `${row.name} (copy)`}, ${row.kind}, 'inactive', ${row.channel}, ${row.channel_config_id}, ${row.template_id},
      ${JSON.stringify(row.audience)}::jsonb, ${JSON.stringify(row.schedule)}::jsonb, ${row.start_at}, ${row.end_at}, ${now}, ${now})`;
  await ensureActionTemplates(sql, [{ workspaceId, sourceType: 'action', sourceId: cloneId, channel: row.channel }]);
  return toAction(await findAction(sql, workspaceId, cloneId));
}

/** Gone from lists and never runs again; its messages, runs and reports stay readable. */
export async function deleteAction(deps: D, workspaceId: string, id: string): Promise<void> {
  const rows = await deps.database.sql`update actions set deleted_at = ${deps.clock.now()}, next_run_at = null where workspace_id = ${workspaceId} and id = ${id} and deleted_at is null returning id`;
  if (!rows.length) throw notFound('Action');
}

/** "Execute": who would get it if it ran now. */
export async function previewAction(deps: D, workspaceId: string, id: string, body: PreviewSavedBody) {
  const row = await findAction(deps.database.sql, workspaceId, id);
  return previewAudience(deps.database.sql, { workspaceId, filter: row.audience, now: deps.clock.now(), limit: body.limit ?? 20, cursor: body.cursor, columns: body.columns ?? [] });
}
