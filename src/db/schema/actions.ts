import { sql } from 'drizzle-orm';
import { index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import type { Filter } from '../../audience/filter.ts';
import { workspaces } from './workspaces.ts';

/**
 * Optikpi-style actions: triggered, recurring or single send. `schedule` holds the kind's
 * settings; `next_run_at` is when the scheduler should start the next run.
 */
export const actions = pgTable(
  'actions',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    kind: text().notNull(),
    status: text().notNull(),
    channel: text().notNull(),
    channelConfigId: uuid().notNull(),
    templateId: uuid().notNull(),
    audience: jsonb().$type<Filter>().notNull(),
    schedule: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    startAt: timestamp({ withTimezone: true }),
    endAt: timestamp({ withTimezone: true }),
    nextRunAt: timestamp({ withTimezone: true }),
    lastRunAt: timestamp({ withTimezone: true }),
    launchedAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp({ withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    index('actions_list_idx').on(t.workspaceId, t.kind, t.id).where(sql`${t.deletedAt} is null`),
    // The scheduler's queue, across workspaces: active actions by when they are due.
    index('actions_due_idx').on(t.nextRunAt).where(sql`${t.status} = 'active' and ${t.deletedAt} is null`),
  ],
);

/** One run of an action; the unique run key is what keeps two processes from running it twice. */
export const actionRuns = pgTable(
  'action_runs',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    actionId: uuid().notNull(),
    runKey: text().notNull(),
    trigger: text().notNull(),
    status: text().notNull(),
    scheduledFor: timestamp({ withTimezone: true }).notNull(),
    startedAt: timestamp({ withTimezone: true }),
    finishedAt: timestamp({ withTimezone: true }),
    durationMs: integer(),
    matched: integer(),
    queued: integer(),
    skipped: jsonb().$type<Record<string, number>>().notNull().default({}),
    error: text(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex('action_runs_key_idx').on(t.workspaceId, t.actionId, t.runKey),
    index('action_runs_action_idx').on(t.workspaceId, t.actionId, t.scheduledFor),
  ],
);
