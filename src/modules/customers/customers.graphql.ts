// The customer read model over GraphQL: the same services as REST, and loaders that answer a
// whole page of customers with one query per field (consents, subscriptions, events, points,
// promo codes, segment memberships, timelines), never one per customer.
import type { IResolvers, MercuriusLoaders } from 'mercurius';
import { compileAudience } from '../../audience/audience.service.ts';
import { matchCustomers, normalizeFilter } from '../../audience/audience.service.ts';
import type { Filter } from '../../audience/filter.ts';
import type { Deps } from '../../deps.ts';
import { invalid, notFound } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../http/pagination.ts';
import { timelines, type TimelineKind } from '../messages/timeline.ts';
import type { Customer } from './customers.schemas.ts';
import { fromSqlRow, type CustomerSqlRow } from './customers.service.ts';
import { isUuid } from '../../ids.ts';

export const customerSchema = /* GraphQL */ `
  scalar JSON
  scalar DateTime

  type PageInfo {
    hasNextPage: Boolean!
    endCursor: String
  }

  type Query {
    "A customer by Herald id or by your externalId (give exactly one)."
    customer(id: ID, externalId: String): Customer
    "Customers matching an optional AudienceFilter (the JSON filter tree of segments), by id."
    customers(filter: JSON, first: Int = 20, after: String): CustomerConnection!
  }

  type CustomerConnection {
    edges: [CustomerEdge!]!
    pageInfo: PageInfo!
  }

  type CustomerEdge {
    cursor: String!
    node: Customer!
  }

  type Customer {
    id: ID!
    externalId: String
    email: String
    phone: String
    timeZone: String
    locale: String
    custom: JSON!
    createdAt: DateTime!
    updatedAt: DateTime!
    consents: [Consent!]!
    pushSubscriptions: [PushSubscription!]!
    "The most recent events, newest first."
    events(first: Int = 20): [Event!]!
    points: Points!
    promoCodes: [PromoCode!]!
    "The saved segments the customer belongs to now (evaluated on request, over the workspace's first 200 segments by id)."
    segments: [Segment!]!
    "Events, messages, action templates and flow decisions, newest first."
    timeline(first: Int = 20, after: String, kinds: [TimelineKind!], since: DateTime, until: DateTime): TimelineConnection!
  }

  type Consent {
    channel: String!
    status: String!
    source: String!
    updatedAt: DateTime!
  }

  type PushSubscription {
    id: ID!
    kind: String!
    endpoint: String!
    platform: String
    createdAt: DateTime!
  }

  type Event {
    id: ID!
    clientId: String
    type: String!
    properties: JSON!
    occurredAt: DateTime!
    receivedAt: DateTime!
  }

  type Points {
    balance: Int!
    "The latest ledger rows, newest first."
    ledger(first: Int = 20): [PointsEntry!]!
  }

  type PointsEntry {
    id: ID!
    delta: Int!
    balance: Int!
    sourceType: String!
    sourceId: String!
    reason: String
    at: DateTime!
  }

  type PromoCode {
    pool: String!
    code: String!
    issuedAt: DateTime!
  }
`;

export interface GraphqlContext {
  deps: Deps;
  workspaceId: string;
}

declare module 'mercurius' {
  interface MercuriusContext extends GraphqlContext {}
}

export const MAX_FIRST = 100;

/** An ID argument that must be a Herald id (a UUID): anything else is a BAD_USER_INPUT. */
export function uuidArg(id: unknown, name = 'id'): string {
  if (typeof id !== 'string' || !isUuid(id)) throw invalid(`${name} is not a UUID`);
  return id;
}

/** `first` within 0..100, or a BAD_USER_INPUT. */
export function firstOf(first: number | null | undefined, fallback = 20): number {
  const n = first ?? fallback;
  if (!Number.isInteger(n) || n < 0 || n > MAX_FIRST) throw invalid(`first must be between 0 and ${MAX_FIRST}`);
  return n;
}

/** The REST list options of a GraphQL list field's first/after (at least one row per page). */
export const pageOf = (args: { first?: number | null; after?: string | null }) => ({ limit: Math.max(1, firstOf(args.first)), ...(args.after ? { cursor: args.after } : {}) });

/** The Connection and Edge types of a read model listed through its REST page (nullable cursors: see connectionOf). */
export const connectionTypes = (node: string) => `
  type ${node}Connection {
    edges: [${node}Edge!]!
    pageInfo: PageInfo!
  }

  type ${node}Edge {
    cursor: String
    node: ${node}!
  }
`;

/** A REST page as a Relay connection (REST cursors are opaque keys of the last row). */
export const connectionOf = <T>(page: { data: T[]; nextCursor: string | null }) => ({
  edges: page.data.map((node) => ({ cursor: null, node })), pageInfo: { hasNextPage: page.nextCursor !== null, endCursor: page.nextCursor },
});

