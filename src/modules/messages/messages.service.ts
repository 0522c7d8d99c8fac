// Read models of messaging: a message as sent ("view"), the action templates of a source with
// their counts, the customers that got one ("same actions"), and a customer's timeline.
import type { Deps } from '../../deps.ts';
import { invalid, notFound } from '../../http/errors.ts';
import { cursorTime, decodeCursor, pageOf } from '../../http/pagination.ts';
import { isUuid, newId } from '../../ids.ts';
import { channelConfigOrDefault, loadChannelConfig } from '../channels/channels.service.ts';
import { getCustomer } from '../customers/customers.service.ts';
import { compileFields, customerContext, TemplateError } from '../templates/render.ts';
import { getTemplate, versionFields } from '../templates/templates.service.ts';
import { loadMergeData, mergeDataWanted } from '../templates/merge-data.ts';
import { contentAsSent, type StoredMessage } from './as-sent.ts';
import { composePayload, placeholderUrls, trackingUrls } from './compose.ts';
import type { SendOutcome } from '../../providers/types.ts';
import type { WorkspaceSettings } from '../workspaces/workspaces.schemas.ts';
import { timelines, type TimelineKind } from './timeline.ts';
import type { ActionTemplate, Message, TestSendBody, TestSendResult, TimelineEntry, TimelineQuery } from './messages.schemas.ts';

type D = Pick<Deps, 'database'>;

export async function getMessage(deps: Pick<Deps, 'database' | 'config'>, workspaceId: string, id: string): Promise<Message> {
  const { sql } = deps.database;
  const [m] = await sql`select * from messages where workspace_id = ${workspaceId} and id = ${id}`;
  if (!m) throw notFound('Message');
  const events = await sql<{ kind: string; occurred_at: Date; data: Record<string, unknown> }[]>`
    select kind, occurred_at, data from message_events where workspace_id = ${workspaceId} and message_id = ${id} order by occurred_at, id`;
  return {
    id: m.id, customerId: m.customer_id, channel: m.channel, channelConfigId: m.channel_config_id, templateId: m.template_id, templateVersion: m.template_version,
    source: { type: m.source_type, id: m.source_id, stepId: m.step_id, entryId: m.entry_id },
    status: m.status, reason: m.reason, toAddress: m.to_address, providerMessageId: m.provider_message_id, attempts: m.attempts, rendered: await contentAsSent(deps, m as StoredMessage),
    createdAt: m.created_at.toISOString(), sentAt: m.sent_at?.toISOString() ?? null, updatedAt: m.updated_at.toISOString(),
    events: events.map((e) => ({ kind: e.kind, occurredAt: e.occurred_at.toISOString(), data: e.data })),
  };
}

export async function listActionTemplates(deps: D, workspaceId: string, sourceType: string, sourceId: string): Promise<ActionTemplate[]> {
  const rows = await deps.database.sql<{ id: string; source_type: string; source_id: string; step_id: string; kind: string; channel: string; created_at: Date; customers: number }[]>`
    select at.*, (select count(distinct ca.customer_id)::int from customer_actions ca where ca.workspace_id = at.workspace_id and ca.action_template_id = at.id) as customers
    from action_templates at where at.workspace_id = ${workspaceId} and at.source_type = ${sourceType} and at.source_id = ${sourceId}
    order by at.step_id, array_position(array['sent','delivered','opened','clicked','unsubscribed','forwarded','bounced','complained','not_sent','failed'], at.kind)`;
  return rows.map((r) => ({ id: r.id, sourceType: r.source_type, sourceId: r.source_id, stepId: r.step_id, kind: r.kind, channel: r.channel, customers: r.customers, createdAt: r.created_at.toISOString() }));
}

