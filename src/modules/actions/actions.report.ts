// An action's report (delivery funnel, conversion chart, runs) and its tracking table, one row
// per message, as JSON pages or a CSV stream that never holds the rows in memory.
import { Readable, pipeline } from 'node:stream';
import { stringify } from 'csv-stringify';
import type { Sql } from 'postgres';
import { checkColumns, pickColumns, PREVIEW_COLUMNS } from '../../audience/audience.service.ts';
import { ACTION_TEMPLATE_KINDS } from '../../audience/filter.ts';
import type { Deps } from '../../deps.ts';
import { invalid } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../http/pagination.ts';
import { isTimeZone } from '../../http/schemas.ts';
import { listActionTemplates } from '../messages/messages.service.ts';
import { findAction, toAction } from './actions.service.ts';
import type { ActionRun } from './actions.schemas.ts';
import type { CustomerSqlRow } from '../customers/customers.service.ts';
import type { ReportQuery, TrackingQuery } from './actions.report.schemas.ts';

type D = Pick<Deps, 'database' | 'clock' | 'db'>;

export async function actionReport(deps: D, workspaceId: string, id: string, q: ReportQuery) {
  const { sql } = deps.database;
  const action = await findAction(sql, workspaceId, id, { deleted: true });
  const timeZone = q.timeZone ?? 'UTC';
  if (!isTimeZone(timeZone)) throw invalid('Unknown time zone', [{ pointer: '/query/timeZone', detail: `"${timeZone}" is not an IANA time zone` }]);
  const [byStatus, notSent, templates, runs] = await Promise.all([
    sql<{ status: string; n: number }[]>`select status, count(*)::int as n from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${id} group by status order by status`,
    sql<{ reason: string; n: number }[]>`select coalesce(reason, 'unknown') as reason, count(*)::int as n from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${id} and status = 'not_sent' group by 1 order by 1`,
    listActionTemplates(deps, workspaceId, 'action', id),
    actionRuns(sql, workspaceId, id),
  ]);
  return {
    action: toAction(action),
    funnel: {
      messages: byStatus.reduce((sum, r) => sum + r.n, 0),
      byStatus: Object.fromEntries(byStatus.map((r) => [r.status, r.n])),
      actionTemplates: templates.map((t) => ({ id: t.id, kind: t.kind, channel: t.channel, customers: t.customers })),
      notSent: Object.fromEntries(notSent.map((r) => [r.reason, r.n])),
    },
    conversion: q.conversionEvent ? await conversion(sql, workspaceId, id, { event: q.conversionEvent, windowHours: q.conversionWindowHours ?? 72, interval: q.interval ?? 'day', timeZone }) : null,
    runs,
  };
}

/**
 * Sent messages and those followed by the conversion event within the window, per day or hour
 * of sending in the given time zone.
 */
async function conversion(sql: Sql, workspaceId: string, id: string, c: { event: string; windowHours: number; interval: 'day' | 'hour'; timeZone: string }) {
  const rows = await sql<{ bucket: Date; sent: number; converted: number }[]>`
    select date_trunc(${c.interval}, m.sent_at at time zone ${c.timeZone}) at time zone ${c.timeZone} as bucket, count(*)::int as sent,
      count(*) filter (where exists (
        select 1 from events e where e.workspace_id = m.workspace_id and e.customer_id = m.customer_id and e.type = ${c.event}
          and e.occurred_at >= m.sent_at and e.occurred_at < m.sent_at + make_interval(hours => ${c.windowHours})))::int as converted
    from messages m
    where m.workspace_id = ${workspaceId} and m.source_type = 'action' and m.source_id = ${id} and m.sent_at is not null
    group by 1 order by 1`;
  const sent = rows.reduce((s, r) => s + r.sent, 0);
  const converted = rows.reduce((s, r) => s + r.converted, 0);
  return {
    event: c.event, windowHours: c.windowHours, interval: c.interval, timeZone: c.timeZone,
    sent, converted, rate: sent ? converted / sent : 0,
    series: rows.map((r) => ({ at: r.bucket.toISOString(), sent: r.sent, converted: r.converted })),
  };
}

/** The latest 100 runs, newest first, with what became of their messages. */
async function actionRuns(sql: Sql, workspaceId: string, id: string): Promise<ActionRun[]> {
  const runs = await sql<{ id: string; trigger: ActionRun['trigger']; status: ActionRun['status']; scheduled_for: Date; started_at: Date | null; finished_at: Date | null; duration_ms: number | null; matched: number | null; queued: number | null; skipped: Record<string, number>; error: string | null }[]>`
    select * from action_runs where workspace_id = ${workspaceId} and action_id = ${id} order by scheduled_for desc, id desc limit 100`;
  const outcomes = runs.length
    ? await sql<{ run_id: string; status: string; reason: string | null; n: number }[]>`
        select run_id, status, reason, count(*)::int as n from messages
        where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${id} and run_id = any(${runs.map((r) => r.id)}::uuid[])
        group by 1, 2, 3`
    : [];
  return runs.map((r) => {
    const mine = outcomes.filter((o) => o.run_id === r.id);
    return {
      id: r.id, trigger: r.trigger, status: r.status, scheduledFor: r.scheduled_for.toISOString(),
      startedAt: r.started_at?.toISOString() ?? null, finishedAt: r.finished_at?.toISOString() ?? null, durationMs: r.duration_ms,
      matched: r.matched, queued: r.queued, skipped: r.skipped,
      sent: mine.filter((o) => !['queued', 'sending', 'not_sent', 'failed'].includes(o.status)).reduce((s, o) => s + o.n, 0),
      notSent: Object.fromEntries(mine.filter((o) => o.status === 'not_sent').map((o) => [o.reason ?? 'unknown', o.n])),
      error: r.error,
    };
  });
}

