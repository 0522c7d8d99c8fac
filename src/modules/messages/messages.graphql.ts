// Timeline entries, messages (with their personalised content on request) and action templates
// with "same actions" over GraphQL, on the services of messages.service.ts and timeline.ts.
import type { IResolvers, MercuriusLoaders } from 'mercurius';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, firstOf } from '../customers/customers.graphql.ts';
import { contentAsSent, type StoredMessage } from './as-sent.ts';
import { actionTemplateCustomers, listActionTemplates } from './messages.service.ts';
import type { TimelineRow } from './timeline.ts';
import { fromSqlRow, type CustomerSqlRow } from '../customers/customers.service.ts';

export const messageSchema = /* GraphQL */ `
  enum TimelineKind { event message action flow }

  type TimelineConnection {
    edges: [TimelineEdge!]!
    pageInfo: PageInfo!
  }

  type TimelineEdge {
    cursor: String!
    node: TimelineEntry!
  }

  "One thing in a customer's history; exactly one of event, message, action and decision is set, as kind says."
  type TimelineEntry {
    id: ID!
    kind: TimelineKind!
    at: DateTime!
    data: JSON!
    event: TimelineEvent
    message: TimelineMessage
    action: TimelineAction
    decision: FlowDecision
    "The customer the entry belongs to."
    customer: Customer!
  }

  type TimelineEvent { type: String!, properties: JSON! }

  type TimelineMessage {
    id: ID!
    channel: String!
    status: String!
    "Why it was not sent, failed, or is unknown."
    reason: String
    templateId: ID!
    templateVersion: Int!
    source: JSON!
    "The personalised content as sent (asked for only when needed)."
    content: JSON
    toAddress: String
    sentAt: DateTime
  }

  type TimelineAction {
    kind: String!
    actionTemplateId: ID!
    messageId: ID!
    sourceType: String!
    sourceId: String!
    "Channel, URL of a click, user agent and IP where known."
    touchpoint: JSON!
  }

  "A decision of the flow engine for the customer: the node, the branch taken, and why."
  type FlowDecision {
    flowId: ID!
    version: Int!
    entryId: ID!
    nodeId: String!
    nodeType: String!
    branch: String
    reason: JSON!
  }

  type ActionTemplate {
    id: ID!
    kind: String!
    channel: String!
    sourceType: String!
    sourceId: String!
    "A flow's send step (node/index): each has its own set. Empty for actions."
    stepId: String!
    "Customers who got it."
    count: Int!
    "Customers who got it (same actions), newest first."
    customers(first: Int = 20, after: String): ActionTemplateCustomerConnection!
  }

  type ActionTemplateCustomerConnection {
    edges: [ActionTemplateCustomerEdge!]!
    pageInfo: PageInfo!
  }

  type ActionTemplateCustomerEdge {
    cursor: String
    node: ActionTemplateCustomer!
  }

  type ActionTemplateCustomer {
    customerId: ID!
    externalId: String
    email: String
    messageId: ID!
    occurredAt: DateTime!
    touchpoint: JSON!
  }

  extend type Query {
    "The action templates of a message source (an action, a flow, a test send), with counts."
    actionTemplates(sourceType: String!, sourceId: String!): [ActionTemplate!]!
  }

  type Subscription {
    "New timeline entries of a customer as they are written, from any process."
    timelineUpdated(customerId: ID!): TimelineEntry!
  }
`;

const kindOf = (e: TimelineRow, kind: string) => (e.kind === kind ? e.data : null);

export const messageResolvers: IResolvers = {
  Query: {
    actionTemplates: async (_root: unknown, args: { sourceType: string; sourceId: string }, ctx: GraphqlContext) =>
      (await listActionTemplates(ctx.deps, ctx.workspaceId, args.sourceType, args.sourceId)).map((a) => ({ ...a, count: a.customers })),
  },
  TimelineEntry: {
    event: (e: TimelineRow) => kindOf(e, 'event'),
    message: (e: TimelineRow) => (e.kind === 'message' ? { id: e.id, ...e.data } : null),
    action: (e: TimelineRow) => kindOf(e, 'action'),
    decision: (e: TimelineRow) => kindOf(e, 'flow'),
  },
  ActionTemplate: {
    customers: async (obj: { id: string }, args: { first?: number; after?: string }, ctx: GraphqlContext) => {
      return connectionOf(await actionTemplateCustomers(ctx.deps, ctx.workspaceId, obj.id, { limit: Math.max(1, firstOf(args.first)), ...(args.after ? { cursor: args.after } : {}) }));
    },
  },
};

export const messageLoaders: MercuriusLoaders = {
  TimelineEntry: {
    async customer(queries: { obj: TimelineRow }[], ctx: GraphqlContext) {
      const ids = [...new Set(queries.map((q) => q.obj.customerId))];
      const rows = await ctx.deps.database.sql<CustomerSqlRow[]>`select * from customers where workspace_id = ${ctx.workspaceId} and id = any(${ids}::uuid[])`;
      return queries.map((q) => fromSqlRow(rows.find((c) => c.id === q.obj.customerId)!));
    },
  },
  TimelineMessage: {
    /** The content of every message on the page in one query. */
    async content(queries: { obj: { id: string } }[], ctx: GraphqlContext) {
      const rows = await ctx.deps.database.sql<StoredMessage[]>`
        select workspace_id, id, template_id, template_version, rendered from messages where workspace_id = ${ctx.workspaceId} and id = any(${queries.map((q) => q.obj.id)}::uuid[])`;
      const byId = new Map(rows.map((r) => [r.id, r]));
      return Promise.all(queries.map(async (q) => {
        const row = byId.get(q.obj.id);
        return row ? contentAsSent(ctx.deps, row) : null;
      }));
    },
  },
};

