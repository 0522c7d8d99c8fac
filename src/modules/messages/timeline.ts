// A customer's timeline: events, messages, action templates and flow decisions, merged newest
// first, with stable cursors ([at, id]). One query answers a whole page of customers (a lateral
// join per customer, each kind read newest first from its own (workspace, customer, time)
// index and cut at the page size), so REST and the GraphQL loaders share it. Flow decisions are
// stored a tick's worth per row (flow_decisions) and listed one per entry here: a decision's id
// is its row's id with its position in the last four hex digits (the view flow_decision_list).
import type { Sql } from 'postgres';
import { invalid } from '../../http/errors.ts';
import { cursorTime, decodeCursor, encodeCursor } from '../../http/pagination.ts';
import { isUuid } from '../../ids.ts';


export const TIMELINE_KINDS = ['event', 'message', 'action', 'flow'] as const;
export type TimelineKind = (typeof TIMELINE_KINDS)[number];

export interface TimelineOptions {
  first: number;
  after?: string | undefined;
  kinds?: readonly TimelineKind[] | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
}

export interface TimelineRow {
  customerId: string;
  kind: TimelineKind;
  id: string;
  at: Date;
  data: Record<string, unknown>;
  cursor: string;
}

export interface TimelinePage {
  entries: TimelineRow[];
  hasNextPage: boolean;
  nextCursor: string | null;
}

const DECISION_DATA = `jsonb_build_object('flowId', x.flow_id, 'version', x.version, 'entryId', x.entry_id, 'nodeId', x.node_id, 'nodeType', x.node_type, 'branch', x.branch, 'reason', x.reason)`;

const BRANCHES: Record<TimelineKind, { table: string; at: string; data: string }> = {
  event: { table: 'events x', at: 'x.occurred_at', data: `jsonb_build_object('type', x.type, 'properties', x.properties)` },
  message: {
    table: 'messages x', at: 'x.created_at',
    data: `jsonb_build_object('channel', x.channel, 'status', x.status, 'reason', x.reason, 'templateId', x.template_id, 'templateVersion', x.template_version,
      'toAddress', x.to_address, 'sentAt', x.sent_at,
      'source', jsonb_build_object('type', x.source_type, 'id', x.source_id, 'stepId', x.step_id, 'entryId', x.entry_id))`,
  },
  action: {
    table: 'customer_actions x join action_templates at on at.workspace_id = x.workspace_id and at.id = x.action_template_id', at: 'x.occurred_at',
    data: `jsonb_build_object('kind', at.kind, 'actionTemplateId', at.id, 'messageId', x.message_id, 'sourceType', at.source_type, 'sourceId', at.source_id, 'touchpoint', x.touchpoint)`,
  },
  flow: { table: 'flow_decision_list x', at: 'x.at', data: DECISION_DATA },
};

/**
 * The flow branch: the customer's newest rows of flow_decisions (one more than the page, since
 * the row the cursor is in may give nothing), expanded into decisions, then cut at the cursor
 * and the page size. `rowMax` is the cursor id with ffff in its last four digits: the last id
 * its row can give.
 */
function flowBranch(bounds: { cursor: { at: string; id: string; rowMax: string } | null; since: string | null; until: string | null }): string {
  const rows = [
    bounds.cursor ? `(x.at, x.id) <= (${bounds.cursor.at}, ${bounds.cursor.rowMax})` : '',
    bounds.since ? `x.at >= ${bounds.since}` : '',
    bounds.until ? `x.at < ${bounds.until}` : '',
  ].filter(Boolean);
  return `(select 'flow'::text as kind, x.id, x.at, ${DECISION_DATA} as data from (
      select overlay(d.id::text placing lpad(to_hex(u.n::int), 4, '0') from 33 for 4)::uuid as id, d.at, d.flow_id, d.version, d.entry_id,
        u.node_id, u.node_type, u.branch, d.reasons -> (u.n::int - 1) as reason
      from (select * from flow_decisions x where x.workspace_id = $1::uuid and x.customer_id = c.id ${rows.map((x) => `and ${x}`).join(' ')}
        order by x.at desc, x.id desc limit $3::int + 1) d
      cross join lateral unnest(d.node_ids, d.node_types, d.branches) with ordinality as u(node_id, node_type, branch, n)) x
    ${bounds.cursor ? `where (x.at, x.id) < (${bounds.cursor.at}, ${bounds.cursor.id})` : ''}
    order by x.at desc, x.id desc limit $3::int)`;
}

interface Shape {
  kinds: readonly TimelineKind[];
  cursor: boolean;
  since: boolean;
  until: boolean;
  /** One customer: a single value instead of unnest() lets PostgreSQL keep the prepared statement's generic plan (bench:graphql). */
  one: boolean;
}

// The statement depends only on the shape of the question (a few dozen shapes): built once each.
// Parameters: $1 workspace, $2 customer(s), $3 page size + 1, then the cursor's time and id, since,
// until, and the cursor's last row id for the flow branch, each when present, in that order.
const statements = new Map<string, string>();

