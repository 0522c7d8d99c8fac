import { foreignKey, index, jsonb, pgTable, primaryKey, text, timestamp, uuid, uniqueIndex } from 'drizzle-orm/pg-core';
import { workspaces } from './workspaces.ts';

export const customers = pgTable(
  'customers',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    externalId: text(),
    email: text(),
    phone: text(),
    timeZone: text(),
    locale: text(),
    custom: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex().on(t.workspaceId, t.externalId),
    index().on(t.workspaceId, t.email),
    index().on(t.workspaceId, t.updatedAt, t.id),
  ],
);

const customerFk = (name: string, t: { workspaceId: any; customerId: any }) =>
  foreignKey({ name, columns: [t.workspaceId, t.customerId], foreignColumns: [customers.workspaceId, customers.id] }).onDelete('cascade');

/** The current consent per channel; its history is in consent_changes. */
export const customerConsents = pgTable(
  'customer_consents',
  {
    workspaceId: uuid().notNull(),
    customerId: uuid().notNull(),
    channel: text().notNull(),
    status: text().notNull(),
    source: text().notNull(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.customerId, t.channel] }), customerFk('customer_consents_customer_fk', t)],
);

export const consentChanges = pgTable(
  'consent_changes',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    customerId: uuid().notNull(),
    channel: text().notNull(),
    fromStatus: text(),
    toStatus: text().notNull(),
    source: text().notNull(),
    changedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    index().on(t.workspaceId, t.customerId, t.changedAt),
    customerFk('consent_changes_customer_fk', t),
  ],
);

/** Web-push (endpoint + keys) and mobile-push (device token) subscriptions. */
export const pushSubscriptions = pgTable(
  'push_subscriptions',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    customerId: uuid().notNull(),
    kind: text().notNull(),
    endpoint: text().notNull(),
    keys: jsonb().$type<{ p256dh: string; auth: string } | null>(),
    platform: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex().on(t.workspaceId, t.kind, t.endpoint),
    index().on(t.workspaceId, t.customerId),
    customerFk('push_subscriptions_customer_fk', t),
  ],
);
