import { sql } from 'drizzle-orm';
import { boolean, foreignKey, index, integer, json, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { customers } from './customers.ts';
import { workspaces } from './workspaces.ts';

/** A template's identity; its content lives in immutable versions. Deleted templates stay for the messages that used them. */
export const templates = pgTable(
  'templates',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    channel: text().notNull(),
    currentVersion: integer().notNull(),
    /** False for a template written inline in an action and not saved as a template: it exists for its messages, not in lists. */
    listed: boolean().notNull().default(true),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp({ withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] }), index('templates_live_idx').on(t.workspaceId, t.id).where(sql`${t.deletedAt} is null`)],
);

export const templateVersions = pgTable(
  'template_versions',
  {
    workspaceId: uuid().notNull(),
    templateId: uuid().notNull(),
    version: integer().notNull(),
    content: jsonb().$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.templateId, t.version] }),
    foreignKey({ name: 'template_versions_template_fk', columns: [t.workspaceId, t.templateId], foreignColumns: [templates.workspaceId, templates.id] }).onDelete('cascade'),
  ],
);

/** A provider account for one channel. Secrets are sealed with HERALD_SECRET (AES-256-GCM) and never returned. */
export const channelConfigs = pgTable(
  'channel_configs',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    provider: text().notNull(),
    channel: text().notNull(),
    settings: jsonb().$type<Record<string, unknown>>().notNull(),
    sealedSecrets: text(),
    secretNames: text().array().notNull().default(sql`'{}'::text[]`),
    /** The config an action, a flow step or a test send that names none uses for its channel: at most one live per channel. */
    isDefault: boolean().notNull().default(false),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp({ withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex('channel_configs_default_idx').on(t.workspaceId, t.channel).where(sql`${t.isDefault} and ${t.deletedAt} is null`),
  ],
);

/**
 * The outbox: one row per message, written in the same transaction as the decision to send
 * (with its message_queue row). The unique key on (source, customer, step, entry) makes a retried
 * decision harmless. No index depends on a column a send or a delivery status changes, and
 * pages keep room (fillfactor 80, migration 0011), so those updates are HOT.
 */
export const messages = pgTable(
  'messages',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    customerId: uuid().notNull(),
    channel: text().notNull(),
    channelConfigId: uuid().notNull(),
    templateId: uuid().notNull(),
    templateVersion: integer().notNull(),
    sourceType: text().notNull(),
    sourceId: text().notNull(),
    stepId: text().notNull().default(''),
    entryId: text().notNull().default(''),
    /** The action run that queued the message, if any. */
    runId: uuid(),
    status: text().notNull(),
    reason: text(),
    toAddress: text(),
    event: jsonb().$type<Record<string, unknown> | null>(),
    /**
     * The content as sent. json, not jsonb: stored as written after one validation pass (jsonb
     * parsed it into a tree: 26 against 11 µs for a 6 KB email; migration 0013). Compressed with
     * lz4 where the server has it (migration 0010).
     */
    rendered: json().$type<Record<string, unknown> | null>(),
    /** Not indexed: a receipt names the message (an SMS status callback carries ?message=). */
    providerMessageId: text(),
    attempts: integer().notNull().default(0),
    /** As its last outcome set it (a retry, a deferral); what the workers go by is message_queue.due_at. */
    nextAttemptAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    sentAt: timestamp({ withTimezone: true }),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex('messages_once_idx').on(t.workspaceId, t.sourceType, t.sourceId, t.customerId, t.stepId, t.entryId),
    index('messages_customer_idx').on(t.workspaceId, t.customerId, t.createdAt),
    // Deleting a customer deletes what was sent to them (and, through messages, what they did with it).
    foreignKey({ name: 'messages_customer_fk', columns: [t.workspaceId, t.customerId], foreignColumns: [customers.workspaceId, customers.id] }).onDelete('cascade'),
  ],
);

