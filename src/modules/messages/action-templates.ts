// Action templates (maestra-action-templates.md): every message source gets the templates that
// fit its channel, and a customer is assigned one each time a message's status changes for them.
import type { Sql, TransactionSql } from 'postgres';
import { newId } from '../../ids.ts';

export const ACTION_KINDS: Record<string, readonly string[]> = {
  email: ['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed'],
  // SMS links are sent as written (not tracked): no 'clicked'. 'unsubscribed': a STOP (Twilio 21610).
  sms: ['sent', 'delivered', 'unsubscribed', 'not_sent', 'failed'],
  web_push: ['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed'],
  mobile_push: ['sent', 'delivered', 'opened', 'clicked', 'not_sent', 'failed'],
  webhook: ['sent', 'not_sent', 'failed'],
};

export interface Source {
  workspaceId: string;
  sourceType: string;
  sourceId: string;
  /** A flow's send step (its messages' step_id); '' (the default) for a source with one message per customer. */
  stepId?: string;
  channel: string;
}

/** Generates the action templates of the given sources (idempotent). */
export async function ensureActionTemplates(sql: Sql | TransactionSql, sources: Source[]): Promise<void> {
  const rows = sources.flatMap((s) => (ACTION_KINDS[s.channel] ?? []).map((kind) => ({ workspace_id: s.workspaceId, id: newId(), source_type: s.sourceType, source_id: s.sourceId, step_id: s.stepId ?? '', kind, channel: s.channel })));
  if (rows.length === 0) return;
  await sql`
    insert into action_templates (workspace_id, id, source_type, source_id, step_id, kind, channel)
    select r.workspace_id, r.id, r.source_type, r.source_id, r.step_id, r.kind, r.channel
    from json_to_recordset(${JSON.stringify(rows)}::json) as r(workspace_id uuid, id uuid, source_type text, source_id text, step_id text, kind text, channel text)
    on conflict (workspace_id, source_type, source_id, step_id, channel, kind) do nothing`;
}

export interface Assignment {
  workspaceId: string;
  messageId: string;
  customerId: string;
  sourceType: string;
  sourceId: string;
  kind: string;
  occurredAt: Date;
  touchpoint?: Record<string, unknown>;
}

/** Assigns action templates for messages, at most once per (template, message); returns how many were new. */
export async function assignActions(sql: Sql | TransactionSql, items: Assignment[]): Promise<number> {
  if (items.length === 0) return 0;
  const rows = items.map((a) => ({
    workspace_id: a.workspaceId, id: newId(), message_id: a.messageId, customer_id: a.customerId, source_type: a.sourceType, source_id: a.sourceId,
    kind: a.kind, occurred_at: a.occurredAt.toISOString(), touchpoint: a.touchpoint ?? {},
  }));
  // The caller knows each message's source and customer: joining messages by source let the
  // planner walk every message of the source per row (quadratic in the size of a campaign); they
  // are joined by key only.
  const inserted = await sql`
    with r as (
      select * from json_to_recordset(${JSON.stringify(rows)}::json)
        as r(workspace_id uuid, id uuid, message_id uuid, customer_id uuid, source_type text, source_id text, kind text, occurred_at timestamptz, touchpoint jsonb)
    ), held as (
      -- The messages by key, held until commit (customer_actions has no foreign key: migration 0012).
      select m.workspace_id, m.id, m.step_id, m.channel from messages m where (m.workspace_id, m.id) in (select workspace_id, message_id from r) for key share of m
    )
    insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at, touchpoint)
    select r.workspace_id, r.id, at.id, r.customer_id, r.message_id, r.occurred_at, r.touchpoint
    from r
    -- The template of the message's own step and channel.
    join held h on h.workspace_id = r.workspace_id and h.id = r.message_id
    join action_templates at on at.workspace_id = r.workspace_id and at.source_type = r.source_type and at.source_id = r.source_id and at.step_id = h.step_id and at.channel = h.channel and at.kind = r.kind
    on conflict (workspace_id, action_template_id, message_id) do nothing
    returning 1`;
  return inserted.length;
}
