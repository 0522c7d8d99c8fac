import { sql } from 'drizzle-orm';
import { bigint, boolean, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { workspaces } from './workspaces.ts';

/** A flow's identity and life cycle; its graphs live in flow_versions. */
export const flows = pgTable(
  'flows',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    name: text().notNull(),
    status: text().notNull(),
    activeVersion: integer(),
    draftVersion: integer(),
    /** When the schedule trigger of the active version next enters its audience. */
    nextScheduleAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp({ withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    index('flows_schedule_idx').on(t.nextScheduleAt).where(sql`${t.status} = 'active' and ${t.deletedAt} is null`),
  ],
);

/** Every saved graph of a flow: each draft save is a version; launched ones record when they ran. */
export const flowVersions = pgTable(
  'flow_versions',
  {
    workspaceId: uuid().notNull(),
    flowId: uuid().notNull(),
    version: integer().notNull(),
    graph: jsonb().$type<Record<string, unknown>>().notNull(),
    settings: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    problems: jsonb().$type<unknown[]>().notNull().default([]),
    draftedAt: timestamp({ withTimezone: true }).notNull(),
    launchedAt: timestamp({ withTimezone: true }),
    stoppedAt: timestamp({ withTimezone: true }),
    discardedAt: timestamp({ withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.flowId, t.version] })],
);

/**
 * A customer's place in a flow: the engine's queue. Due rows (state active, wake_at passed) are
 * claimed in batches with FOR UPDATE SKIP LOCKED and advanced in the same transaction.
 */
export const flowEntries = pgTable(
  'flow_entries',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    flowId: uuid().notNull(),
    customerId: uuid().notNull(),
    version: integer().notNull(),
    nodeId: text().notNull(),
    state: text().notNull(),
    wakeAt: timestamp({ withTimezone: true }).notNull(),
    /** The event type a "wait for event" node waits for, so arrivals can wake it. */
    waitingFor: text(),
    context: jsonb().$type<Record<string, unknown>>().notNull().default({}),
    enteredAt: timestamp({ withTimezone: true }).notNull(),
    updatedAt: timestamp({ withTimezone: true }).notNull(),
    exitedAt: timestamp({ withTimezone: true }),
    exitReason: text(),
    /** The nodes this entry has a decision at: the engine counts its first visit of each (flow_node_counts). */
    visited: text().array().notNull().default(sql`'{}'::text[]`),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    index('flow_entries_due_idx').on(t.wakeAt).where(sql`${t.state} = 'active'`),
    index('flow_entries_flow_idx').on(t.workspaceId, t.flowId, t.state, t.nodeId),
    index('flow_entries_waiting_idx').on(t.workspaceId, t.customerId, t.waitingFor).where(sql`${t.waitingFor} is not null and ${t.state} in ('active', 'paused')`),
  ],
);

/** Per flow and customer: what re-entry rules need, kept across edits of the flow. */
export const flowCustomers = pgTable(
  'flow_customers',
  {
    workspaceId: uuid().notNull(),
    flowId: uuid().notNull(),
    customerId: uuid().notNull(),
    entries: integer().notNull().default(0),
    activeEntryId: uuid(),
    lastEnteredAt: timestamp({ withTimezone: true }),
    /** The last successful execution of a group of steps: a "launch" of the flow for the customer. */
    lastLaunchAt: timestamp({ withTimezone: true }),
    /** Launched while the flow allowed "once": never again, whatever the rule becomes (the seed). */
    onceDone: boolean().notNull().default(false),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.flowId, t.customerId] })],
);

/**
 * The decisions of the engine for one entry in one tick, in the order they were made: node,
 * branch, why (the i-th element of each array is one decision). One row per entry and tick
 * instead of one per node: a customer passes five or six nodes in a tick, and the row count was
 * half of a tick's time (bench:flow). The view `flow_decision_list` (migration 0008) lists one
 * decision per row, with the id the timeline shows. Feeds the timeline and the stats.
 */
export const flowDecisions = pgTable(
  'flow_decisions',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    flowId: uuid().notNull(),
    version: integer().notNull(),
    entryId: uuid().notNull(),
    customerId: uuid().notNull(),
    nodeIds: text().array().notNull(),
    nodeTypes: text().array().notNull(),
    branches: text().array().notNull(),
    /** A JSON array: the reason of each decision. */
    reasons: jsonb().$type<Record<string, unknown>[]>().notNull(),
    at: timestamp({ withTimezone: true }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    index('flow_decisions_customer_idx').on(t.workspaceId, t.customerId, t.at),
    index('flow_decisions_flow_idx').on(t.workspaceId, t.flowId),
  ],
);

/**
 * The per-node counts of a flow's stats, kept as the engine decides: each tick appends a row per
 * node and branch it touched (`entered`: entries at the node for the first time, `decisions`:
 * decisions there with that branch; branch null for a node's entries and branch-less decisions),
 * so no row is ever updated by two ticks. The stats sum them: O(rows), not O(decisions). A
 * periodic job folds a flow's rows into one per node and branch (compactFlowCounts).
 */
export const flowNodeCounts = pgTable(
  'flow_node_counts',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    flowId: uuid().notNull(),
    nodeId: text().notNull(),
    branch: text(),
    entered: bigint({ mode: 'number' }).notNull().default(0),
    decisions: bigint({ mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] }), index('flow_node_counts_flow_idx').on(t.workspaceId, t.flowId)],
);

/** Caps of limitation nodes, shared by every customer and process: one row per node and period. */
export const flowLimits = pgTable(
  'flow_limits',
  {
    workspaceId: uuid().notNull(),
    flowId: uuid().notNull(),
    nodeId: text().notNull(),
    period: text().notNull(),
    used: doublePrecision().notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.flowId, t.nodeId, t.period] })],
);

/** Bonus points: a ledger per customer; the balance is the sum, kept on the last row. */
export const pointsLedger = pgTable(
  'points_ledger',
  {
    workspaceId: uuid().notNull(),
    id: uuid().notNull(),
    customerId: uuid().notNull(),
    delta: bigint({ mode: 'number' }).notNull(),
    balance: bigint({ mode: 'number' }).notNull(),
    sourceType: text().notNull(),
    sourceId: text().notNull(),
    stepKey: text().notNull(),
    reason: text(),
    at: timestamp({ withTimezone: true }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.id] }),
    uniqueIndex('points_ledger_once_idx').on(t.workspaceId, t.sourceType, t.sourceId, t.stepKey, t.customerId),
    index('points_ledger_customer_idx').on(t.workspaceId, t.customerId, t.at),
  ],
);

/** Promo codes in pools; each code goes to one customer only. */
export const promoCodes = pgTable(
  'promo_codes',
  {
    workspaceId: uuid().notNull(),
    pool: text().notNull(),
    code: text().notNull(),
    customerId: uuid(),
    issuedAt: timestamp({ withTimezone: true }),
    sourceKey: text(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.pool, t.code] }),
    index('promo_codes_free_idx').on(t.workspaceId, t.pool).where(sql`${t.customerId} is null`),
    uniqueIndex('promo_codes_once_idx').on(t.workspaceId, t.sourceKey).where(sql`${t.sourceKey} is not null`),
    /** A customer's codes (the promo_code merge tag, GraphQL): issued ones only. */
    index('promo_codes_customer_idx').on(t.workspaceId, t.customerId, t.issuedAt).where(sql`${t.customerId} is not null`),
  ],
);
