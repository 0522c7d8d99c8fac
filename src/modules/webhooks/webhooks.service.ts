// Delivery events from providers. The signature is checked over the raw body before anything is
// parsed or stored; events are deduplicated by the provider's event id and applied in one
// set-based pass; the answer is 2xx only once the transaction has committed.
import { createHmac, createPublicKey, createVerify, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Deps } from '../../deps.ts';
import { HeraldError, notFound } from '../../http/errors.ts';
import { open } from '../../security/secrets.ts';
import { applyMessageEvents, type ApplyResult, type MessageEventInput, type MessageEventKind } from '../messages/message-events.ts';
import { isUuid } from '../../ids.ts';


/** How far a signed timestamp may be from now: SendGrid signs each delivery attempt afresh. */
export const WEBHOOK_TOLERANCE_SECONDS = 10 * 60;

const invalidSignature = (detail: string) => new HeraldError(401, 'invalid_signature', 'Unauthorized', detail);

interface ConfigRow {
  workspace_id: string;
  id: string;
  provider: string;
  settings: Record<string, unknown>;
  sealed_secrets: string | null;
}

/**
 * The config a provider posts events for. A deleted one too: the mail it sent still bounces,
 * gets reported as spam and unsubscribed from, and those must reach the messages and consents
 * (its verification key and auth token are kept with it).
 */
async function configById(deps: Pick<Deps, 'database'>, id: string, providers: string[]): Promise<ConfigRow> {
  const [row] = await deps.database.sql<ConfigRow[]>`
    select workspace_id, id, provider, settings, sealed_secrets from channel_configs where id = ${id}`;
  // An unknown config and one of another provider look the same from outside.
  if (!row || !providers.includes(row.provider)) throw notFound('Webhook');
  return row;
}

// Verification keys, parsed once per key (a config's key rarely changes; the cache is bounded).
const publicKeys = new Map<string, KeyObject>();
function publicKeyOf(key: string): KeyObject {
  let parsed = publicKeys.get(key);
  if (!parsed) {
    if (publicKeys.size >= 1000) publicKeys.clear();
    parsed = createPublicKey(key.includes('BEGIN') ? key : `-----BEGIN PUBLIC KEY-----\n${key}\n-----END PUBLIC KEY-----`);
    publicKeys.set(key, parsed);
  }
  return parsed;
}

/**
 * SendGrid's check (what @sendgrid/eventwebhook does: ECDSA P-256, SHA-256 over the timestamp
 * then the body, a DER signature in base64) with node:crypto, over the exact bytes received. The
 * library's pure-JS big integers took ~4 ms of CPU per 5,000-event batch; test/webhooks.test.ts
 * checks both agree.
 */
