// The workload of `npm run load` (scripts/load.ts): what is seeded before the run, and the kinds
// of request it mixes, each an autocannon request that makes a fresh body (or path) every time
// and checks what Herald answers.
//   events     POST /v1/events, one event: a known customer (1 in 20 a "checkout.completed",
//              which the seeded flow turns into a sandbox email: the workers' share of the run)
//   batch      POST /v1/events, {"events": [LOAD_BATCH events]} (1 in 50 for a new externalId)
//   customers  POST /v1/customers, the upsert by externalId: 3 in 4 update a known customer's
//              custom fields, 1 in 4 create a new customer
//   timeline   GET /v1/customers/{id}/timeline, the first page of a known customer
//   webhooks   POST /webhooks/sendgrid/{configId}, a batch of LOAD_WEBHOOK_BATCH SendGrid events
//              (processed, delivered, open, click) for the seeded SendGrid messages, each signed
//              afresh with the config's Event Webhook key, each event with its own sg_event_id
import { randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type postgres from 'postgres';
import { v7 as uuidv7 } from 'uuid';
import type { heraldApi } from './bench-harness.ts';
import type { LoadRequest } from './bench-lib.ts';

export const KINDS = ['events', 'batch', 'customers', 'timeline', 'webhooks'] as const;
export type Kind = (typeof KINDS)[number];

export interface WorkloadSettings {
  customers: number;
  messages: number;
  batch: number;
  webhookBatch: number;
}

export interface Seeded {
  workspaceId: string;
  apiKey: string;
  sendgridConfigId: string;
  flowId: string;
  customerIds: string[];
  messageIds: string[];
  webhookKey: KeyObject;
}

/** What each kind's answers told, beyond their status: bodies that did not say what was expected. */
export interface Checks {
  /** Events acknowledged (accepted) by POST /v1/events, single and batch. */
  eventsAccepted: number;
  /** Webhook events stored, and those reported as duplicates or for unknown messages (both unexpected here). */
  webhookStored: number;
  webhookDuplicates: number;
  webhookUnknown: number;
  customersCreated: number;
  customersUpdated: number;
  /** 2xx answers whose body was not what the request should have got, by kind, and the first of them. */
  unexpected: Record<Kind, number>;
  firstUnexpected: string | null;
}

export const FLOW_EVENT = 'checkout.completed';
const EVENT_TYPES = ['page.viewed', 'product.viewed', 'cart.updated', 'order.placed'] as const;
const PLANS = ['free', 'pro', 'gold'] as const;
const SG_KINDS = ['processed', 'delivered', 'delivered', 'open', 'open', 'click'] as const;
const INSERT_CHUNK = 1000;

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const externalIdOf = (i: number) => `load-c${i}`;

/**
 * The workspace and its key (API), SendGrid and sandbox channel configs, a template and a live
 * flow (API); then the customers, and SendGrid messages already sent to them (SQL, as the send
 * worker would have left them, with their action templates), for the webhooks to refer to.
 */
export async function seedWorkload(api: ReturnType<typeof heraldApi>, rootToken: string, sql: postgres.Sql, settings: WorkloadSettings): Promise<Seeded> {
  const { generateEventWebhookKeys } = await import('../test/mocks/sendgrid.ts');
  const { ACTION_KINDS } = await import('../src/modules/messages/action-templates.ts');
  const workspaceId = String((await api('POST', '/v1/workspaces', rootToken, { name: 'load' })).id);
  const apiKey = String((await api('POST', `/v1/workspaces/${workspaceId}/api-keys`, rootToken, { name: 'load', scopes: ['read', 'write'] })).token);
  const keys = generateEventWebhookKeys();
  const sendgrid = await api('POST', '/v1/channel-configs', apiKey, {
    name: 'SendGrid (never called: its messages are seeded as sent)', provider: 'sendgrid',
    settings: { fromEmail: 'news@shop.example.com', eventWebhookPublicKey: keys.publicKey }, secrets: { apiKey: `SG.${randomBytes(16).toString('base64url')}` },
  });
  const sandbox = await api('POST', '/v1/channel-configs', apiKey, { name: 'Sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'orders@shop.example.com' } });
  const template = await api('POST', '/v1/templates', apiKey, {
    name: 'Thanks for your order', channel: 'email',
    content: { subject: 'Thanks, {{ customer.first_name | default: "there" }}', html: '<p>Your {{ customer.plan }} order is on its way.</p><p><a href="https://shop.example.com/orders">Track it</a></p>' },
  });
  const flow = await api('POST', '/v1/flows', apiKey, {
    name: 'Order thanks',
    settings: { reentry: { mode: 'every_time' } },
    graph: {
      nodes: [
        { id: 'start', type: 'event_trigger', eventType: FLOW_EVENT },
        { id: 'thanks', type: 'steps', name: 'Thanks email', steps: [{ type: 'send', channel: 'email', channelConfigId: String(sandbox.id), templateId: String(template.id) }] },
        { id: 'end', type: 'exit' },
      ],
      edges: [{ from: 'start', to: 'thanks' }, { from: 'thanks', to: 'end' }],
    },
  });
  if (flow.status !== 'ready') throw new Error(`setup: the flow is not ready: ${JSON.stringify(flow.problems ?? flow).slice(0, 300)}`);
  const launched = await api('POST', `/v1/flows/${String(flow.id)}/launch`, apiKey);
  if (launched.status !== 'active') throw new Error(`setup: the flow did not launch: ${JSON.stringify(launched).slice(0, 300)}`);

  const now = Date.now();
  const customers = Array.from({ length: settings.customers }, (_, i) => ({
    workspace_id: workspaceId, id: uuidv7(), external_id: externalIdOf(i), email: `${externalIdOf(i)}@shop.example.com`,
    custom: { plan: pick(PLANS), first_name: pick(['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Radia']) }, created_at: new Date(now - 86_400_000), updated_at: new Date(now - 86_400_000),
  }));
  const sourceId = uuidv7();
  const actionTemplates = (ACTION_KINDS.email ?? []).map((kind) => ({ workspace_id: workspaceId, id: uuidv7(), source_type: 'action', source_id: sourceId, kind, channel: 'email' }));
  const messages = Array.from({ length: settings.messages }, (_, i) => {
    const customer = customers[i % customers.length]!;
    const at = new Date(now - 3_600_000 + i);
    return {
      workspace_id: workspaceId, id: uuidv7(), customer_id: customer.id, channel: 'email', channel_config_id: String(sendgrid.id), template_id: String(template.id), template_version: 1,
      source_type: 'action', source_id: sourceId, status: 'sent', to_address: customer.email, rendered: { subject: 'Weekly picks', html: '<p>Picks</p>' },
      provider_message_id: `sg-${randomBytes(8).toString('hex')}`, attempts: 1, next_attempt_at: at, created_at: at, sent_at: at, updated_at: at,
    };
  });
  for (const [table, rows] of [['customers', customers], ['action_templates', actionTemplates], ['messages', messages]] as const) {
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) await sql`insert into ${sql(table)} ${sql(rows.slice(i, i + INSERT_CHUNK) as never)}`;
  }
  await sql`vacuum (analyze) customers, messages, action_templates`;
  return {
    workspaceId, apiKey, sendgridConfigId: String(sendgrid.id), flowId: String(flow.id),
    customerIds: customers.map((c) => c.id), messageIds: messages.map((m) => m.id), webhookKey: keys.privateKey,
  };
}

export function newChecks(): Checks {
  return {
    eventsAccepted: 0, webhookStored: 0, webhookDuplicates: 0, webhookUnknown: 0, customersCreated: 0, customersUpdated: 0,
    unexpected: { events: 0, batch: 0, customers: 0, timeline: 0, webhooks: 0 }, firstUnexpected: null,
  };
}

/** The autocannon request of each kind: a fresh body (or path) each time, its answer checked into `checks`. */
export async function workloadRequests(seeded: Seeded, settings: WorkloadSettings, checks: Checks): Promise<Record<Kind, LoadRequest & { onResponse?: (status: number, body: string) => void }>> {
  const { eventWebhookHeaders, sendgridEvent } = await import('../test/mocks/sendgrid.ts');
  const json = { 'content-type': 'application/json' };
  const unexpected = (kind: Kind, body: string) => {
    checks.unexpected[kind]++;
    checks.firstUnexpected ??= `${kind}: ${body.slice(0, 300)}`;
  };
  const parse = (body: string): Record<string, unknown> | null => {
    try {
      return JSON.parse(body) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  let seq = 0;
  const run = randomBytes(3).toString('hex');
  const known = () => Math.floor(Math.random() * settings.customers);
  const event = (i: number, withType?: string) => {
    const type = withType ?? pick(EVENT_TYPES);
    const sku = `SKU-${Math.floor(Math.random() * 100_000).toString(36).toUpperCase()}`;
    return {
      externalId: externalIdOf(i), type,
      properties: type === 'order.placed' || type === FLOW_EVENT ? { total: Math.round(Math.random() * 50_000) / 100, currency: 'EUR', items: [{ sku, quantity: 1 }] } : { sku, url: `https://shop.example.com/p/${sku.toLowerCase()}` },
    };
  };
  const accepted = (kind: Kind, expected: number) => (status: number, body: string) => {
    if (status !== 200) return;
    const answer = parse(body);
    if (answer?.accepted !== expected) return unexpected(kind, body);
    checks.eventsAccepted += expected;
  };
  return {
    events: {
      method: 'POST', path: '/v1/events', headers: json,
      setupRequest: (request) => {
        const i = known();
        // Half with the client's own id (the idempotent path), half without.
        const body = { ...event(i, Math.random() < 0.05 ? FLOW_EVENT : undefined), ...(++seq % 2 ? { id: `load-${run}-${seq}` } : {}) };
        return { ...request, body: JSON.stringify(body) };
      },
      onResponse: accepted('events', 1),
    },
    batch: {
      method: 'POST', path: '/v1/events', headers: json,
      setupRequest: (request) => {
        const events = Array.from({ length: settings.batch }, () => (Math.random() < 0.02 ? { ...event(0), externalId: `load-new-${run}-${++seq}` } : event(known())));
        return { ...request, body: JSON.stringify({ events }) };
      },
      onResponse: accepted('batch', settings.batch),
    },
    customers: {
      method: 'POST', path: '/v1/customers', headers: json,
      setupRequest: (request) => {
        const fresh = Math.random() < 0.25;
        const externalId = fresh ? `load-new-${run}-${++seq}` : externalIdOf(known());
        const body = { externalId, email: `${externalId}@shop.example.com`, custom: { plan: pick(PLANS), visits: Math.floor(Math.random() * 1000), lastSeenAt: new Date().toISOString() } };
        return { ...request, body: JSON.stringify(body) };
      },
      onResponse: (status, body) => {
        if (status === 201) checks.customersCreated++;
        else if (status === 200) checks.customersUpdated++;
        if ((status === 200 || status === 201) && !body.includes('"externalId":"load-')) unexpected('customers', body);
      },
    },
    timeline: {
      method: 'GET',
      setupRequest: (request) => ({ ...request, path: `/v1/customers/${seeded.customerIds[known()]}/timeline` }),
      onResponse: (status, body) => {
        if (status === 200 && !body.startsWith('{"data":[')) unexpected('timeline', body);
      },
    },
    webhooks: {
      method: 'POST', path: `/webhooks/sendgrid/${seeded.sendgridConfigId}`,
      setupRequest: (request) => {
        const batch = Array.from({ length: settings.webhookBatch }, () => {
          const messageId = pick(seeded.messageIds);
          const kind = pick(SG_KINDS);
          return sendgridEvent(kind, `sg-${messageId.slice(-12)}`, { email: 'someone@shop.example.com', customArgs: { herald_message_id: messageId, herald_workspace_id: seeded.workspaceId } });
        });
        const payload = JSON.stringify(batch);
        // No Authorization header: the signature is the credential.
        const { authorization: _, ...headers } = request.headers ?? {};
        return { ...request, headers: { ...headers, ...eventWebhookHeaders(seeded.webhookKey, payload) }, body: payload };
      },
      onResponse: (status, body) => {
        if (status !== 200) return;
        const receipt = parse(body);
        if (!receipt || receipt.stored !== settings.webhookBatch) unexpected('webhooks', body);
        checks.webhookStored += Number(receipt?.stored ?? 0);
        checks.webhookDuplicates += Number(receipt?.duplicates ?? 0);
        checks.webhookUnknown += Number(receipt?.unknownMessages ?? 0);
      },
    },
  };
}
