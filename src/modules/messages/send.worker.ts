// The send workers: claim due messages in batches (FOR UPDATE SKIP LOCKED, so processes share
// the work), re-check consent and address just before the provider call, render once per
// template version per batch, call providers with bounded concurrency, and record each outcome
// with its action template as soon as it is known, a few outcomes per statement (send.ledger.ts:
// a worker killed mid-batch leaves at most its calls in flight with an unknown outcome).
import type { Sql } from 'postgres';
import { isDatabaseDown, retryWhileDown } from '../../db/errors.ts';
import type { Deps } from '../../deps.ts';
import { helpOnce, type JobDefinition } from '../../jobs/queue.ts';
import type { Provider } from '../../providers/types.ts';
import { SEND_QUEUE } from './outbox.ts';
import { loadContext, type Context } from './send.context.ts';
import { HOLD_MS, ledger, releaseClaims, SENDING_LEASE_MS, type ClaimedMessage, type Ledger } from './send.ledger.ts';
import { pokeQueueVacuum } from './queue-maintenance.ts';
import { sendOne } from './send.one.ts';

export { SENDING_LEASE_MS, type ClaimedMessage } from './send.ledger.ts';
export { MAX_ATTEMPTS, RENDER_RETRY_MS, RETRY_MAX_MS } from './send.one.ts';

/**
 * A claimed message stays 'queued', out of other workers' reach until its lease ends (its queue
 * row's due_at); it turns 'sending' only right before its provider call. So a worker that dies
 * leaves 'sending' (unknown, after SENDING_LEASE_MS) only the calls it had in flight, and the rest
 * of its batch is due again when the lease ends.
 */
export const CLAIM_LEASE_MS = 20_000;
const CONCURRENCY = 32;
/** Claim loops per send job (drainDueMessages). */
const LOOPS = 3;
/** How often idle slots look for due messages while others still wait on providers. */
const POLL_MS = 500;
/** Provider calls one worker process can have in flight: at most that many unknown outcomes when it dies. */
export const SEND_SLOTS = LOOPS * CONCURRENCY;

export type ProviderRegistry = Record<string, Provider>;

type SendDeps = Pick<Deps, 'database' | 'db' | 'clock' | 'config' | 'providers'>;

/** Claims up to `limit` due messages and sends them; returns how many were claimed. */
export async function sendDueMessages(deps: SendDeps, limit = 500): Promise<number> {
  return sendBatches(deps, limit, { batches: 1 }, false);
}

/** A claimed batch on its way: its messages share a lease and a context. */
interface Batch {
  now: Date;
  lease: Date;
  messages: ClaimedMessage[];
  context: Context;
  /** Messages not yet through a slot. */
  left: number;
  /** Messages this claim decided (sent, or not sent and why). */
  decided: Set<string>;
  /** The writes of their outcomes. */
  records: Promise<void>[];
}

async function claimBatch(deps: SendDeps, limit: number): Promise<Batch | null> {
  const { sql } = deps.database;
  const now = deps.clock.now();
  // The lease is also the claim's fence: the statements that act on claimed rows match it.
  const lease = new Date(now.getTime() + CLAIM_LEASE_MS);
  // The locking select runs once, as a materialized CTE: as a subquery of the UPDATE, a row
  // changed concurrently made PostgreSQL re-run it (EvalPlanQual) over and over, and with three
  // workers claims spun for minutes with every ledger write queued behind them (bench:scale).
  // The lease is written to the narrow queue row; the message row is only read.
  const rows = await sql<(ClaimedMessage & { queue_workspace_id: string; queue_id: string; status: string | null })[]>`
    with due as materialized (
      select workspace_id, message_id from message_queue
      where due_at <= ${now} and not sending
      order by due_at limit ${limit}
      for update skip locked
    ), leased as (
      update message_queue q set due_at = ${lease}
      from due
      where q.workspace_id = due.workspace_id and q.message_id = due.message_id
      returning q.workspace_id, q.message_id
    )
    select l.workspace_id as queue_workspace_id, l.message_id as queue_id, m.status, m.workspace_id, m.id, m.customer_id, m.channel, m.channel_config_id, m.template_id, m.template_version, m.source_type, m.source_id, m.step_id, m.event, m.attempts, m.reason, ${lease}::timestamptz as lease
    from leased l left join messages m on m.workspace_id = l.workspace_id and m.id = l.message_id`;
  // A queue row whose message is gone or no longer 'queued' (set aside by hand, say) is dropped,
  // not sent: the queue heals instead of every writer of a status having to remember it.
  const stale = rows.filter((r) => r.status !== 'queued');
  if (stale.length) {
    await sql`
      delete from message_queue q using unnest(${stale.map((r) => r.queue_workspace_id)}::uuid[], ${stale.map((r) => r.queue_id)}::uuid[]) u(w, id)
      where q.workspace_id = u.w and q.message_id = u.id and q.due_at = ${lease} and not q.sending`;
  }
  const claimed: ClaimedMessage[] = rows.filter((r) => r.status === 'queued');
  // Dead queue rows slow every claim down: vacuumed in the background when they pile up.
  pokeQueueVacuum(sql);
  if (claimed.length === 0) return null;
  try {
    const context = await loadContext(deps, claimed);
    return { now, lease, messages: claimed, context, left: claimed.length, decided: new Set(), records: [] };
  } catch (error) {
    // Nothing was sent: give the batch back now rather than when its lease ends (the database
    // went away between the claim and the sends).
    if (isDatabaseDown(error)) await retryWhileDown(() => releaseClaims(sql, claimed, lease, now), HOLD_MS);
    throw error;
  }
}

