// The customer read model over GraphQL: the same service functions as REST, and a loader that
// fetches the recent events of a whole page of customers in one query.
import type { IResolvers, MercuriusLoaders } from 'mercurius';
import type { Deps } from '../../deps.ts';
import { invalid } from '../../http/errors.ts';
import type { Event } from '../events/events.schemas.ts';
import type { CustomerDetail } from './customers.schemas.ts';
import { customerIdByExternalId, getCustomer } from './customers.service.ts';

export const customerSchema = /* GraphQL */ `
  scalar JSON
  scalar DateTime

  type Query {
    "A customer by Herald id or by your externalId (give exactly one)."
    customer(id: ID, externalId: String): Customer
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
    "The most recent events, newest first."
    events(first: Int = 20): [Event!]!
  }

  type Consent {
    channel: String!
    status: String!
    source: String!
    updatedAt: DateTime!
  }

  type Event {
    id: ID!
    clientId: String
    type: String!
    properties: JSON!
    occurredAt: DateTime!
    receivedAt: DateTime!
  }
`;

export interface GraphqlContext {
  deps: Deps;
  workspaceId: string;
}

declare module 'mercurius' {
  interface MercuriusContext extends GraphqlContext {}
}

const MAX_EVENTS = 100;

export const customerResolvers: IResolvers = {
  Query: {
    customer: async (_root: unknown, args: { id?: string; externalId?: string }, ctx: GraphqlContext): Promise<CustomerDetail> => {
      if ((args.id == null) === (args.externalId == null)) throw invalid('Give exactly one of id or externalId');
      if (args.id != null && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(args.id)) throw invalid('id is not a UUID');
      const id = args.id ?? (await customerIdByExternalId(ctx.deps, ctx.workspaceId, args.externalId!));
      return getCustomer(ctx.deps, ctx.workspaceId, id);
    },
  },
};

export const customerLoaders: MercuriusLoaders = {
  Customer: {
    async events(queries: { obj: { id: string }; params: { first?: number } }[], ctx: GraphqlContext) {
      const limit = Math.min(Math.max(...queries.map((q) => q.params.first ?? 20)), MAX_EVENTS);
      if (queries.some((q) => (q.params.first ?? 20) < 0 || (q.params.first ?? 20) > MAX_EVENTS)) throw invalid(`first must be between 0 and ${MAX_EVENTS}`);
      const ids = queries.map((q) => q.obj.id);
      const rows = await ctx.deps.database.sql<(Event & { customerId: string })[]>`
        select e.id, e.client_id as "clientId", e.customer_id as "customerId", e.type, e.properties, e.occurred_at as "occurredAt", e.received_at as "receivedAt"
        from unnest(${ids}::uuid[]) as c(id)
        cross join lateral (
          select * from events where workspace_id = ${ctx.workspaceId} and customer_id = c.id order by occurred_at desc limit ${limit}
        ) e`;
      return queries.map((q) => rows.filter((r) => r.customerId === q.obj.id).slice(0, q.params.first ?? 20));
    },
  },
};
