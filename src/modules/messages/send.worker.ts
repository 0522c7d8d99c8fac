// The send workers: claim due messages in batches (FOR UPDATE SKIP LOCKED, so processes share
// the work), re-check consent and address just before the provider call, render once per
// template version per batch, call providers with bounded concurrency, and record each outcome
// with its action template in a few set-based statements.
import type { Sql } from 'postgres';
import { isDatabaseDown, retryWhileDown } from '../../db/errors.ts';
import type { Deps } from '../../deps.ts';
import type { JobDefinition } from '../../jobs/queue.ts';
import type { Provider, SendOutcome } from '../../providers/types.ts';
import { loadChannelConfig } from '../channels/channels.service.ts';
import { compileFields, customerContext, fieldLayout, type CompiledTemplate } from '../templates/render.ts';
import { versionFields } from '../templates/templates.service.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { assignActions, type Assignment } from './action-templates.ts';
import { composePayload, trackingUrls } from './compose.ts';
import { SEND_QUEUE } from './outbox.ts';
import { inWindow, nextLocalTime } from '../../time/local-time.ts';
import type { WorkspaceSettings } from '../workspaces/workspaces.schemas.ts';
import type { CustomerSqlRow } from '../customers/customers.service.ts';

export const MAX_ATTEMPTS = 5;
/** A message claimed longer ago than this by a worker that vanished has an unknown outcome. */
export const SENDING_LEASE_MS = 5 * 60_000;
/** How long a worker holds a claimed batch while the database is unreachable (below the lease). */
const HOLD_MS = SENDING_LEASE_MS / 2;
const CONCURRENCY = 32;

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
  event: Record<string, unknown> | null;
  attempts: number;
}

interface Result {
  message: ClaimedMessage;
  status: 'sent' | 'queued' | 'not_sent' | 'failed' | 'unknown';
  reason: string | null;
  toAddress: string | null;
  rendered: Record<string, unknown> | null;
  providerMessageId: string | null;
  nextAttemptAt: Date | null;
  goneSubscription?: string;
  /** Put off (quiet hours), not tried: the attempt is given back. */
  deferred?: boolean;
}

export type ProviderRegistry = Record<string, Provider>;

/** Claims up to `limit` due messages and sends them; returns how many were claimed. */
export async function sendDueMessages(deps: Pick<Deps, 'database' | 'db' | 'clock' | 'config' | 'providers'>, limit = 500): Promise<number> {
  const { sql } = deps.database;
  const now = deps.clock.now();
  const claimed = await sql<ClaimedMessage[]>`
    update messages m set status = 'sending', attempts = m.attempts + 1, updated_at = ${now}
    from (
      select workspace_id, id from messages
      where status = 'queued' and next_attempt_at <= ${now}
      order by next_attempt_at limit ${limit}
      for update skip locked
    ) due
    where m.workspace_id = due.workspace_id and m.id = due.id
    returning m.workspace_id, m.id, m.customer_id, m.channel, m.channel_config_id, m.template_id, m.template_version, m.source_type, m.source_id, m.event, m.attempts`;
  if (claimed.length === 0) return 0;
  let context: Context;
  try {
    context = await loadContext(deps, claimed);
  } catch (error) {
    // Nothing was sent: give the batch back rather than leave it 'sending' until the lease sweep
    // calls it unknown (the database went away between the claim and the sends).
    if (isDatabaseDown(error)) await retryWhileDown(() => releaseClaims(sql, claimed, now), HOLD_MS);
    throw error;
  }
  const results: Result[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, claimed.length) }, async () => {
      while (next < claimed.length) results.push(await sendOne(deps, context, claimed[next++]!, now));
    }),
  );
  // The provider calls are made, so the outcomes are known and must be kept: while the database
  // is unreachable the write is retried rather than the batch left 'sending' for the lease sweep
  // to call unknown. A retry after a commit whose answer was lost writes the same outcome again.
  await retryWhileDown(() => recordResults(sql, results, now), HOLD_MS);
  return claimed.length;
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
    context.configs.set(key, await loadChannelConfig(deps, m.workspace_id, m.channel_config_id).catch(() => null));
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

async function sendOne(deps: Pick<Deps, 'config' | 'providers'>, ctx: Context, m: ClaimedMessage, now: Date): Promise<Result> {
  const base: Result = { message: m, status: 'not_sent', reason: null, toAddress: null, rendered: null, providerMessageId: null, nextAttemptAt: null };
  const notSent = (reason: string): Result => ({ ...base, reason });
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
    return { ...base, status: 'queued', reason: 'quiet_hours: deferred to the end of the window', nextAttemptAt: nextLocalTime(now, zone, quiet.end), deferred: true };
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
    return notSent(`render_error: ${(error as Error).message}`.slice(0, 500));
  }
  const composed = composePayload({
    channel: m.channel as TemplateChannel, content: template.content, values, settings: config.settings, defaultSender: rules.defaultSender,
    address, subscription: subscription ?? null, urls, publicUrl: deps.config.publicUrl, channelConfigId: config.id,
    htmlPieces: htmlPieces(template.compiled, parts),
  });
  if ('error' in composed) return notSent(composed.error);
  const provider = deps.providers[config.provider];
  if (!provider) return notSent('channel_config_missing');
  let outcome: SendOutcome;
  try {
    outcome = await provider.send({ messageId: m.id, workspaceId: m.workspace_id, payload: composed.payload, settings: config.settings, secrets: config.secrets, allowPrivateTargets: rules.allowPrivateNetworkTargets === true });
  } catch (error) {
    // A provider that throws has broken its contract; nobody knows whether the request left.
    outcome = { kind: 'unknown', reason: (error as Error).message };
  }
  const sent = { ...base, toAddress: address || null, rendered: composed.rendered };
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
      if (m.attempts >= MAX_ATTEMPTS) return { ...sent, status: 'failed', reason: `gave up after ${m.attempts} attempts: ${outcome.reason}`.slice(0, 500) };
      const backoff = outcome.retryAfterMs ?? Math.min(2 ** m.attempts * 1000, 10 * 60_000) * (0.75 + Math.random() / 2);
      return { ...sent, status: 'queued', reason: outcome.reason.slice(0, 500), nextAttemptAt: new Date(now.getTime() + backoff) };
    }
  }
}

