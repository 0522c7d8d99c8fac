
import { index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid, uniqueIndex } from 'drizzle-orm/pg-core';

/** The tenant root: every other table carries its id first. */
export const workspaces = pgTable('workspaces', {
  id: uuid().primaryKey(),
  name: text().notNull(),
  timeZone: text().notNull().default('UTC'),
  settings: jsonb().$type<Record<string, unknown>>().notNull().default({}),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

/** API keys are stored as a SHA-256 hash of the token; only the short prefix is kept in clear. */
export const apiKeys = pgTable(
  'api_keys',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    prefix: text().notNull(),
    tokenHash: text().notNull(),
    scopes: text().array().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp({ withTimezone: true }),
    revokedAt: timestamp({ withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] }), uniqueIndex().on(t.tokenHash)],
);

/**
 * Replays of POST answers for 24 hours (API.md, Idempotency-Key). The root token's requests use
 * the nil workspace id, so this table has no foreign key to workspaces.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    workspaceId: uuid().notNull(),
    key: text().notNull(),
    route: text().notNull(),
    requestHash: text().notNull(),
    statusCode: integer(),
    contentType: text(),
    responseBody: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.key] }), index().on(t.createdAt)],
);