type Query<P = Record<string, unknown>> = { obj: { id: string }; params: P };

/** Groups loader queries by their arguments, so that one SQL statement answers each group. */
function byParams<P>(queries: Query<P>[]): Map<string, Query<P>[]> {
  const groups = new Map<string, Query<P>[]>();
  for (const q of queries) {
    const key = JSON.stringify(q.params ?? {});
    const group = groups.get(key);
    if (group) group.push(q);
    else groups.set(key, [q]);
  }
  return groups;
}

async function customersPage(ctx: GraphqlContext, args: { filter?: unknown; first?: number; after?: string }) {
  const first = firstOf(args.first);
  const after = decodeCursor(args.after, ['string']);
  const { sql } = ctx.deps.database;
  const filter = args.filter === undefined || args.filter === null ? null : normalizeFilter(args.filter, '/filter');
  const compiled = filter ? await compileAudience(sql, { workspaceId: ctx.workspaceId, filter, now: ctx.deps.clock.now() }, 'all') : { where: 'true', params: [ctx.workspaceId] };
  const n = compiled.params.length;
  const rows = await sql.unsafe<CustomerSqlRow[]>(
    `select c.* from customers c where c.workspace_id = $1::uuid and ($${n + 1}::uuid is null or c.id > $${n + 1}::uuid) and ${compiled.where} order by c.id limit $${n + 2}::int`,
    [...compiled.params, after?.[0] ?? null, first + 1] as never[],
  );
  const page = rows.slice(0, first);
  const nodes: Customer[] = page.map(fromSqlRow);
  return {
    edges: nodes.map((node) => ({ cursor: encodeCursor([node.id]), node })),
    pageInfo: { hasNextPage: rows.length > first, endCursor: nodes.length ? encodeCursor([nodes[nodes.length - 1]!.id]) : null },
  };
}

export const customerResolvers: IResolvers = {
  Query: {
    customer: async (_root: unknown, args: { id?: string; externalId?: string }, ctx: GraphqlContext) => {
      if ((args.id == null) === (args.externalId == null)) throw invalid('Give exactly one of id or externalId');
      if (args.id != null) uuidArg(args.id);
      // One row: consents, subscriptions and the rest come from loaders, only when asked for.
      const { sql } = ctx.deps.database;
      const [row] = args.id != null
        ? await sql<CustomerSqlRow[]>`select * from customers where workspace_id = ${ctx.workspaceId} and id = ${args.id}`
        : await sql<CustomerSqlRow[]>`select * from customers where workspace_id = ${ctx.workspaceId} and external_id = ${args.externalId!}`;
      if (!row) throw notFound('Customer');
      return fromSqlRow(row);
    },
    customers: async (_root: unknown, args: { filter?: unknown; first?: number; after?: string }, ctx: GraphqlContext) => customersPage(ctx, args),
  },
  Customer: {
    points: (obj: { id: string }) => ({ customerId: obj.id }),
  },
};

