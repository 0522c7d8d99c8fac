// The send workers: claim due messages in batches (FOR UPDATE SKIP LOCKED, so processes share
// the work), re-check consent and address just before the provider call, render once per
// template version per batch, call providers with bounded concurrency, and record each outcome
// with its action template as soon as it is known, a few outcomes per statement (send.ledger.ts:
// a worker killed mid-batch leaves at most its calls in flight with an unknown outcome).
import type { Sql } from 'postgres';
import { isDatabaseDown, retryWhileDown } from '../../db/errors.ts';
import type { Deps } from '../../deps.ts';
import { helpOnce, type JobDefinition } from '../../jobs/queue.ts';
import type { Provider, SendOutcome } from '../../providers/types.ts';
import { loadChannelConfig } from '../channels/channels.service.ts';
import { compileFields, customerContext, fieldLayout, TemplateError, type CompiledTemplate } from '../templates/render.ts';
import { versionFields } from '../templates/templates.service.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { composePayload, trackingUrls } from './compose.ts';
import { SEND_QUEUE } from './outbox.ts';
import { HOLD_MS, ledger, releaseClaims, SENDING_LEASE_MS, type ClaimedMessage, type Ledger, type SendResult } from './send.ledger.ts';
import { inWindow, nextLocalTime } from '../../time/local-time.ts';
import type { WorkspaceSettings } from '../workspaces/workspaces.schemas.ts';
import type { CustomerSqlRow } from '../customers/customers.service.ts';

export { SENDING_LEASE_MS, type ClaimedMessage } from './send.ledger.ts';

export const MAX_ATTEMPTS = 5;
/**
 * A claimed message stays 'queued', out of other workers' reach until its lease ends; it turns
 * 'sending' only right before its provider call. So a worker that dies leaves 'sending' (unknown,
 * after SENDING_LEASE_MS) only the calls it had in flight, and the rest of its batch is due again
 * when the lease ends.
 */
export const CLAIM_LEASE_MS = 20_000;
/** A render over its time limit is tried once more after this long (see sendOne). */
export const RENDER_RETRY_MS = 30_000;
const RENDER_RETRY = 'render_time_limit';
const TIME_LIMIT = /render limit exceeded/;
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
  const claimed = await sql<ClaimedMessage[]>`
    with due as materialized (
      select workspace_id, id from messages
      where status = 'queued' and next_attempt_at <= ${now}
      order by next_attempt_at limit ${limit}
      for update skip locked
    )
    update messages m set next_attempt_at = ${lease}, updated_at = ${now}
    from due
    where m.workspace_id = due.workspace_id and m.id = due.id
    returning m.workspace_id, m.id, m.customer_id, m.channel, m.channel_config_id, m.template_id, m.template_version, m.source_type, m.source_id, m.event, m.attempts, m.reason, ${lease}::timestamptz as lease`;
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

interface Context {
  customers: Map<string, CustomerRow>;
  consents: Map<string, string>;
  subscriptions: Map<string, { id: string; kind: string; endpoint: string; keys: { p256dh: string; auth: string } | null }>;
  templates: Map<string, { compiled: CompiledTemplate; content: Record<string, unknown> } | Error>;
  configs: Map<string, Awaited<ReturnType<typeof loadChannelConfig>> | null>;
  workspaces: Map<string, { timeZone: string; settings: WorkspaceSettings }>;
  /** Messages already sent per customer and channel: [last day, last week], counted up as this batch sends. */
  sentCounts: Map<string, [number, number]>;
}

type CustomerRow = Omit<CustomerSqlRow, 'updated_at'> & { workspace_id: string };

const k = (...parts: (string | number)[]) => parts.join('/');

const DAY_MS = 24 * 3600_000;
const QUIET_DEFAULT_CHANNELS = ['sms', 'web_push', 'mobile_push'];