export async function actionTemplateCustomers(deps: D, workspaceId: string, id: string, q: { limit?: number; cursor?: string }) {
  const { sql } = deps.database;
  const [exists] = await sql`select 1 from action_templates where workspace_id = ${workspaceId} and id = ${id}`;
  if (!exists) throw notFound('Action template');
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string', 'string']);
  if (after && (Number.isNaN(Date.parse(after[0] as string)) || !isUuid(after[1] as string))) throw invalid('The cursor is not one this API issued', [{ pointer: '/query/cursor', detail: 'is not a valid cursor' }]);
  const rows = await sql<{ id: string; customer_id: string; external_id: string | null; email: string | null; message_id: string; occurred_at: Date; at_key: string; touchpoint: Record<string, unknown> }[]>`
    select ca.id, ca.customer_id, c.external_id, c.email, ca.message_id, ca.occurred_at, ${sql.unsafe(cursorTime('ca.occurred_at'))} as at_key, ca.touchpoint
    from customer_actions ca join customers c on c.workspace_id = ca.workspace_id and c.id = ca.customer_id
    where ca.workspace_id = ${workspaceId} and ca.action_template_id = ${id}
      ${after ? sql`and (ca.occurred_at, ca.id) < (${after[0] as string}::text::timestamptz, ${after[1] as string}::uuid)` : sql``}
    order by ca.occurred_at desc, ca.id desc limit ${limit + 1}`;
  const page = pageOf(rows, limit, (r) => [r.at_key, r.id]);
  return {
    data: page.data.map((r) => ({ customerId: r.customer_id, externalId: r.external_id, email: r.email, messageId: r.message_id, occurredAt: r.occurred_at.toISOString(), touchpoint: r.touchpoint })),
    nextCursor: page.nextCursor,
  };
}

/** Events, messages, action templates and flow decisions of a customer, merged newest first (timeline.ts). */
export async function customerTimeline(deps: D, workspaceId: string, customerId: string, q: TimelineQuery) {
  const { sql } = deps.database;
  const [exists] = await sql`select 1 from customers where workspace_id = ${workspaceId} and id = ${customerId}`;
  if (!exists) throw notFound('Customer');
  const kinds = q.kinds ? (q.kinds.split(',') as TimelineKind[]) : undefined;
  const page = (await timelines(sql, workspaceId, [customerId], { first: q.limit ?? 50, after: q.cursor, kinds })).get(customerId)!;
  return { data: page.entries.map((r) => ({ kind: r.kind, id: r.id, at: r.at.toISOString(), data: r.data })), nextCursor: page.nextCursor };
}

/**
 * Renders a template and sends it to one address through a channel config, now. Rendered for a
 * customer, it is recorded as a message of theirs (source `test`, the template's id), so its
 * tracked links, "view online" and forward work and its events are kept; it assigns no action
 * template, counts against no frequency cap and changes no consent (the address may be a
 * colleague's). With sample data there is no customer to record it for: it goes out untracked,
 * its links straight to their targets and unsubscribe_url / view_url / forward_url as placeholders.
 */