export const customerLoaders: MercuriusLoaders = {
  Customer: {
    async consents(queries: Query[], ctx: GraphqlContext) {
      const ids = queries.map((q) => q.obj.id);
      const rows = await ctx.deps.database.sql<{ customer_id: string; channel: string; status: string; source: string; updated_at: Date }[]>`
        select customer_id, channel, status, source, updated_at from customer_consents where workspace_id = ${ctx.workspaceId} and customer_id = any(${ids}::uuid[]) order by channel`;
      return queries.map((q) => rows.filter((r) => r.customer_id === q.obj.id).map((r) => ({ channel: r.channel, status: r.status, source: r.source, updatedAt: r.updated_at })));
    },
    async pushSubscriptions(queries: Query[], ctx: GraphqlContext) {
      const ids = queries.map((q) => q.obj.id);
      const rows = await ctx.deps.database.sql<{ customer_id: string; id: string; kind: string; endpoint: string; platform: string | null; created_at: Date }[]>`
        select customer_id, id, kind, endpoint, platform, created_at from push_subscriptions where workspace_id = ${ctx.workspaceId} and customer_id = any(${ids}::uuid[]) order by created_at`;
      return queries.map((q) => rows.filter((r) => r.customer_id === q.obj.id).map((r) => ({ id: r.id, kind: r.kind, endpoint: r.endpoint, platform: r.platform, createdAt: r.created_at })));
    },
    async events(queries: Query<{ first?: number }>[], ctx: GraphqlContext) {
      const limit = Math.max(...queries.map((q) => firstOf(q.params.first)));
      const ids = queries.map((q) => q.obj.id);
      const rows = await ctx.deps.database.sql<{ id: string; clientId: string | null; customerId: string; type: string; properties: Record<string, unknown>; occurredAt: Date; receivedAt: Date }[]>`
        select e.id, e.client_id as "clientId", e.customer_id as "customerId", e.type, e.properties, e.occurred_at as "occurredAt", e.received_at as "receivedAt"
        from unnest(${ids}::uuid[]) as c(id)
        cross join lateral (select * from events where workspace_id = ${ctx.workspaceId} and customer_id = c.id order by occurred_at desc, id desc limit ${limit}) e`;
      return queries.map((q) => rows.filter((r) => r.customerId === q.obj.id).slice(0, firstOf(q.params.first)));
    },
    async promoCodes(queries: Query[], ctx: GraphqlContext) {
      const ids = queries.map((q) => q.obj.id);
      const rows = await ctx.deps.database.sql<{ customer_id: string; pool: string; code: string; issued_at: Date }[]>`
        select customer_id, pool, code, issued_at from promo_codes where workspace_id = ${ctx.workspaceId} and customer_id = any(${ids}::uuid[]) order by issued_at desc`;
      return queries.map((q) => rows.filter((r) => r.customer_id === q.obj.id).map((r) => ({ pool: r.pool, code: r.code, issuedAt: r.issued_at })));
    },
    /** Memberships: every saved segment evaluated for the whole page at once (one query per segment, whatever the page size). */
    async segments(queries: Query[], ctx: GraphqlContext) {
      const { sql } = ctx.deps.database;
      const ids = queries.map((q) => q.obj.id);
      const segments = await sql<{ id: string; name: string; description: string | null; filter: Filter; created_at: Date; updated_at: Date }[]>`
        select * from segments where workspace_id = ${ctx.workspaceId} order by id limit 200`;
      const members = new Map<string, Set<string>>();
      for (const s of segments) members.set(s.id, await matchCustomers(sql, { workspaceId: ctx.workspaceId, filter: s.filter, now: ctx.deps.clock.now(), customerIds: ids }));
      return queries.map((q) => segments.filter((s) => members.get(s.id)!.has(q.obj.id)).map((s) => ({ id: s.id, name: s.name, description: s.description, filter: s.filter, createdAt: s.created_at, updatedAt: s.updated_at })));
    },
    async timeline(queries: Query<{ first?: number; after?: string; kinds?: TimelineKind[]; since?: string; until?: string }>[], ctx: GraphqlContext) {
      const out = new Map<Query, unknown>();
      for (const group of byParams(queries).values()) {
        const p = group[0]!.params;
        const pages = await timelines(ctx.deps.database.sql, ctx.workspaceId, group.map((q) => q.obj.id), {
          first: firstOf(p.first), after: p.after ?? undefined, kinds: p.kinds ?? undefined,
          since: p.since ? new Date(p.since) : undefined, until: p.until ? new Date(p.until) : undefined,
        });
        for (const q of group) {
          const page = pages.get(q.obj.id)!;
          out.set(q, { edges: page.entries.map((e) => ({ cursor: e.cursor, node: e })), pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.entries.at(-1)?.cursor ?? null } });
        }
      }
      return queries.map((q) => out.get(q));
    },
  },
  Points: {
    async balance(queries: { obj: { customerId: string } }[], ctx: GraphqlContext) {
      const ids = queries.map((q) => q.obj.customerId);
      const rows = await ctx.deps.database.sql<{ customer_id: string; balance: number }[]>`
        select distinct on (customer_id) customer_id, balance from points_ledger
        where workspace_id = ${ctx.workspaceId} and customer_id = any(${ids}::uuid[]) order by customer_id, at desc, id desc`;
      return queries.map((q) => Number(rows.find((r) => r.customer_id === q.obj.customerId)?.balance ?? 0));
    },
    async ledger(queries: { obj: { customerId: string }; params: { first?: number } }[], ctx: GraphqlContext) {
      const limit = Math.max(...queries.map((q) => firstOf(q.params.first)));
      const ids = queries.map((q) => q.obj.customerId);
      const rows = await ctx.deps.database.sql<{ customer_id: string; id: string; delta: number; balance: number; source_type: string; source_id: string; reason: string | null; at: Date }[]>`
        select l.* from unnest(${ids}::uuid[]) as c(id)
        cross join lateral (select * from points_ledger where workspace_id = ${ctx.workspaceId} and customer_id = c.id order by at desc, id desc limit ${limit}) l`;
      return queries.map((q) => rows.filter((r) => r.customer_id === q.obj.customerId).slice(0, firstOf(q.params.first)).map((r) => ({
        id: r.id, delta: Number(r.delta), balance: Number(r.balance), sourceType: r.source_type, sourceId: r.source_id, reason: r.reason, at: r.at,
      })));
    },
  },
};
