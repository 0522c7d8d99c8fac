import { sql } from 'drizzle-orm';
import { foreignKey, index, jsonb, pgTable, primaryKey, text, timestamp, uuid, uniqueIndex } from 'drizzle-orm/pg-core';
import { customers } from './customers.ts';

/**
 * Customer events. The two indexes serve "events of customer X, newest first" and
 * "customers with event T since D" as index scans.
 */
export const events = pgTable(
  'events',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    customerId: uuid().notNull(),
    type: text().notNull(),
    properties: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    occurredAt: timestamp({ withTimezone: true }).notNull(),
    receivedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    clientId: text(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex().on(t.workspaceId, t.clientId).where(sql`${t.clientId} is not null`),
    // Ascending: a backward scan serves ORDER BY occurred_at DESC exactly (DESC NULLS LAST would not).
    index('events_customer_time_idx').on(t.workspaceId, t.customerId, t.occurredAt),
    index('events_type_time_idx').on(t.workspaceId, t.type, t.occurredAt, t.customerId),
    foreignKey({ name: 'events_customer_fk', columns: [t.workspaceId, t.customerId], foreignColumns: [customers.workspaceId, customers.id] }).onDelete('cascade'),
  ],
);
