// What happened to messages after they left: opens, clicks and unsubscribes from the tracking
// routes, delivery events from provider webhooks. One set-based path for one event or 5,000:
// stored once (deduplicated by the provider's event id), the message's status moved forward
// only, the action template assigned on the first occurrence, and consent updated for
// unsubscribes, complaints and hard bounces.
import type { Sql, TransactionSql } from 'postgres';
import { plainArray, textArray } from '../../db/arrays.ts';
import { newId, isUuid } from '../../ids.ts';
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
  // Kept on the message; consent is not given back on a provider's word (it comes through the API).
  resubscribed: { status: null, action: null },
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

/** The rank of the status an event kind stands for, in SQL (0 for kinds that move no status). */
const KIND_RANK = `case u.kind ${Object.entries(EVENT_EFFECTS).filter(([, e]) => e.status).map(([k, e]) => `when '${k}' then ${STATUS_RANK[e.status!]}`).join(' ')} else 0 end`;
/** The status and the action template an event kind stands for, in SQL. */
const STATUS_OF = (kind: string) => `case ${kind} ${Object.entries(EVENT_EFFECTS).filter(([, e]) => e.status).map(([k, e]) => `when '${k}' then '${e.status}'`).join(' ')} end`;
const ACTION_OF = (kind: string) => `case ${kind} ${Object.entries(EVENT_EFFECTS).filter(([, e]) => e.action).map(([k, e]) => `when '${k}' then '${e.action}'`).join(' ')} end`;
/** The rank of a message's current status, in SQL. */
const rankOf = (expr: string) => `case ${expr} ${Object.entries(STATUS_RANK).map(([s, r]) => `when '${s}' then ${r}`).join(' ')} else 0 end`;

const SEPARATOR = String.fromCharCode(30);
// Ids and kinds go unquoted into array literals: one with a comma or a brace would shift the
// columns, so each is checked (a caller's bug, thrown).

/**
 * Stores the events and applies their effects, all in one statement: the events are stored
 * first (a provider event id seen before is skipped) and everything else follows from the rows
 * actually stored (RETURNING), so a replayed event has no effect. Columns go as array literals
 * (src/db/arrays.ts): json_to_recordset over the same rows took a fifth of a 5,000-event batch,
 * and was parsed twice when effects were a second statement. Unsubscribes, rare, take a second
 * statement in the same transaction.
 */
export async function applyMessageEvents(sql: Sql | TransactionSql, events: MessageEventInput[]): Promise<ApplyResult> {
  if (events.length === 0) return { stored: 0, duplicates: 0, unknownMessages: 0 };
  // A webhook batch or a tracking hit is one workspace: the statement takes it as one parameter.
  // Mixed input (none today) is split, all parts in one transaction.
  const workspaceId = events[0]!.workspaceId;
  if (events.every((e) => e.workspaceId === workspaceId)) return applyToWorkspace(sql, workspaceId, events);
  const parts = Map.groupBy(events, (e) => e.workspaceId);
  const total = { stored: 0, duplicates: 0, unknownMessages: 0 };
  const run = async (tx: Sql | TransactionSql) => {
    for (const [id, part] of parts) {
      const r = await applyToWorkspace(tx, id, part);
      total.stored += r.stored;
      total.duplicates += r.duplicates;
      total.unknownMessages += r.unknownMessages;
    }
    return total;
  };
  return 'savepoint' in sql ? run(sql) : (sql as Sql).begin(run);
}

async function applyToWorkspace(sql: Sql | TransactionSql, workspaceId: string, events: MessageEventInput[]): Promise<ApplyResult> {
  const n = events.length;
  if (!isUuid(workspaceId)) throw new TypeError(`applyMessageEvents: malformed workspace id ${JSON.stringify(workspaceId)}`);
  const ids = new Array<string>(n), messageIds = new Array<string>(n), kinds = new Array<string>(n), times = new Array<number>(n);
  const providerIds = new Array<string>(n), data = new Array<string>(n), unsubscribing: string[] = [];
  for (let i = 0; i < n; i++) {
    const e = events[i]!;
    const time = e.occurredAt.getTime();
    if (!isUuid(e.messageId) || !Object.hasOwn(EVENT_EFFECTS, e.kind) || !Number.isFinite(time)) throw new TypeError(`applyMessageEvents: malformed event ${JSON.stringify([e.messageId, e.kind, time])}`);
    ids[i] = newId();
    messageIds[i] = e.messageId;
    kinds[i] = e.kind;
    times[i] = time;
    providerIds[i] = e.providerEventId ?? '';
    data[i] = e.data ? JSON.stringify(e.data) : '{}';
    if (e.unsubscribes ?? (e.kind === 'unsubscribed' || e.kind === 'complained')) unsubscribing.push(ids[i]!);
  }
  // JSON text never holds a raw control character (JSON.stringify escapes them): the documents go
  // joined by U+001E and are split in SQL, with no quoting to add here or to undo there. Times go
  // as milliseconds since the epoch (cheaper to write and to read than ISO text).
  const params = [workspaceId, plainArray(ids), plainArray(messageIds), plainArray(kinds), plainArray(times), textArray(providerIds), data.join(SEPARATOR)];
  const run = async (tx: Sql | TransactionSql) => {
    const [counts] = await tx.unsafe<{ known: number; stored: number }[]>(STORE_AND_APPLY, params);
    if (unsubscribing.length) await tx.unsafe(OFF_THE_LIST, [workspaceId, plainArray(unsubscribing)]);
    return { stored: counts!.stored, duplicates: counts!.known - counts!.stored, unknownMessages: n - counts!.known };
  };
  if (unsubscribing.length === 0 || 'savepoint' in sql) return run(sql);
  return (sql as Sql).begin(run);
}