// ---- tracking: one row per message with the columns asked for ---------------------------------------

export const MESSAGE_COLUMNS = ['messageId', 'customerId', 'status', 'reason', 'toAddress', 'createdAt', 'sentAt', 'runId'] as const;
export const TRACKING_COLUMNS = [...MESSAGE_COLUMNS, ...PREVIEW_COLUMNS, ...ACTION_TEMPLATE_KINDS];
const DEFAULT_COLUMNS = ['externalId', 'email', 'status', 'reason', 'sentAt', 'delivered', 'opened', 'clicked'];

function trackingColumns(q: TrackingQuery): string[] {
  const columns = q.columns ? q.columns.split(',').map((c) => c.trim()).filter(Boolean) : DEFAULT_COLUMNS;
  const unknown = columns.map((c, i) => [c, i] as const).filter(([c]) => !TRACKING_COLUMNS.includes(c as never) && !c.startsWith('custom.'));
  if (unknown.length) throw invalid('Unknown tracking columns', unknown.map(([c]) => ({ pointer: '/query/columns', detail: `unknown column "${c}"; one of ${TRACKING_COLUMNS.join(', ')} or custom.<path>` })));
  checkColumns(columns.filter((c) => c.startsWith('custom.')), '/query/columns');
  return columns;
}

interface TrackingRow extends Omit<CustomerSqlRow, 'created_at' | 'updated_at'> {
  customer_id: string;
  status: string;
  reason: string | null;
  to_address: string | null;
  created_at: Date;
  sent_at: Date | null;
  run_id: string | null;
  c_created_at: Date;
  c_updated_at: Date;
  actions: Record<string, string> | null;
}

function trackingQuery(sql: Sql, workspaceId: string, id: string, after: string | null, limit: number | null) {
  return sql<TrackingRow[]>`
    select m.id, m.customer_id, m.status, m.reason, m.to_address, m.created_at, m.sent_at, m.run_id,
      c.external_id, c.email, c.phone, c.time_zone, c.locale, c.custom, c.created_at as c_created_at, c.updated_at as c_updated_at,
      (select jsonb_object_agg(at.kind, ca.occurred_at order by ca.occurred_at desc) from customer_actions ca
         join action_templates at on at.workspace_id = ca.workspace_id and at.id = ca.action_template_id
         where ca.workspace_id = m.workspace_id and ca.customer_id = m.customer_id and ca.message_id = m.id) as actions
    from messages m join customers c on c.workspace_id = m.workspace_id and c.id = m.customer_id
    where m.workspace_id = ${workspaceId} and m.source_type = 'action' and m.source_id = ${id} ${after ? sql`and m.id > ${after}` : sql``}
    order by m.id ${limit ? sql`limit ${limit}` : sql``}`;
}

function values(r: TrackingRow, columns: string[]): Record<string, unknown> {
  const message: Record<string, unknown> = {
    messageId: r.id, customerId: r.customer_id, status: r.status, reason: r.reason, toAddress: r.to_address,
    createdAt: r.created_at.toISOString(), sentAt: r.sent_at?.toISOString() ?? null, runId: r.run_id,
  };
  const customer = pickColumns({ ...r, created_at: r.c_created_at, updated_at: r.c_updated_at }, columns.filter((c) => !(c in message) && !(ACTION_TEMPLATE_KINDS as readonly string[]).includes(c)));
  const out: Record<string, unknown> = {};
  for (const c of columns) {
    if (c in message) out[c] = message[c];
    else if ((ACTION_TEMPLATE_KINDS as readonly string[]).includes(c)) out[c] = r.actions?.[c] ? new Date(r.actions[c]).toISOString() : null;
    else out[c] = customer[c];
  }
  return out;
}

export async function trackingPage(deps: D, workspaceId: string, id: string, q: TrackingQuery) {
  const { sql } = deps.database;
  await findAction(sql, workspaceId, id, { deleted: true });
  const columns = trackingColumns(q);
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const rows = await trackingQuery(sql, workspaceId, id, (after?.[0] as string) ?? null, limit + 1);
  const page = rows.slice(0, limit);
  return {
    columns,
    data: page.map((r) => ({ messageId: r.id, customerId: r.customer_id, values: values(r, columns) })),
    nextCursor: rows.length > limit ? encodeCursor([page[page.length - 1]!.id]) : null,
  };
}

/** Every row as CSV, read from a server-side cursor in chunks: memory stays flat however many messages. */
export async function trackingCsv(deps: D, workspaceId: string, id: string, q: TrackingQuery): Promise<Readable> {
  const { sql } = deps.database;
  await findAction(sql, workspaceId, id, { deleted: true });
  const columns = trackingColumns(q);
  async function* rows() {
    for await (const chunk of trackingQuery(sql, workspaceId, id, null, null).cursor(500)) {
      for (const r of chunk) {
        const v = values(r, columns);
        yield columns.map((c) => (v[c] === null || v[c] === undefined ? '' : typeof v[c] === 'object' ? JSON.stringify(v[c]) : String(v[c])));
      }
    }
  }
  const out = stringify({ header: true, columns, escape_formulas: true });
  pipeline(Readable.from(rows()), out, () => {});
  return out;
}