export function verifySendgridSignature(publicKey: string, raw: Buffer, signature: string, timestamp: string): boolean {
  try {
    return createVerify('sha256').update(timestamp).update(raw).verify({ key: publicKeyOf(publicKey), dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

const SENDGRID_EVENTS: Record<string, MessageEventKind> = {
  processed: 'processed', deferred: 'deferred', delivered: 'delivered', open: 'opened', click: 'clicked', bounce: 'bounced',
  dropped: 'failed', spamreport: 'complained', unsubscribe: 'unsubscribed', group_unsubscribe: 'unsubscribed', group_resubscribe: 'resubscribed',
};

const MAX_SECONDS = 253_402_300_800; // 10000-01-01
const DATA_FIELDS = ['url', 'useragent', 'ip', 'reason', 'type', 'status', 'response', 'attempt'] as const;

export async function receiveSendgridEvents(
  deps: Pick<Deps, 'database' | 'clock'>, configId: string, raw: Buffer, headers: { signature?: string; timestamp?: string },
): Promise<ApplyResult & { ignored: number }> {
  const config = await configById(deps, configId, ['sendgrid']);
  const publicKey = config.settings.eventWebhookPublicKey;
  if (typeof publicKey !== 'string') throw invalidSignature('This config has no Event Webhook verification key');
  if (!headers.signature || !headers.timestamp || !/^\d{1,12}$/.test(headers.timestamp)) throw invalidSignature('Missing or malformed signature headers');
  if (Math.abs(deps.clock.now().getTime() / 1000 - Number(headers.timestamp)) > WEBHOOK_TOLERANCE_SECONDS) throw invalidSignature('The signed timestamp is stale');
  if (!verifySendgridSignature(publicKey, raw, headers.signature, headers.timestamp)) throw invalidSignature('The signature does not match the body');

  let batch: unknown;
  try {
    batch = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HeraldError(400, 'malformed_json', 'Bad Request', 'The body is not JSON');
  }
  if (!Array.isArray(batch)) throw new HeraldError(400, 'validation_failed', 'Bad Request', 'SendGrid posts an array of events');
  const events: MessageEventInput[] = [];
  let ignored = 0;
  const now = deps.clock.now();
  for (const e of batch as Record<string, unknown>[]) {
    const kind = typeof e?.event === 'string' ? SENDGRID_EVENTS[e.event] : undefined;
    const messageId = e?.herald_message_id;
    if (!kind || typeof messageId !== 'string' || !isUuid(messageId) || typeof e.sg_event_id !== 'string') {
      ignored++;
      continue;
    }
    // Seconds since the epoch; anything else (or a date past year 9999) is dated on arrival.
    const at = typeof e.timestamp === 'number' && e.timestamp >= 0 && e.timestamp < MAX_SECONDS ? new Date(e.timestamp * 1000) : now;
    const data: Record<string, unknown> = { provider: 'sendgrid', event: e.event };
    for (const f of DATA_FIELDS) if (e[f] !== undefined) data[f === 'useragent' ? 'userAgent' : f] = e[f];
    events.push({
      workspaceId: config.workspace_id, messageId, kind, occurredAt: at, providerEventId: `sendgrid:${e.sg_event_id}`, data,
      // A hard bounce takes the address off the list; a "blocked" one (soft) does not.
      unsubscribes: kind === 'unsubscribed' || kind === 'complained' || (kind === 'bounced' && e.type !== 'blocked'),
    });
  }
  const result = await applyMessageEvents(deps.database.sql, events);
  return { ...result, ignored };
}

/** Twilio's X-Twilio-Signature: HMAC-SHA1 over the URL and the sorted form parameters. */
export function twilioSignature(authToken: string, url: string, params: URLSearchParams): string {
  const keys = [...new Set(params.keys())].sort();
  let data = url;
  for (const k of keys) for (const v of params.getAll(k).sort()) data += k + v;
  return createHmac('sha1', authToken).update(data, 'utf8').digest('base64');
}

const TWILIO_STATUSES: Record<string, MessageEventKind> = { delivered: 'delivered', undelivered: 'failed', failed: 'failed' };

export async function receiveSmsReceipt(
  deps: Pick<Deps, 'database' | 'clock' | 'config'>, configId: string, url: string, raw: string, signature: string | undefined,
): Promise<ApplyResult & { ignored: number }> {
  const config = await configById(deps, configId, ['twilio']);
  const secrets = config.sealed_secrets ? open(deps.config.secret!, `channel-config/${config.workspace_id}/${config.id}`, config.sealed_secrets) : {};
  if (!secrets.authToken) throw invalidSignature('This config has no auth token');
  const params = new URLSearchParams(raw);
  const expected = Buffer.from(twilioSignature(secrets.authToken, url, params));
  const given = Buffer.from(signature ?? '');
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalidSignature('The signature does not match');
  const sid = params.get('MessageSid');
  const status = params.get('MessageStatus') ?? '';
  const kind = TWILIO_STATUSES[status];
  if (!sid || !kind || params.get('AccountSid') !== config.settings.accountSid) return { stored: 0, duplicates: 0, unknownMessages: 0, ignored: 1 };
  // The callback's URL names the message (?message=, signed with the rest of the URL); its
  // provider id must match too. Callbacks without it (messages sent before migration 0011) count as unknown.
  const messageId = new URL(url).searchParams.get('message');
  const [message] = messageId && isUuid(messageId) ? await deps.database.sql<{ id: string }[]>`
    select id from messages where workspace_id = ${config.workspace_id} and id = ${messageId} and provider_message_id = ${sid}` : [];
  if (!message) return { stored: 0, duplicates: 0, unknownMessages: 1, ignored: 0 };
  const errorCode = params.get('ErrorCode');
  // 21610: the recipient replied STOP to this sender. Their unsubscribe, recorded as one (status,
  // action template, consent), not as a failure.
  const stopped = errorCode === '21610' && kind === 'failed';
  const result = await applyMessageEvents(deps.database.sql, [{
    workspaceId: config.workspace_id, messageId: message.id, kind: stopped ? 'unsubscribed' : kind, occurredAt: deps.clock.now(), providerEventId: `twilio:${sid}:${status}`,
    data: { provider: 'twilio', status, ...(errorCode ? { errorCode } : {}) },
    unsubscribes: stopped,
  }]);
  return { ...result, ignored: 0 };
}
