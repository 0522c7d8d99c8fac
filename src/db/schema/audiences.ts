import { jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import type { Filter } from '../../audience/filter.ts';
import { workspaces } from './workspaces.ts';

/** A saved audience: a filter tree, evaluated on demand (no stored membership to go stale). */
export const segments = pgTable(
  'segments',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    description: text(),
    filter: jsonb().$type<Filter>().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] })],
);