export async function testSend(deps: Pick<Deps, 'db' | 'database' | 'config' | 'providers' | 'clock'>, workspaceId: string, templateId: string, body: TestSendBody): Promise<TestSendResult> {
  const template = await getTemplate(deps, workspaceId, templateId, body.version);
  const config = await loadChannelConfig(deps, workspaceId, await channelConfigOrDefault(deps, workspaceId, template.channel, body.channelConfigId, '/channelConfigId'));
  if (config.channel !== template.channel) {
    throw invalid('The channel config is for another channel', [{ pointer: '/channelConfigId', detail: `is a ${config.channel} config; the template is for ${template.channel}` }]);
  }
  const customer = body.customerId ? await getCustomer(deps, workspaceId, body.customerId) : null;
  const [version] = await deps.database.sql<{ content: Record<string, unknown> }[]>`
    select content from template_versions where workspace_id = ${workspaceId} and template_id = ${templateId} and version = ${template.version}`;
  const { content, fields } = versionFields(template.channel, version!.content);
  const messageId = newId();
  const urls = customer ? trackingUrls(deps.config.publicUrl, deps.config.secret!, workspaceId, messageId) : placeholderUrls(deps.config.publicUrl);
  const compiled = compileFields(fields);
  // One read of the workspace: its sending rules and the zone dates fall back to.
  const [workspace] = await deps.database.sql<{ settings: WorkspaceSettings; time_zone: string }[]>`select settings, time_zone from workspaces where id = ${workspaceId}`;
  const data = customer ? (await loadMergeData(deps.database.sql, [[workspaceId, customer.id]], mergeDataWanted(compiled.variables))).get(`${workspaceId}/${customer.id}`) : undefined;
  let values: Record<string, string>;
  try {
    values = await compiled.render({
      customer: customer ? customerContext(customer) : (body.sample?.customer ?? {}),
      event: body.sample?.event,
      ...data,
      unsubscribe_url: urls.unsubscribe, view_url: urls.view, forward_url: urls.forward,
      // The customer's zone, else the workspace's, as a real send renders dates.
      timeZone: customer?.timeZone ?? workspace?.time_zone ?? 'UTC',
    });
  } catch (error) {
    if (error instanceof TemplateError) throw invalid('The template could not be rendered', [{ pointer: `/content/${error.field}`, detail: error.message }]);
    throw error;
  }
  const composed = composePayload({
    channel: template.channel, content, values, settings: config.settings, address: body.to, defaultSender: workspace?.settings.defaultSender,
    subscription: body.keys ? { endpoint: body.to, keys: body.keys } : null, urls, publicUrl: deps.config.publicUrl, channelConfigId: config.id,
    ...(customer ? { messageId } : { tracked: false }),
  });
  if ('error' in composed) throw invalid(`The message cannot be sent: ${composed.error}`);
  const provider = deps.providers[config.provider];
  if (!provider) throw invalid(`No provider ${config.provider} in this build`);
  const { sql } = deps.database;
  if (customer) {
    // Written before the call, so an open or a webhook that comes back at once finds it. It has
    // no queue row (a test send is never retried): a process that stops mid-call leaves it 'sending'.
    const now = deps.clock.now();
    await sql`
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id,
        status, to_address, rendered, attempts, next_attempt_at, created_at, updated_at)
      values (${workspaceId}, ${messageId}, ${customer.id}, ${template.channel}, ${config.id}, ${templateId}, ${template.version}, 'test', ${templateId}, ${messageId},
        'sending', ${body.to}, ${JSON.stringify(composed.rendered)}::json, 1, ${now}, ${now}, ${now})`;
  }
  let outcome: SendOutcome;
  try {
    outcome = await provider.send({
      messageId: customer ? messageId : `test-${messageId}`, workspaceId, payload: composed.payload, settings: config.settings, secrets: config.secrets,
      allowPrivateTargets: workspace?.settings.allowPrivateNetworkTargets === true, signal: AbortSignal.timeout(15_000),
    });
  } catch (error) {
    // A provider that throws has broken its contract; nobody knows whether the request left.
    outcome = { kind: 'unknown', reason: (error as Error).message };
  }
  if (customer) {
    const now = deps.clock.now();
    const [status, reason] = outcome.kind === 'sent' ? ['sent', null] : outcome.kind === 'unknown' ? ['unknown', outcome.reason] : ['not_sent', `provider_rejected: ${outcome.reason}`];
    // Only from 'sending': an event that came back first has moved it on (statuses never go back).
    await sql`
      update messages set status = case when status = 'sending' then ${status} else status end, reason = case when status = 'sending' then ${reason?.slice(0, 500) ?? null} else reason end,
        provider_message_id = ${outcome.kind === 'sent' ? outcome.providerMessageId : null}, sent_at = ${status === 'sent' ? now : null}, updated_at = ${now}
      where workspace_id = ${workspaceId} and id = ${messageId}`;
  }
  return {
    messageId: customer ? messageId : null,
    outcome: outcome.kind,
    providerMessageId: outcome.kind === 'sent' ? outcome.providerMessageId : null,
    reason: 'reason' in outcome ? outcome.reason : null,
    rendered: composed.rendered,
  };
}
