// The send pipeline's writes between a claim and its outcomes. A claimed message stays 'queued'
// under its claim's lease (its message_queue row's due_at); it turns 'sending' (its attempt
// counted, its queue row marked) right before its provider call, and its outcome is written as
// soon as it is known: a worker that dies leaves 'sending' only the calls it had in flight. Every
// write matches the claim's lease (its fence), so a claim that ran out and was taken by another
// worker is never acted on twice.
import type { Sql, TransactionSql } from 'postgres';
import { plainArray } from '../../db/arrays.ts';
import { isDatabaseDown, retryWhileDown } from '../../db/errors.ts';
import type { Clock } from '../../deps.ts';
import { newId } from '../../ids.ts';
import { stringifyWith, type EncodedStrings } from '../../providers/json.ts';
import { messagesOffTheList } from './message-events.ts';
import { CAP_LOOKBACK_MS } from './send.context.ts';

const DAY_MS = 24 * 3600_000;
/** How long a capped message refused at its start (the cap full with sends in flight) waits before it is claimed again. */
export const CAP_HOLD_MS = 30_000;

/** A message left 'sending' longer ago than this by a worker that vanished has an unknown outcome. */
export const SENDING_LEASE_MS = 5 * 60_000;
/** How long a worker holds a claimed batch while the database is unreachable (below the lease). */
export const HOLD_MS = SENDING_LEASE_MS / 2;

export interface ClaimedMessage {
  workspace_id: string;
  id: string;
  customer_id: string;
  channel: string;
  channel_config_id: string;
  template_id: string;
  template_version: number;
  source_type: string;
  source_id: string;
  /** A flow's send step ('' for actions): its action templates are the step's. */
  step_id: string;
  event: Record<string, unknown> | null;
  attempts: number;
  /** Why it is still queued, if it was tried before (a retry, a deferral). */
  reason: string | null;
  /** The claim's lease: until then the message is this claim's (see CLAIM_LEASE_MS). */
  lease: Date;
}

export interface SendResult {
  message: ClaimedMessage;
  status: 'sent' | 'queued' | 'not_sent' | 'failed' | 'unknown';
  reason: string | null;
  toAddress: string | null;
  rendered: Record<string, unknown> | null;
  /** Strings of `rendered` already encoded as JSON (the email's html and text; see json.ts). */
  encoded?: EncodedStrings;
  providerMessageId: string | null;
  nextAttemptAt: Date | null;
  goneSubscription?: string;
  /** The provider says the recipient opted out: the address comes off the list (consent). */
  unsubscribes?: boolean;
  /** The provider was called (the message was marked 'sending' and its attempt counted first). */
  started: boolean;
}

/** A workspace's frequency cap of a channel (workspace settings). */
export interface FrequencyCap {
  perDay?: number | undefined;
  perWeek?: number | undefined;
}

/** A start, with the cap of its channel when the workspace has one. */
interface Start {
  message: ClaimedMessage;
  cap: FrequencyCap | undefined;
}