// Events of unknown messages (or of another workspace's) are left out before the insert. Effects
// are applied to the stored rows only: the status moved forward to the highest of the batch's
// events for each message, the action template assigned on a message's first event of its kind
// (repeated opens and clicks stay events).
const STORE_AND_APPLY = `
  with input as (
    select $1::uuid as workspace_id, u.id, u.message_id, u.kind, timestamptz 'epoch' + u.ms * interval '1 millisecond' as occurred_at, u.provider_event_id, u.data
    from unnest($2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], string_to_array($7, chr(30))) as u(id, message_id, kind, ms, provider_event_id, data)
  ),
  known as (
    select u.* from input u where exists (select from messages m where m.workspace_id = u.workspace_id and m.id = u.message_id)
  ),
  stored as (
    insert into message_events (workspace_id, id, message_id, kind, occurred_at, provider_event_id, data)
    select workspace_id, id, message_id, kind, occurred_at, nullif(provider_event_id, ''), data::jsonb from known
    on conflict (workspace_id, provider_event_id) where provider_event_id is not null do nothing
    returning workspace_id, id, message_id, kind, occurred_at, data
  ),
  progressed as (
    update messages m set status = best.status, updated_at = now()
    from (
      select distinct on (workspace_id, message_id) workspace_id, message_id, ${STATUS_OF('u.kind')} as status, ${KIND_RANK} as rank
      from stored u where ${KIND_RANK} > 0 order by workspace_id, message_id, rank desc
    ) best
    where m.workspace_id = best.workspace_id and m.id = best.message_id and best.rank > ${rankOf('m.status')}
  ),
  assigned as (
    insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at, touchpoint)
    select distinct on (s.workspace_id, at.id, s.message_id) s.workspace_id, s.id, at.id, m.customer_id, s.message_id, s.occurred_at,
      jsonb_build_object('channel', m.channel) || s.data
    from stored s
    -- The events' foreign key holds their messages until commit: customer_actions has none (migration 0012).
    join messages m on m.workspace_id = s.workspace_id and m.id = s.message_id
    join action_templates at on at.workspace_id = s.workspace_id and at.source_type = m.source_type and at.source_id = m.source_id and at.step_id = m.step_id and at.channel = m.channel and at.kind = ${ACTION_OF('s.kind')}
    order by s.workspace_id, at.id, s.message_id, s.occurred_at
    on conflict (workspace_id, action_template_id, message_id) do nothing
  )
  select (select count(*) from known)::int as known, (select count(*) from stored)::int as stored`;

// Addresses off the list: consent 'unsubscribed', with its history, once per customer and
// channel, for the rows of `off_list` (workspace_id, customer_id, channel, kind: the source).
const OFF_LIST_TAIL = `
  previous as (
    select o.*, c.status as from_status from off_list o
    left join customer_consents c on c.workspace_id = o.workspace_id and c.customer_id = o.customer_id and c.channel = o.channel
    where c.status is distinct from 'unsubscribed'
  ),
  consent as (
    insert into customer_consents (workspace_id, customer_id, channel, status, source, updated_at)
    select workspace_id, customer_id, channel, 'unsubscribed', 'message:' || kind, now() from previous
    on conflict (workspace_id, customer_id, channel) do update set status = 'unsubscribed', source = excluded.source, updated_at = excluded.updated_at
  )
  insert into consent_changes (workspace_id, id, customer_id, channel, from_status, to_status, source, changed_at)
  select workspace_id, gen_random_uuid(), customer_id, channel, from_status, 'unsubscribed', 'message:' || kind, now() from previous`;

// The given events that were stored just now (their ids are new: a duplicate was not stored)
// take their customer's address off the list.
const OFF_THE_LIST = `
  with off_list as (
    select distinct on (m.workspace_id, m.customer_id, m.channel) m.workspace_id, m.customer_id, m.channel, e.kind
    from unnest($2::uuid[]) as u(id)
    join message_events e on e.workspace_id = $1::uuid and e.id = u.id
    join messages m on m.workspace_id = e.workspace_id and m.id = e.message_id
    -- A test send went to whatever address the tester gave: its unsubscribes are not the customer's.
    where m.channel in ('email', 'sms') and m.source_type <> 'test'
  ),${OFF_LIST_TAIL}`;

// The given messages' addresses off the list (a provider said the recipient opted out when it
// was asked to send them: an SMS STOP).
const MESSAGES_OFF_THE_LIST = `
  with off_list as (
    select distinct on (m.workspace_id, m.customer_id, m.channel) m.workspace_id, m.customer_id, m.channel, 'provider_opt_out' as kind
    from unnest($1::uuid[], $2::uuid[]) as u(w, id)
    join messages m on m.workspace_id = u.w and m.id = u.id
    where m.channel in ('email', 'sms') and m.source_type <> 'test'
  ),${OFF_LIST_TAIL}`;

/** Takes the addresses of these messages off the list (idempotent: an address already off stays as it is). */
export async function messagesOffTheList(sql: Sql | TransactionSql, messages: { workspaceId: string; messageId: string }[]): Promise<void> {
  if (!messages.length) return;
  await sql.unsafe(MESSAGES_OFF_THE_LIST, [plainArray(messages.map((m) => m.workspaceId)), plainArray(messages.map((m) => m.messageId))]);
}