async function loadContext(deps: Pick<Deps, 'database' | 'db' | 'config' | 'clock'>, batch: ClaimedMessage[]): Promise<Context> {
  const { sql } = deps.database;
  // Each customer once: a join on repeated pairs would multiply the counts below.
  const pairs = [...new Map(batch.map((m) => [k(m.workspace_id, m.customer_id), [m.workspace_id, m.customer_id] as const])).values()];
  const ws = pairs.map((p) => p[0]);
  const ids = pairs.map((p) => p[1]);
  const [customers, consents, subscriptions, workspaces] = await Promise.all([
    sql<CustomerRow[]>`select c.* from customers c join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on c.workspace_id = u.w and c.id = u.id`,
    sql<{ workspace_id: string; customer_id: string; channel: string; status: string }[]>`
      select c.workspace_id, c.customer_id, c.channel, c.status from customer_consents c join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on c.workspace_id = u.w and c.customer_id = u.id`,
    sql<{ workspace_id: string; customer_id: string; id: string; kind: string; endpoint: string; keys: { p256dh: string; auth: string } | null }[]>`
      select distinct on (s.workspace_id, s.customer_id, s.kind) s.workspace_id, s.customer_id, s.id, s.kind, s.endpoint, s.keys
      from push_subscriptions s join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on s.workspace_id = u.w and s.customer_id = u.id
      order by s.workspace_id, s.customer_id, s.kind, s.created_at desc`,
    sql<{ id: string; time_zone: string; settings: WorkspaceSettings }[]>`select id, time_zone, settings from workspaces where id = any(${[...new Set(ws)]}::uuid[])`,
  ]);
  const now = deps.clock.now();
  const counts = await sql<{ workspace_id: string; customer_id: string; channel: string; day: number; week: number }[]>`
    select m.workspace_id, m.customer_id, m.channel,
      count(*) filter (where m.sent_at > ${new Date(now.getTime() - DAY_MS)})::int as day, count(*)::int as week
    from messages m join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on m.workspace_id = u.w and m.customer_id = u.id
    where m.sent_at > ${new Date(now.getTime() - 7 * DAY_MS)}
    group by 1, 2, 3`;
  const context: Context = {
    customers: new Map(customers.map((c) => [k(c.workspace_id, c.id), c])),
    consents: new Map(consents.map((c) => [k(c.workspace_id, c.customer_id, c.channel), c.status])),
    subscriptions: new Map(subscriptions.map((s) => [k(s.workspace_id, s.customer_id, s.kind), s])),
    templates: new Map(),
    configs: new Map(),
    workspaces: new Map(workspaces.map((w) => [w.id, { timeZone: w.time_zone, settings: w.settings }])),
    sentCounts: new Map(counts.map((c) => [k(c.workspace_id, c.customer_id, c.channel), [c.day, c.week]])),
  };
  // Compiled once per template version per batch.
  const versions = [...new Map(batch.map((m) => [k(m.workspace_id, m.template_id, m.template_version), m])).values()];
  const rows = await sql<{ workspace_id: string; template_id: string; version: number; content: Record<string, unknown>; channel: string }[]>`
    select v.workspace_id, v.template_id, v.version, v.content, t.channel from template_versions v
    join templates t on t.workspace_id = v.workspace_id and t.id = v.template_id
    join unnest(${versions.map((m) => m.workspace_id)}::uuid[], ${versions.map((m) => m.template_id)}::uuid[], ${versions.map((m) => m.template_version)}::int[]) u(w, t, v)
      on v.workspace_id = u.w and v.template_id = u.t and v.version = u.v`;
  for (const r of rows) {
    try {
      const { content, fields } = versionFields(r.channel as TemplateChannel, r.content);
      context.templates.set(k(r.workspace_id, r.template_id, r.version), { compiled: compileFields(fields), content });
    } catch (error) {
      context.templates.set(k(r.workspace_id, r.template_id, r.version), error as Error);
    }
  }
  for (const m of batch) {
    const key = k(m.workspace_id, m.channel_config_id);
    if (context.configs.has(key)) continue;
    // A config that cannot be opened (deleted, or sealed under another HERALD_SECRET) is missing;
    // a database that cannot be reached is not: the claim is given back (claimBatch).
    context.configs.set(key, await loadChannelConfig(deps, m.workspace_id, m.channel_config_id).catch((error: unknown) => {
      if (isDatabaseDown(error)) throw error;
      return null;
    }));
  }
  return context;
}