async function sendClaimed(deps: SendDeps, book: Ledger, batch: Batch, m: ClaimedMessage): Promise<void> {
  try {
    const result = await sendOne(deps, batch.context, m, batch.now, book.start);
    if (!result) return;
    batch.decided.add(m.id);
    // Written by the ledger's next flush, before the slot's next call is marked 'sending'.
    batch.records.push(book.record(result));
  } finally {
    if (--batch.left === 0) {
      await Promise.all(batch.records);
      // Not started here (the mark failed, or the claim was lost to another worker after its lease).
      const unstarted = batch.messages.filter((c) => !batch.decided.has(c.id));
      if (unstarted.length) await retryWhileDown(() => releaseClaims(deps.database.sql, unstarted, batch.lease, batch.now), HOLD_MS);
    }
  }
}

/**
 * CONCURRENCY slots send claimed messages; when none is left, one claim (at most `budget.batches`
 * in all) fills the queue again while the other slots finish their calls, so a slow provider
 * call holds its slot only. With `poll`, while some slots still wait on providers and nothing is
 * due, the idle ones look again every POLL_MS: a call that hangs until its deadline must not hold
 * back the retries that come due meanwhile. Returns how many messages were claimed.
 */
async function sendBatches(deps: SendDeps, limit: number, budget: { batches: number; onFull?: (() => void) | undefined }, poll: boolean): Promise<number> {
  const book = ledger(deps.database.sql, deps.clock);
  const queue: { m: ClaimedMessage; batch: Batch }[] = [];
  let claiming: Promise<boolean> | null = null;
  let waiting: Promise<void> | null = null;
  let busy = 0;
  let claimed = 0;
  const claim = () =>
    (claiming ??= (async () => {
      if (budget.batches <= 0) return false;
      const batch = await claimBatch(deps, limit);
      if (!batch) return false;
      budget.batches--;
      claimed += batch.messages.length;
      if (batch.messages.length >= limit) budget.onFull?.();
      for (const m of batch.messages) queue.push({ m, batch });
      return true;
    })().finally(() => (claiming = null)));
  const slot = async () => {
    for (;;) {
      const item = queue.shift();
      if (item) {
        busy++;
        try {
          await sendClaimed(deps, book, item.batch, item.m);
        } finally {
          busy--;
        }
      } else if (!(await claim())) {
        if (!poll || busy === 0 || budget.batches <= 0) return;
        await (waiting ??= new Promise<void>((r) => setTimeout(r, POLL_MS)).then(() => {
          waiting = null;
        }));
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, slot));
  return claimed;
}

/**
 * Messages left in 'sending' by a worker that died (their mark's lease, SENDING_LEASE_MS, has
 * passed): the request may have left, so never resend them blindly; their outcome is unknown.
 */
export async function recoverAbandoned(sql: Sql, now: Date): Promise<number> {
  const rows = await sql`
    with swept as (
      delete from message_queue where due_at < ${now} and sending returning workspace_id, message_id
    )
    update messages m set status = 'unknown', reason = 'the worker stopped while sending: the provider may or may not have it', updated_at = ${now}
    from swept s where m.workspace_id = s.workspace_id and m.id = s.message_id and m.status = 'sending'
    returning 1`;
  return rows.length;
}

/**
 * Sends until nothing is due. Three loops (measured best on 2 cores) run side by side (SKIP LOCKED keeps their batches apart),
 * so one batch's rendering and provider calls overlap the other's database round trips.
 */
export async function drainDueMessages(deps: SendDeps, loops = LOOPS, maxBatches = 400, onFull?: () => void): Promise<number> {
  const budget = { batches: maxBatches, onFull };
  const claimed = await Promise.all(Array.from({ length: loops }, () => sendBatches(deps, 500, budget, true)));
  return claimed.reduce((a, b) => a + b, 0);
}

export const sendJob: JobDefinition = {
  name: SEND_QUEUE,
  queue: { retryLimit: 2, expireInSeconds: 600, notify: true } as never,
  work: { pollingIntervalSeconds: 2, batchSize: 1 },
  // A floor under NOTIFY (and under the wake-ups below).
  cron: '* * * * *',
  handler: async (deps) => {
    await recoverAbandoned(deps.database.sql, deps.clock.now());
    // A full batch means a backlog (a large action run is one wake-up): one more job lets a free
    // worker join, as flow ticks do (SKIP LOCKED keeps the batches apart). Once per job, and
    // throttled to one a second, so it stops with the backlog.
    const callHelp = helpOnce(() => deps.boss.send(SEND_QUEUE, {}, { singletonKey: 'help', singletonSeconds: 1 }));
    await drainDueMessages(deps, LOOPS, 400, callHelp);
    await wakeForNextRetry(deps);
  },
};

/**
 * Retries, deferred messages and the claims of a worker that died come due later: a wake-up is
 * scheduled for the earliest of them within the next minute (past that, the per-minute cron
 * does), so a 2 s backoff waits about 2 s and not until the next minute. At most one wake-up per
 * 5 s is scheduled, however many jobs finish meanwhile; each one schedules the next.
 */
export async function wakeForNextRetry(deps: Pick<Deps, 'database' | 'boss' | 'clock'>): Promise<Date | null> {
  const now = deps.clock.now();
  const [row] = await deps.database.sql<{ at: Date | null }[]>`
    select min(due_at) as at from message_queue where due_at > ${now} and not sending`;
  const at = row?.at ?? null;
  if (!at || at.getTime() - now.getTime() > 60_000) return null;
  await deps.boss.send(SEND_QUEUE, {}, { startAfter: at, singletonKey: 'next-retry', singletonSeconds: 5 });
  return at;
}
