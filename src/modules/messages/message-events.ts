// What happened to messages after they left: opens, clicks and unsubscribes from the tracking
// routes, delivery events from provider webhooks. One set-based path for one event or 5,000:
// stored once (deduplicated by the provider's event id), the message's status moved forward
// only, the action template assigned on the first occurrence, and consent updated for
// unsubscribes, complaints and hard bounces.
import type { Sql, TransactionSql } from 'postgres';
import { newId } from '../../ids.ts';
import { STATUS_RANK } from './status.ts';

/** Event kinds, and the message status and action template each one stands for. */
export const EVENT_EFFECTS = {
  delivered: { status: 'delivered', action: 'delivered' },
  opened: { status: 'opened', action: 'opened' },
  clicked: { status: 'clicked', action: 'clicked' },
  bounced: { status: 'bounced', action: 'bounced' },
  complained: { status: 'complained', action: 'complained' },
  unsubscribed: { status: 'unsubscribed', action: 'unsubscribed' },
  forwarded: { status: null, action: 'forwarded' },
  failed: { status: 'failed', action: 'failed' },
  deferred: { status: null, action: null },
  processed: { status: null, action: null },
} as const;
export type MessageEventKind = keyof typeof EVENT_EFFECTS;

export interface MessageEventInput {
  workspaceId: string;
  messageId: string;
  kind: MessageEventKind;
  occurredAt: Date;
  /** The provider's id for the event: the same id twice is stored once. */
  providerEventId?: string | null;
  /** Touchpoint and provider details: url, userAgent, ip, reason... */
  data?: Record<string, unknown>;
  /** A hard bounce takes the address off the list; a soft one does not. */
  unsubscribes?: boolean;
}

export interface ApplyResult {
  stored: number;
  duplicates: number;
  unknownMessages: number;
}

/** The rank of a status expression, in SQL. */
const rankOf = (expr: string) => `case ${expr} ${Object.entries(STATUS_RANK).map(([s, r]) => `when '${s}' then ${r}`).join(' ')} else 0 end`;

export async function applyMessageEvents(sql: Sql | TransactionSql, events: MessageEventInput[]): Promise<ApplyResult> {
  if (events.length === 0) return { stored: 0, duplicates: 0, unknownMessages: 0 };
  const rows = events.map((e) => ({
    workspace_id: e.workspaceId, id: newId(), message_id: e.messageId, kind: e.kind, occurred_at: e.occurredAt.toISOString(),
    provider_event_id: e.providerEventId ?? null, data: e.data ?? {}, status: EVENT_EFFECTS[e.kind].status, action: EVENT_EFFECTS[e.kind].action,
    unsubscribes: e.unsubscribes ?? (e.kind === 'unsubscribed' || e.kind === 'complained'),
  }));
  const recordset = `json_to_recordset($1::json) as r(workspace_id uuid, id uuid, message_id uuid, kind text, occurred_at timestamptz,
    provider_event_id text, data jsonb, status text, action text, unsubscribes boolean)`;
  const run = async (tx: TransactionSql) => {
    // Two statements: first store what is new, then apply the effects of just those events. One
    // statement joining "known" to "stored" made the planner compare every pair (5,000 x 5,000).
    const [first] = await tx.unsafe<{ known: number; ids: string[] }[]>(
      `
      with known as (
        select r.* from ${recordset} join messages m on m.workspace_id = r.workspace_id and m.id = r.message_id
      ),
      stored as (
        insert into message_events (workspace_id, id, message_id, kind, occurred_at, provider_event_id, data)
        select workspace_id, id, message_id, kind, occurred_at, provider_event_id, data from known
        on conflict (workspace_id, provider_event_id) where provider_event_id is not null do nothing
        returning id
      )
      select (select count(*) from known)::int as known, coalesce((select array_agg(id) from stored), '{}') as ids`,
      [JSON.stringify(rows)],
    );
    const storedIds = new Set(first!.ids);
    const fresh = rows.filter((r) => storedIds.has(r.id));
    if (fresh.length) await applyEffects(tx, fresh);
    return { stored: fresh.length, duplicates: first!.known - fresh.length, unknownMessages: events.length - first!.known };
  };
  return 'savepoint' in sql ? run(sql as TransactionSql) : (sql as Sql).begin(run);
}

/** Status forward, action templates on first occurrence, consent off the list: for new events only. */
async function applyEffects(tx: TransactionSql, rows: object[]): Promise<void> {
  await tx.unsafe(
    `
    with fresh as (
      select r.*, m.customer_id, m.channel, m.source_type, m.source_id
      from json_to_recordset($1::json) as r(workspace_id uuid, id uuid, message_id uuid, kind text, occurred_at timestamptz,
        provider_event_id text, data jsonb, status text, action text, unsubscribes boolean)
      join messages m on m.workspace_id = r.workspace_id and m.id = r.message_id
    ),
    progressed as (
      update messages m set status = best.status, updated_at = now()
      from (
        select distinct on (workspace_id, message_id) workspace_id, message_id, status, ${rankOf('status')} as rank
        from fresh where status is not null order by workspace_id, message_id, ${rankOf('status')} desc
      ) best
      where m.workspace_id = best.workspace_id and m.id = best.message_id and best.rank > ${rankOf('m.status')}
      returning 1
    ),
    assigned as (
      insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at, touchpoint)
      select distinct on (f.workspace_id, at.id, f.message_id) f.workspace_id, f.id, at.id, f.customer_id, f.message_id, f.occurred_at,
        jsonb_build_object('channel', f.channel) || f.data
      from fresh f
      join action_templates at on at.workspace_id = f.workspace_id and at.source_type = f.source_type and at.source_id = f.source_id and at.kind = f.action
      order by f.workspace_id, at.id, f.message_id, f.occurred_at
      on conflict (workspace_id, action_template_id, message_id) do nothing
      returning 1
    ),
    off_list as (
      select distinct on (workspace_id, customer_id, channel) workspace_id, customer_id, channel, kind from fresh
      where unsubscribes and channel in ('email', 'sms')
    ),
    previous as (
      select o.*, c.status as from_status from off_list o
      left join customer_consents c on c.workspace_id = o.workspace_id and c.customer_id = o.customer_id and c.channel = o.channel
      where c.status is distinct from 'unsubscribed'
    ),
    consent as (
      insert into customer_consents (workspace_id, customer_id, channel, status, source, updated_at)
      select workspace_id, customer_id, channel, 'unsubscribed', 'message:' || kind, now() from previous
      on conflict (workspace_id, customer_id, channel) do update set status = 'unsubscribed', source = excluded.source, updated_at = excluded.updated_at
      returning 1
    ),
    history as (
      insert into consent_changes (workspace_id, id, customer_id, channel, from_status, to_status, source, changed_at)
      select workspace_id, gen_random_uuid(), customer_id, channel, from_status, 'unsubscribed', 'message:' || kind, now() from previous
      returning 1
    )
    select (select count(*) from progressed) + (select count(*) from assigned) + (select count(*) from consent) + (select count(*) from history) as effects`,
    [JSON.stringify(rows)],
  );
}