const CONSENT_CHANNELS = new Set(['email', 'sms', 'web_push', 'mobile_push']);

/** The link merge tags a template uses, signed; the others are not made at all. */
function mergeUrls(variables: string[], urls: { unsubscribe: string; view: string; forward: string }) {
  const used = new Set(variables);
  return {
    ...(used.has('unsubscribe_url') ? { unsubscribe_url: urls.unsubscribe } : {}),
    ...(used.has('view_url') ? { view_url: urls.view } : {}),
    ...(used.has('forward_url') ? { forward_url: urls.forward } : {}),
  };
}

function htmlPieces(compiled: CompiledTemplate, parts: Record<string, string[]>) {
  const layout = fieldLayout(compiled, 'html');
  const pieces = parts.html;
  return layout && pieces ? { layout, pieces } : undefined;
}

async function sendOne(deps: Pick<Deps, 'config' | 'providers' | 'clock'>, ctx: Context, m: ClaimedMessage, now: Date, start: (m: ClaimedMessage) => Promise<boolean>): Promise<SendResult | null> {
  const base: SendResult = { message: m, status: 'not_sent', reason: null, toAddress: null, rendered: null, providerMessageId: null, nextAttemptAt: null, started: false };
  const notSent = (reason: string): SendResult => ({ ...base, reason });
  const customer = ctx.customers.get(k(m.workspace_id, m.customer_id));
  if (!customer) return notSent('no_address');
  const consent = ctx.consents.get(k(m.workspace_id, m.customer_id, m.channel));
  if (CONSENT_CHANNELS.has(m.channel) && consent !== undefined && consent !== 'subscribed') return notSent('unsubscribed');
  const config = ctx.configs.get(k(m.workspace_id, m.channel_config_id));
  if (!config || config.channel !== m.channel) return notSent('channel_config_missing');
  const subscription = ctx.subscriptions.get(k(m.workspace_id, m.customer_id, m.channel));
  const address = m.channel === 'email' ? customer.email : m.channel === 'sms' ? customer.phone : m.channel === 'webhook' ? '' : (subscription?.endpoint ?? null);
  if (address === null) return notSent('no_address');
  const template = ctx.templates.get(k(m.workspace_id, m.template_id, m.template_version));
  if (!template || template instanceof Error) return notSent('render_error');
  const workspace = ctx.workspaces.get(m.workspace_id);
  const rules = workspace?.settings ?? {};
  const zone = customer.time_zone ?? workspace?.timeZone ?? 'UTC';
  const quiet = rules.quietHours;
  if (quiet && (quiet.channels ?? QUIET_DEFAULT_CHANNELS).includes(m.channel) && inWindow(now, zone, quiet.start, quiet.end)) {
    if (quiet.behavior === 'skip') return notSent('quiet_hours');
    return { ...base, status: 'queued', reason: 'quiet_hours: deferred to the end of the window', nextAttemptAt: nextLocalTime(now, zone, quiet.end) };
  }
  // Decided before the provider call and counted at once, so one batch cannot overshoot a cap.
  const cap = rules.frequencyCaps?.[m.channel as 'email'];
  const sentBefore = ctx.sentCounts.get(k(m.workspace_id, m.customer_id, m.channel)) ?? [0, 0];
  if (cap && ((cap.perDay !== undefined && sentBefore[0] >= cap.perDay) || (cap.perWeek !== undefined && sentBefore[1] >= cap.perWeek))) return notSent('frequency_capped');
  ctx.sentCounts.set(k(m.workspace_id, m.customer_id, m.channel), [sentBefore[0] + 1, sentBefore[1] + 1]);

  const secret = deps.config.secret!;
  const urls = trackingUrls(deps.config.publicUrl, secret, m.workspace_id, m.id);
  let values: Record<string, string>;
  const parts: Record<string, string[]> = {};
  try {
    values = await template.compiled.render({
      customer: customerContext({
        id: customer.id, externalId: customer.external_id, email: customer.email, phone: customer.phone, timeZone: customer.time_zone,
        locale: customer.locale, custom: customer.custom, createdAt: customer.created_at.toISOString(),
      }),
      event: m.event ?? undefined,
      ...mergeUrls(template.compiled.variables, urls),
      timeZone: zone,
    }, parts);
  } catch (error) {
    // The render time limit is wall-clock: a CPU-starved process or a long GC pause can hit it
    // with a template that renders in a millisecond (bench:scale saw it at load 8). Tried once
    // more later; a template that hits it twice is one that explodes.
    const message = (error as Error).message;
    if (error instanceof TemplateError && error.kind === 'limit' && TIME_LIMIT.test(message) && !m.reason?.startsWith(RENDER_RETRY)) {
      return { ...base, status: 'queued', reason: `${RENDER_RETRY}: ${message}`.slice(0, 500), nextAttemptAt: new Date(now.getTime() + RENDER_RETRY_MS) };
    }
    return notSent(`render_error: ${message}`.slice(0, 500));
  }
  const composed = composePayload({
    channel: m.channel as TemplateChannel, content: template.content, values, settings: config.settings, defaultSender: rules.defaultSender,
    address, subscription: subscription ?? null, urls, publicUrl: deps.config.publicUrl, channelConfigId: config.id,
    htmlPieces: htmlPieces(template.compiled, parts),
  });
  if ('error' in composed) return notSent(composed.error);
  const provider = deps.providers[config.provider];
  if (!provider) return notSent('channel_config_missing');
  if (!(await start(m))) return null;
  const attempts = m.attempts + 1;
  let outcome: SendOutcome;
  try {
    outcome = await provider.send({ messageId: m.id, workspaceId: m.workspace_id, payload: composed.payload, settings: config.settings, secrets: config.secrets, allowPrivateTargets: rules.allowPrivateNetworkTargets === true });
  } catch (error) {
    // A provider that throws has broken its contract; nobody knows whether the request left.
    outcome = { kind: 'unknown', reason: (error as Error).message };
  }
  const encoded = composed.payload.kind === 'email' ? composed.payload.encoded : undefined;
  const sent = { ...base, toAddress: address || null, rendered: composed.rendered, ...(encoded ? { encoded } : {}), started: true };
  switch (outcome.kind) {
    case 'sent':
      return { ...sent, status: 'sent', providerMessageId: outcome.providerMessageId };
    case 'rejected':
      return { ...sent, status: 'not_sent', reason: `provider_rejected: ${outcome.reason}`.slice(0, 500) };
    case 'gone':
      return { ...sent, status: 'not_sent', reason: 'no_address', ...(subscription ? { goneSubscription: subscription.id } : {}) };
    case 'unknown':
      return { ...sent, status: 'unknown', reason: outcome.reason.slice(0, 500) };
    case 'retry': {
      if (attempts >= MAX_ATTEMPTS) return { ...sent, status: 'failed', reason: `gave up after ${attempts} attempts: ${outcome.reason}`.slice(0, 500) };
      const backoff = outcome.retryAfterMs ?? Math.min(2 ** attempts * 1000, 10 * 60_000) * (0.75 + Math.random() / 2);
      // From the answer, not the batch's start: a call made late in a long batch waits its whole backoff too.
      return { ...sent, status: 'queued', reason: outcome.reason.slice(0, 500), nextAttemptAt: new Date(deps.clock.now().getTime() + backoff) };
    }
  }
}

/** Messages left in 'sending' by a worker that died: the request may have left, so never resend them blindly. */
export async function recoverAbandoned(sql: Sql, now: Date): Promise<number> {
  const rows = await sql`
    update messages set status = 'unknown', reason = 'the worker stopped while sending: the provider may or may not have it', updated_at = ${now}
    where status = 'sending' and updated_at < ${new Date(now.getTime() - SENDING_LEASE_MS)}
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
    select min(next_attempt_at) as at from messages where status = 'queued' and next_attempt_at > ${now}`;
  const at = row?.at ?? null;
  if (!at || at.getTime() - now.getTime() > 60_000) return null;
  await deps.boss.send(SEND_QUEUE, {}, { startAfter: at, singletonKey: 'next-retry', singletonSeconds: 5 });
  return at;
}
