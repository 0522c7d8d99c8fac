// The outbox: a decision to send writes message rows in its own transaction (an action run, a
// flow step, a test), and wakes the send workers in that same transaction.
import type { PgBoss } from 'pg-boss';
import type { TransactionSql } from 'postgres';
import { fromPostgres } from '../../jobs/postgres-adapter.ts';
import { newId } from '../../ids.ts';
import { ensureActionTemplates } from './action-templates.ts';

export const SEND_QUEUE = 'send-messages';

export interface NewMessage {
  workspaceId: string;
  customerId: string;
  channel: string;
  channelConfigId: string;
  templateId: string;
  templateVersion: number;
  sourceType: string;
  sourceId: string;
  stepId?: string;
  entryId?: string;
  /** The triggering event, for merge tags: { type, ...properties }. */
  event?: Record<string, unknown> | null;
}

/** Inserts the messages that do not exist yet (one per source, customer, step and entry); returns the new ids. */
export async function enqueueMessages(tx: TransactionSql, boss: PgBoss, messages: NewMessage[], now: Date): Promise<string[]> {
  if (messages.length === 0) return [];
  const rows = messages.map((m) => ({
    workspace_id: m.workspaceId, id: newId(), customer_id: m.customerId, channel: m.channel, channel_config_id: m.channelConfigId,
    template_id: m.templateId, template_version: m.templateVersion, source_type: m.sourceType, source_id: m.sourceId,
    step_id: m.stepId ?? '', entry_id: m.entryId ?? '', event: m.event ?? null,
  }));
  // With their queue rows (the claims' table), in the same statement.
  const inserted = await tx<{ id: string }[]>`
    with inserted as (
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id, entry_id, status, event, next_attempt_at, created_at, updated_at)
      select r.workspace_id, r.id, r.customer_id, r.channel, r.channel_config_id, r.template_id, r.template_version, r.source_type, r.source_id, r.step_id, r.entry_id, 'queued', r.event, ${now}, ${now}, ${now}
      from json_to_recordset(${JSON.stringify(rows)}::json)
        as r(workspace_id uuid, id uuid, customer_id uuid, channel text, channel_config_id uuid, template_id uuid, template_version int, source_type text, source_id text, step_id text, entry_id text, event jsonb)
      on conflict (workspace_id, source_type, source_id, customer_id, step_id, entry_id) do nothing
      returning workspace_id, id
    ), queued as (
      insert into message_queue (workspace_id, message_id, due_at) select workspace_id, id, ${now} from inserted
    )
    select id from inserted`;
  const sources = new Map(messages.map((m) => [`${m.workspaceId}/${m.sourceType}/${m.sourceId}/${m.stepId ?? ''}`, { workspaceId: m.workspaceId, sourceType: m.sourceType, sourceId: m.sourceId, stepId: m.stepId ?? '', channel: m.channel }]));
  await ensureActionTemplates(tx, [...sources.values()]);
  if (inserted.length) await boss.send(SEND_QUEUE, {}, { db: fromPostgres(tx) });
  return inserted.map((r) => r.id);
}