interface Waiter<T, R> {
  item: T;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

/**
 * A send loop's writes between its claims and their outcomes, coalesced: the outcomes that arrive
 * while a statement runs, and the provider calls that became ready meanwhile (marked 'sending',
 * their attempt counted), go together in the next statement. A slot's next call is marked with
 * its previous outcome or after it, so a worker that dies leaves at most one message per slot
 * without the outcome it learned. start() answers false when the claim was lost (its lease ended and another worker
 * claimed the message, or the database could not be reached): the message is not sent here.
 * Outcomes are known and must be kept: while the database is unreachable their write is retried
 * (a retry after a commit whose answer was lost writes the same outcome again); if it fails for
 * good, nothing more is started.
 */
export function ledger(sql: Sql, clock: Clock) {
  let starts: Waiter<Start, boolean>[] = [];
  let outcomes: Waiter<SendResult, void>[] = [];
  let busy = false;
  let broken = false;
  const write = async (o: Waiter<SendResult, void>[], s: Waiter<Start, boolean>[]) => {
    const results = o.map((w) => w.item);
    let started = new Set<string>();
    try {
      started = await recordAndStart(sql, results, broken ? [] : s.map((w) => w.item), clock.now());
      for (const w of o) w.resolve();
    } catch (error) {
      if (isDatabaseDown(error)) {
        // Nothing more is started now (the claims are given back); the outcomes are kept: their
        // write alone is retried while the database is down.
        try {
          if (results.length) await retryWhileDown(() => recordAndStart(sql, results, [], clock.now()), HOLD_MS);
          for (const w of o) w.resolve();
        } catch (again) {
          broken = true;
          for (const w of o) w.reject(again);
        }
      } else {
        broken = true;
        for (const w of [...o, ...s]) w.reject(error);
        return;
      }
    }
    for (const w of s) w.resolve(started.has(w.item.message.id));
  };
  const flush = async () => {
    while (starts.length || outcomes.length) {
      const [o, s] = [outcomes, starts];
      starts = [];
      outcomes = [];
      await write(o, s);
    }
    busy = false;
  };
  const wake = () => {
    if (busy) return;
    busy = true;
    setImmediate(() => void flush());
  };
  return {
    start: (message: ClaimedMessage, cap?: FrequencyCap) => new Promise<boolean>((resolve, reject) => (starts.push({ item: { message, cap }, resolve, reject }), wake())),
    /** Settles once written; a rejection is the caller's to handle (it is not left unhandled here). */
    record: (item: SendResult) => {
      const written = new Promise<void>((resolve, reject) => (outcomes.push({ item, resolve, reject }), wake()));
      written.catch(() => {});
      return written;
    },
  };
}

export type Ledger = ReturnType<typeof ledger>;

/**
 * The outcome rows as `v(j, c)`: each row's fields as one jsonb parameter and its content as sent
 * as a json one (messages.rendered is json: validated once, stored as written; as jsonb it was
 * parsed into a tree, the largest part of the statement's work per email), not one JSON array.
 * An email whose text holds a character past Latin-1 is a two-byte string in V8, and one such row
 * made the whole array two-byte, copied at twice the size and encoded to UTF-8 on the slow path.
 * The count is padded to a power of two with nulls (which match no message) so that a connection
 * prepares a handful of statements, not one per count.
 */
function outcomeRows(sql: Sql | TransactionSql, rows: Array<[string, string | null]>) {
  if (rows.length === 0) return sql`(select null::text as j, null::text as c where false) as v`;
  let size = 8;
  while (size < rows.length) size *= 2;
  const padded: Array<[string | null, string | null]> = [...rows];
  while (padded.length < size) padded.push([null, null]);
  return sql`(values ${sql(padded as never)}) as v(j, c)`;
}

/**
 * The outcomes and the starts, in one commit (writeAndStart); with the locks of the capped
 * channels' customers first when some start is capped. Answers the ids started.
 */
async function recordAndStart(sql: Sql, results: SendResult[], starts: Start[], now: Date): Promise<Set<string>> {
  if (!starts.some((s) => s.cap)) return writeAndStart(sql, results, starts, now);
  // Starts of capped channels are counted against the messages of every process, under a lock
  // per customer and channel taken in one order, so that a start elsewhere waits for this one's
  // 'sending' mark and counts it.
  const keys = [...new Set(starts.flatMap((s) => (s.cap ? [`cap:${s.message.workspace_id}:${s.message.customer_id}:${s.message.channel}`] : [])))].sort();
  return sql.begin(async (tx) => {
    // One round trip, in the keys' order (a sorted subquery, scanned in order).
    await tx`select pg_advisory_xact_lock(hashtextextended(k, 0)) from (select k from unnest(${keys}::text[]) as k order by k) as s`;
    return writeAndStart(tx, results, starts, now);
  }) as Promise<Set<string>>;
}

/**
 * Each start's place among this statement's starts for the same customer and channel (0, 1...):
 * the statement counts the messages from before it, so a second start there counts the first.
 */
function ranks(starts: Start[]): number[] {
  const seen = new Map<string, number>();
  return starts.map((s) => {
    if (!s.cap) return 0;
    const key = `${s.message.workspace_id}/${s.message.customer_id}/${s.message.channel}`;
    const rank = seen.get(key) ?? 0;
    seen.set(key, rank + 1);
    return rank;
  });
}

/**
 * One statement: the outcomes with their action templates (the insert of assignActions, for the
 * rows actually written) and the push subscriptions found gone, then the starts; answers the ids
 * started.
 */
async function writeAndStart(sql: Sql | TransactionSql, results: SendResult[], starts: Start[], now: Date): Promise<Set<string>> {
  const sentAt = now.toISOString();
  // Row by row: the fields, and the content as sent with the strings already encoded for the provider spliced in.
  const rows = results.map((r): [string, string | null] => [JSON.stringify({
    workspace_id: r.message.workspace_id, id: r.message.id, status: r.status, reason: r.reason, to_address: r.toAddress,
    provider_message_id: r.providerMessageId, next_attempt_at: r.nextAttemptAt?.toISOString() ?? null,
    sent_at: r.status === 'sent' ? sentAt : null, started: r.started, lease: r.message.lease.toISOString(),
  }), r.rendered ? stringifyWith(r.rendered, r.encoded ?? [])! : null]);
  const assignments = results.flatMap((r) => {
    const kind = r.status === 'sent' ? 'sent' : r.status === 'not_sent' ? 'not_sent' : r.status === 'failed' ? 'failed' : null;
    const m = r.message;
    return kind ? [{ workspace_id: m.workspace_id, id: newId(), message_id: m.id, customer_id: m.customer_id, source_type: m.source_type, source_id: m.source_id, step_id: m.step_id, channel: m.channel, kind, touchpoint: { channel: m.channel, ...(r.reason ? { reason: r.reason } : {}) } }] : [];
  });
  const gone = results.flatMap((r) => (r.goneSubscription ? [[r.message.workspace_id, r.goneSubscription] as const] : []));
  const sendingUntil = new Date(now.getTime() + SENDING_LEASE_MS);
  const dayAgo = new Date(now.getTime() - DAY_MS);
  const weekAgo = new Date(now.getTime() - 7 * DAY_MS);
  const lookback = new Date(now.getTime() - CAP_LOOKBACK_MS);
  const capped = starts.filter((s) => s.cap);
  const rowsStarted = await sql<{ id: string }[]>`
    with r as materialized (
      select r.*, v.c::json as rendered from ${outcomeRows(sql, rows)} cross join lateral jsonb_to_record(v.j::jsonb)
        as r(workspace_id uuid, id uuid, status text, reason text, to_address text, provider_message_id text, next_attempt_at timestamptz, sent_at timestamptz, started boolean, lease timestamptz)
    ), dequeued as (
      -- An outcome ends its queue row, or moves it to the next attempt (below). One never started
      -- is still this claim's only while its lease holds (the claim's fence); a started one is.
      delete from message_queue q using r
      where q.workspace_id = r.workspace_id and q.message_id = r.id and r.status <> 'queued'
        and (r.started or (not q.sending and q.due_at = r.lease))
      returning q.workspace_id, q.message_id
    ), deferred as (
      update message_queue q set due_at = r.next_attempt_at
      from r
      where q.workspace_id = r.workspace_id and q.message_id = r.id and r.status = 'queued' and not r.started
        and not q.sending and q.due_at = r.lease
      returning q.workspace_id, q.message_id
    ), written as (
      update messages m set
        -- A delivery webhook can overtake this write, and a lease sweep can have called the
        -- outcome unknown: only those two states give way to what the worker learned (and
        -- 'queued', for a message this claim decided not to send).
        status = case when m.status in ('queued', 'sending', 'unknown') then r.status else m.status end,
        reason = case when m.status in ('queued', 'sending', 'unknown') then r.reason else m.reason end,
        to_address = coalesce(r.to_address, m.to_address), rendered = coalesce(r.rendered, m.rendered),
        provider_message_id = coalesce(r.provider_message_id, m.provider_message_id), next_attempt_at = coalesce(r.next_attempt_at, m.next_attempt_at),
        sent_at = coalesce(r.sent_at, m.sent_at), updated_at = ${now}
      from r
      where m.workspace_id = r.workspace_id and m.id = r.id
        and (r.started
          or exists (select from dequeued d where d.workspace_id = r.workspace_id and d.message_id = r.id)
          or exists (select from deferred d where d.workspace_id = r.workspace_id and d.message_id = r.id))
      returning m.workspace_id, m.id
    ), retried as (
      -- A started call to be tried again; its row is put back if a lease sweep took it meanwhile.
      -- Only for a message row written here (held until commit: message_queue has no foreign key).
      insert into message_queue (workspace_id, message_id, due_at)
      select r.workspace_id, r.id, r.next_attempt_at from r join written w on w.workspace_id = r.workspace_id and w.id = r.id
      where r.status = 'queued' and r.started
      on conflict (workspace_id, message_id) do update set due_at = excluded.due_at, sending = false
    ), assigned as (
      insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at, touchpoint)
      select a.workspace_id, a.id, t.id, a.customer_id, a.message_id, ${now}, a.touchpoint
      from json_to_recordset(${JSON.stringify(assignments)}::json)
        as a(workspace_id uuid, id uuid, message_id uuid, customer_id uuid, source_type text, source_id text, step_id text, channel text, kind text, touchpoint jsonb)
      join written w on w.workspace_id = a.workspace_id and w.id = a.message_id
      join action_templates t on t.workspace_id = a.workspace_id and t.source_type = a.source_type and t.source_id = a.source_id and t.step_id = a.step_id and t.channel = a.channel and t.kind = a.kind
      on conflict (workspace_id, message_id, action_template_id) do nothing
    ), gone as (
      delete from push_subscriptions s using unnest(${plainArray(gone.map((g) => g[0]))}::uuid[], ${plainArray(gone.map((g) => g[1]))}::uuid[]) u(w, id)
      where s.workspace_id = u.w and s.id = u.id
    ), marked as (
      -- The starts: still queued under this claim's lease (its fence), marked as being sent until
      -- SENDING_LEASE_MS from now (then recoverAbandoned calls the outcome unknown). One of a
      -- capped channel only while the customer's sends of the last day and week, those in flight
      -- included, are under the cap (under recordAndStart's lock).
      update message_queue q set sending = true, due_at = ${sendingUntil}
      from unnest(${plainArray(starts.map((s) => s.message.workspace_id))}::uuid[], ${plainArray(starts.map((s) => s.message.id))}::uuid[],
        ${plainArray(starts.map((s) => s.message.lease.toISOString()))}::timestamptz[], ${plainArray(starts.map((s) => s.message.customer_id))}::uuid[],
        ${plainArray(starts.map((s) => s.message.channel))}::text[], ${plainArray(starts.map((s) => s.cap?.perDay ?? 'NULL'))}::int[],
        ${plainArray(starts.map((s) => s.cap?.perWeek ?? 'NULL'))}::int[], ${plainArray(ranks(starts))}::int[]) as u(w, id, lease, customer, channel, per_day, per_week, rank)
      where q.workspace_id = u.w and q.message_id = u.id and not q.sending and q.due_at = u.lease
        and (u.per_day is null and u.per_week is null or (
          select (u.per_day is null or count(*) filter (where s.status = 'sending' or coalesce(s.sent_at, s.updated_at) > ${dayAgo}) + u.rank < u.per_day)
            and (u.per_week is null or count(*) + u.rank < u.per_week)
          from messages s
          where s.workspace_id = u.w and s.customer_id = u.customer and s.channel = u.channel and s.id <> u.id
            and s.created_at > ${lookback} and s.source_type <> 'test'
            -- Sent, in flight, or of unknown outcome (it most likely reached the customer).
            and (s.status = 'sending' or s.sent_at > ${weekAgo} or (s.status = 'unknown' and s.updated_at > ${weekAgo}))))
      returning q.workspace_id, q.message_id
    )${capped.length ? sql`, held as (
      -- A capped start refused above (the cap is full with sends in flight elsewhere, which this
      -- batch did not count) waits CAP_HOLD_MS under this claim's fence, then is claimed and
      -- counted again: it would be due again at once, and claimed over and over meanwhile.
      update message_queue q set due_at = ${new Date(now.getTime() + CAP_HOLD_MS)}
      from unnest(${plainArray(capped.map((s) => s.message.workspace_id))}::uuid[], ${plainArray(capped.map((s) => s.message.id))}::uuid[],
        ${plainArray(capped.map((s) => s.message.lease.toISOString()))}::timestamptz[]) as u(w, id, lease)
      where q.workspace_id = u.w and q.message_id = u.id and not q.sending and q.due_at = u.lease
        and not exists (select from marked k where k.workspace_id = u.w and k.message_id = u.id)
    )` : sql``}
    update messages m set status = 'sending', attempts = m.attempts + 1, updated_at = ${now}
    from marked k
    where m.workspace_id = k.workspace_id and m.id = k.message_id
    returning m.id`;
  // Rare (a provider's opt-out answer): a statement of its own after the outcomes, idempotent, so
  // the retry of a write whose answer was lost repeats it harmlessly.
  const optedOut = results.filter((r) => r.unsubscribes);
  if (optedOut.length) await messagesOffTheList(sql, optedOut.map((r) => ({ workspaceId: r.message.workspace_id, messageId: r.message.id })));
  return new Set(rowsStarted.map((r) => r.id));
}

/**
 * Gives claimed messages that were not started back to the queue, due at once. Only this claim's
 * rows (its lease), so a repeat never releases another worker's claim.
 */
export async function releaseClaims(sql: Sql, claimed: ClaimedMessage[], lease: Date, now: Date): Promise<void> {
  await sql`
    update message_queue q set due_at = ${now}
    from unnest(${claimed.map((m) => m.workspace_id)}::uuid[], ${claimed.map((m) => m.id)}::uuid[]) as u(w, id)
    where q.workspace_id = u.w and q.message_id = u.id and not q.sending and q.due_at = ${lease}`;
}