function timelineSql(shape: Shape): string {
  const key = `${shape.kinds.join(',')}|${+shape.cursor}${+shape.since}${+shape.until}${+shape.one}`;
  let text = statements.get(key);
  if (text) return text;
  let n = 3;
  // The cursor's time as text: a timestamptz parameter would go through a JavaScript Date (postgres.js), which drops the microseconds.
  const at = shape.cursor ? { at: `$${++n}::text::timestamptz`, id: `$${++n}::uuid` } : null;
  const since = shape.since ? `$${++n}::timestamptz` : null;
  const until = shape.until ? `$${++n}::timestamptz` : null;
  const branches = shape.kinds.map((kind) => {
    if (kind === 'flow') return flowBranch({ cursor: at && { ...at, rowMax: `$${++n}::uuid` }, since, until });
    const b = BRANCHES[kind];
    const bounds: string[] = [];
    if (at) bounds.push(`(${b.at}, x.id) < (${at.at}, ${at.id})`);
    if (since) bounds.push(`${b.at} >= ${since}`);
    if (until) bounds.push(`${b.at} < ${until}`);
    return `(select '${kind}'::text as kind, x.id, ${b.at} as at, ${b.data} as data from ${b.table}
      where x.workspace_id = $1::uuid and x.customer_id = c.id ${bounds.map((x) => `and ${x}`).join(' ')}
      order by ${b.at} desc, x.id desc limit $3::int)`;
  });
  text = `select c.id as customer_id, t.kind, t.id, t.at, ${cursorTime('t.at')} as at_key, t.data from ${shape.one ? '(select $2::uuid as id)' : 'unnest($2::uuid[])'} as c(id)
     cross join lateral (select * from (${branches.join(' union all ')}) u order by at desc, id desc limit $3::int) t`;
  if (statements.size < 1000) statements.set(key, text);
  return text;
}

/** The first page after `after` of each customer's timeline. */
export async function timelines(sql: Sql, workspaceId: string, customerIds: string[], o: TimelineOptions): Promise<Map<string, TimelinePage>> {
  const out = new Map<string, TimelinePage>();
  if (!customerIds.length) return out;
  const after = decodeCursor(o.after, ['string', 'string']) as [string, string] | undefined;
  if (after && (!isUuid(after[1]) || Number.isNaN(Date.parse(after[0])))) throw invalid('The cursor is not one this API issued', [{ pointer: '/query/cursor', detail: 'is not a valid cursor' }]);
  const kinds = o.kinds?.length ? o.kinds : TIMELINE_KINDS;
  const one = customerIds.length === 1;
  const params: unknown[] = [workspaceId, one ? customerIds[0] : customerIds, o.first + 1];
  if (after) params.push(after[0], after[1]);
  if (o.since) params.push(o.since.toISOString());
  if (o.until) params.push(o.until.toISOString());
  // The flow branch's rows are cut at the last id the cursor's row can give (see flowBranch).
  if (after && kinds.includes('flow')) params.push(`${after[1].slice(0, 32)}ffff`);
  const rows = await sql.unsafe<{ customer_id: string; kind: TimelineKind; id: string; at: Date; at_key: string; data: Record<string, unknown> }[]>(
    timelineSql({ kinds, cursor: !!after, since: !!o.since, until: !!o.until, one }),
    params as never[],
    { prepare: true },
  );
  for (const id of customerIds) out.set(id, { entries: [], hasNextPage: false, nextCursor: null });
  for (const r of rows) {
    const page = out.get(r.customer_id)!;
    if (page.entries.length === o.first) {
      page.hasNextPage = true;
      continue;
    }
    page.entries.push({ customerId: r.customer_id, kind: r.kind, id: r.id, at: r.at, data: r.data, cursor: encodeCursor([r.at_key, r.id]) });
  }
  for (const page of out.values()) page.nextCursor = page.hasNextPage ? page.entries[page.entries.length - 1]!.cursor : null;
  return out;
}

/** Timeline entries of one kind by id (for the subscription, which hears of new rows by id; for flow decisions, of their rows' ids). */
export async function timelineEntries(sql: Sql, workspaceId: string, kind: TimelineKind, ids: string[]): Promise<TimelineRow[]> {
  const b = BRANCHES[kind];
  const rows = await sql.unsafe<{ customer_id: string; id: string; at: Date; at_key: string; data: Record<string, unknown> }[]>(
    `select x.customer_id, x.id, ${b.at} as at, ${cursorTime(b.at)} as at_key, ${b.data} as data from ${b.table} where x.workspace_id = $1::uuid and x.${kind === 'flow' ? 'row_id' : 'id'} = any($2::uuid[])`,
    [workspaceId, ids] as never[],
  );
  return rows.map((r) => ({ customerId: r.customer_id, kind, id: r.id, at: r.at, data: r.data, cursor: encodeCursor([r.at_key, r.id]) }));
}