/**
 * The send workers' queue, apart from the wide messages rows: one narrow row per message that is
 * queued or being sent. A claim moves its rows' due_at to the claim's lease (its fence); a
 * started call sets sending and due_at to the end of SENDING_LEASE_MS (then its outcome is
 * unknown); an outcome deletes the row, or moves due_at to the next attempt. Leases and marks
 * churn here, so no index of messages depends on its status or next attempt and its later updates
 * (the 'sending' mark, delivery statuses) stay HOT (migration 0011).
 */
export const messageQueue = pgTable(
  'message_queue',
  {
    workspaceId: uuid().notNull(),
    messageId: uuid().notNull(),
    dueAt: timestamp({ withTimezone: true }).notNull(),
    sending: boolean().notNull().default(false),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.messageId] }),
    // Rows waiting for a claim, oldest first (claims, the next retry's wake-up), and calls under
    // way by the end of their mark (the sweep of abandoned calls): two partial indexes, so the
    // sweep reads the calls in flight, not a backlog (migration 0016). A row version is in one.
    index('message_queue_due_idx').on(t.dueAt).where(sql`not ${t.sending}`),
    index('message_queue_sending_idx').on(t.dueAt).where(sql`${t.sending}`),
    // Vacuumed often (migration 0014, queue-maintenance.ts): its rows churn.
    // No foreign key (migration 0015: its check was a tenth of a flow tick's outbox insert): rows
    // are inserted with their message in one statement, or by the send ledger for a message row
    // it has just updated; the statement trigger on messages deletes a deleted message's row.
  ],
);

/** The action templates of a message source: sent, delivered, opened... generated per source. */
export const actionTemplates = pgTable(
  'action_templates',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    sourceType: text().notNull(),
    sourceId: text().notNull(),
    /** A flow's send step (`node/index`, as its messages' step_id): each has its own set, per channel. '' for actions. */
    stepId: text().notNull().default(''),
    kind: text().notNull(),
    channel: text().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] }), uniqueIndex('action_templates_kind_idx').on(t.workspaceId, t.sourceType, t.sourceId, t.stepId, t.channel, t.kind)],
);

/**
 * An action template assigned to a customer for one message: at most once per (template, message),
 * however often the provider repeats itself; repeated opens and clicks stay in message_events.
 */
export const customerActions = pgTable(
  'customer_actions',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    actionTemplateId: uuid().notNull(),
    customerId: uuid().notNull(),
    messageId: uuid().notNull(),
    occurredAt: timestamp({ withTimezone: true }).notNull(),
    touchpoint: jsonb().$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    // Message first: it also serves deleting a message (a customer's cascade) and a message's
    // actions, which had an index of their own (one index less on every assignment, migration 0009).
    uniqueIndex('customer_actions_once_idx').on(t.workspaceId, t.messageId, t.actionTemplateId),
    index('customer_actions_customer_idx').on(t.workspaceId, t.customerId, t.occurredAt),
    // Migration 0004 adds INCLUDE (customer_id, message_id): audiences over action templates read it index-only.
    index('customer_actions_template_idx').on(t.workspaceId, t.actionTemplateId, t.occurredAt),
    // No foreign key to messages (migration 0012): its check ran once per row, a tenth of a webhook
    // batch. Every insert takes its message from a row it has locked in the same statement (the
    // ledger's update, a webhook batch's event rows and their key, assignActions' join), and a
    // statement trigger on messages deletes a deleted message's actions (the cascade it gave).
  ],
);

/** Everything that happened to a message (provider events, opens, clicks), deduplicated by the provider's event id. */
export const messageEvents = pgTable(
  'message_events',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    messageId: uuid().notNull(),
    kind: text().notNull(),
    occurredAt: timestamp({ withTimezone: true }).notNull(),
    providerEventId: text(),
    data: jsonb().$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex('message_events_provider_idx').on(t.workspaceId, t.providerEventId).where(sql`${t.providerEventId} is not null`),
    index('message_events_message_idx').on(t.workspaceId, t.messageId, t.occurredAt),
    foreignKey({ name: 'message_events_message_fk', columns: [t.workspaceId, t.messageId], foreignColumns: [messages.workspaceId, messages.id] }).onDelete('cascade'),
  ],
);
