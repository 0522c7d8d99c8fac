// One claimed message from checks to outcome: consent, address, quiet hours and frequency caps
// re-checked just before the provider call, the render (its time limit tried twice), the
// payload, the 'sending' mark (the ledger's start) right before the call, and what the answer
// means for the message (sent, retried with backoff, unknown and never resent, not sent and why).
import type { Deps } from '../../deps.ts';
import type { SendOutcome } from '../../providers/types.ts';
import { inWindow, nextLocalTime } from '../../time/local-time.ts';
import type { MergeData } from '../templates/merge-data.ts';
import { customerContext, fieldLayout, TemplateError, type CompiledTemplate } from '../templates/render.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { leanContent } from './as-sent.ts';
import { composePayload, trackingUrls } from './compose.ts';
import { k, type Context } from './send.context.ts';
import type { ClaimedMessage, FrequencyCap, SendResult } from './send.ledger.ts';

/**
 * Attempts of a provider call that may be tried again (a 429, a 5xx known not to have been
 * accepted), before the message is given up as failed (its dead letter: the `failed` action
 * template). With the default backoff (retryBackoffMs) the retries come after about 15 s, 1 min,
 * 4 min, 16 min and 1 h: a provider's outage of an hour loses nothing.
 */
export const MAX_ATTEMPTS = 6;
/** The longest wait before a retry. */
export const RETRY_MAX_MS = 60 * 60_000;

/** The wait before the retry that follows attempt `attempts`: base, then 4 times longer each time, at most RETRY_MAX_MS, with ±25% jitter. */
export function retryBackoffMs(attempts: number, baseMs: number): number {
  return Math.min(baseMs * 4 ** (attempts - 1), RETRY_MAX_MS) * (0.75 + Math.random() / 2);
}
/** A render over its time limit is tried once more after this long (see sendOne). */
export const RENDER_RETRY_MS = 30_000;
const RENDER_RETRY = 'render_time_limit';
const TIME_LIMIT = /render limit exceeded/;
const QUIET_DEFAULT_CHANNELS = ['sms', 'web_push', 'mobile_push'];

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

/**
 * promo_code and points_balance for the render. Not taken from the message's event: a flow puts
 * the code it issued there (event.promo_code), but so may the triggering event's own properties
 * (a code the customer used); the newest code issued to the customer is the flow's by send time.
 */
function mergeDataOf(ctx: Context, m: ClaimedMessage): MergeData {
  return ctx.mergeData.get(k(m.workspace_id, m.customer_id)) ?? {};
}

function htmlPieces(compiled: CompiledTemplate, parts: Record<string, string[]>) {
  const layout = fieldLayout(compiled, 'html');
  const pieces = parts.html;
  return layout && pieces ? { layout, pieces } : undefined;
}

/** What became of one claimed message, or null when its claim was lost before the call (start() said no). */
export async function sendOne(deps: Pick<Deps, 'config' | 'providers' | 'clock'>, ctx: Context, m: ClaimedMessage, now: Date, start: (m: ClaimedMessage, cap?: FrequencyCap) => Promise<boolean>): Promise<SendResult | null> {
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
      ...mergeDataOf(ctx, m),
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
  const pieces = htmlPieces(template.compiled, parts);
  const composed = composePayload({
    channel: m.channel as TemplateChannel, content: template.content, values, settings: config.settings, defaultSender: rules.defaultSender,
    address, subscription: subscription ?? null, urls, publicUrl: deps.config.publicUrl, channelConfigId: config.id, messageId: m.id,
    htmlPieces: pieces,
  });
  if ('error' in composed) return notSent(composed.error);
  const provider = deps.providers[config.provider];
  if (!provider) return notSent('channel_config_missing');
  // A capped channel's start is checked again in the database, against every process's sends
  // (this batch's counts are its own): over the cap, it is not started and comes back later.
  if (!(await start(m, cap && (cap.perDay !== undefined || cap.perWeek !== undefined) ? cap : undefined))) return null;
  const attempts = m.attempts + 1;
  let outcome: SendOutcome;
  try {
    outcome = await provider.send({ messageId: m.id, workspaceId: m.workspace_id, payload: composed.payload, settings: config.settings, secrets: config.secrets, allowPrivateTargets: rules.allowPrivateNetworkTargets === true });
  } catch (error) {
    // A provider that throws has broken its contract; nobody knows whether the request left.
    outcome = { kind: 'unknown', reason: (error as Error).message };
  }
  const encoded = composed.payload.kind === 'email' ? composed.payload.encoded : undefined;
  // Stored lean (as-sent.ts): an email's html as its layout's values, rebuilt when read.
  const sent = { ...base, toAddress: address || null, rendered: leanContent(composed.rendered, pieces), ...(encoded ? { encoded } : {}), started: true };
  switch (outcome.kind) {
    case 'sent':
      return { ...sent, status: 'sent', providerMessageId: outcome.providerMessageId };
    case 'rejected':
      return { ...sent, status: 'not_sent', reason: `provider_rejected: ${outcome.reason}`.slice(0, 500) };
    case 'gone':
      return { ...sent, status: 'not_sent', reason: 'no_address', ...(subscription ? { goneSubscription: subscription.id } : {}) };
    case 'unsubscribed':
      return { ...sent, status: 'not_sent', reason: `unsubscribed: ${outcome.reason}`.slice(0, 500), unsubscribes: true };
    case 'unknown':
      return { ...sent, status: 'unknown', reason: outcome.reason.slice(0, 500) };
    case 'retry': {
      if (attempts >= MAX_ATTEMPTS) return { ...sent, status: 'failed', reason: `gave up after ${attempts} attempts: ${outcome.reason}`.slice(0, 500) };
      const backoff = outcome.retryAfterMs ?? retryBackoffMs(attempts, deps.config.retryBaseMs);
      // From the answer, not the batch's start: a call made late in a long batch waits its whole backoff too.
      return { ...sent, status: 'queued', reason: outcome.reason.slice(0, 500), nextAttemptAt: new Date(deps.clock.now().getTime() + backoff) };
    }
  }
}