async function recordResults(sql: Sql, results: Result[], now: Date): Promise<void> {
  const rows = results.map((r) => ({
    workspace_id: r.message.workspace_id, id: r.message.id, status: r.status, reason: r.reason, to_address: r.toAddress,
    rendered: r.rendered, provider_message_id: r.providerMessageId, next_attempt_at: r.nextAttemptAt?.toISOString() ?? null,
    sent_at: r.status === 'sent' ? now.toISOString() : null, deferred: r.deferred === true,
  }));
  const assignments: Assignment[] = results.flatMap((r) => {
    const kind = r.status === 'sent' ? 'sent' : r.status === 'not_sent' ? 'not_sent' : r.status === 'failed' ? 'failed' : null;
    const m = r.message;
    return kind ? [{ workspaceId: m.workspace_id, messageId: m.id, customerId: m.customer_id, sourceType: m.source_type, sourceId: m.source_id, kind, occurredAt: now, touchpoint: { channel: m.channel, ...(r.reason ? { reason: r.reason } : {}) } }] : [];
  });
  const gone = results.flatMap((r) => (r.goneSubscription ? [[r.message.workspace_id, r.goneSubscription] as const] : []));
  await sql.begin(async (tx) => {
    await tx`
      update messages m set
        -- A delivery webhook can overtake this write, and a lease sweep can have called the
        -- outcome unknown: only those two states give way to what the worker learned.
        status = case when m.status in ('sending', 'unknown') then r.status else m.status end,
        reason = case when m.status in ('sending', 'unknown') then r.reason else m.reason end,
        to_address = coalesce(r.to_address, m.to_address), rendered = coalesce(r.rendered, m.rendered),
        provider_message_id = coalesce(r.provider_message_id, m.provider_message_id), next_attempt_at = coalesce(r.next_attempt_at, m.next_attempt_at),
        sent_at = coalesce(r.sent_at, m.sent_at), attempts = m.attempts - case when r.deferred then 1 else 0 end, updated_at = ${now}
      from json_to_recordset(${JSON.stringify(rows)}::json)
        as r(workspace_id uuid, id uuid, status text, reason text, to_address text, rendered jsonb, provider_message_id text, next_attempt_at timestamptz, sent_at timestamptz, deferred boolean)
      where m.workspace_id = r.workspace_id and m.id = r.id`;
    await assignActions(tx, assignments);
    if (gone.length) {
      await tx`delete from push_subscriptions s using unnest(${gone.map((g) => g[0])}::uuid[], ${gone.map((g) => g[1])}::uuid[]) u(w, id) where s.workspace_id = u.w and s.id = u.id`;
    }
  });
}

/**
 * Gives claimed messages back to the queue, their attempt not counted: nothing was sent. Only
 * this claim's rows (its updated_at), so a repeat never releases another worker's claim.
 */
async function releaseClaims(sql: Sql, claimed: ClaimedMessage[], claimedAt: Date): Promise<void> {
  await sql`
    update messages m set status = 'queued', attempts = m.attempts - 1, updated_at = ${new Date(claimedAt.getTime() + 1)}
    from unnest(${claimed.map((m) => m.workspace_id)}::uuid[], ${claimed.map((m) => m.id)}::uuid[]) as u(w, id)
    where m.workspace_id = u.w and m.id = u.id and m.status = 'sending' and m.updated_at = ${claimedAt}`;
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
export async function drainDueMessages(deps: Parameters<typeof sendDueMessages>[0], loops = 3, maxBatches = 400): Promise<number> {
  let sent = 0;
  let batches = 0;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      for (let n; batches++ < maxBatches && (n = await sendDueMessages(deps)) > 0; ) sent += n;
    }),
  );
  return sent;
}

export const sendJob: JobDefinition = {
  name: SEND_QUEUE,
  queue: { retryLimit: 2, expireInSeconds: 600, notify: true } as never,
  work: { pollingIntervalSeconds: 2, batchSize: 1 },
  // A floor under NOTIFY, and the wake-up for retries whose time has come.
  cron: '* * * * *',
  handler: async (deps) => {
    await recoverAbandoned(deps.database.sql, deps.clock.now());
    await drainDueMessages(deps);
  },
};
