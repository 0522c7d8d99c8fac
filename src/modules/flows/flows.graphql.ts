// Flows for dashboards over GraphQL: versions and live node stats, from flows.service.ts and
// flows.stats.ts (the same functions as REST).
import type { IResolvers } from 'mercurius';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, connectionTypes, pageOf, uuidArg } from '../customers/customers.graphql.ts';
import { getFlow, listFlows, listVersions } from './flows.service.ts';
import { flowStats } from './flows.stats.ts';

export const flowSchema = /* GraphQL */ `
  type Flow {
    id: ID!
    name: String!
    status: String!
    activeVersion: Int
    draftVersion: Int
    draftStatus: String
    problems: JSON!
    settings: JSON!
    createdAt: DateTime!
    updatedAt: DateTime!
    "Every version: graph, when drafted, launched and stopped."
    versions: [FlowVersion!]!
    "Live per-node counts (entered, waiting, branches, exits; A/B conversions with conversionEvent)."
    stats(conversionEvent: String): JSON!
  }

  type FlowVersion {
    version: Int!
    status: String!
    graph: JSON!
    settings: JSON!
    problems: JSON!
    draftedAt: DateTime!
    launchedAt: DateTime
    stoppedAt: DateTime
  }

  ${connectionTypes('Flow')}
  extend type Query {
    flow(id: ID!): Flow
    flows(first: Int = 20, after: String): FlowConnection!
  }
`;

export const flowResolvers: IResolvers = {
  Query: {
    flow: (_root: unknown, args: { id: string }, ctx: GraphqlContext) => getFlow(ctx.deps, ctx.workspaceId, uuidArg(args.id)),
    flows: async (_root: unknown, args: { first?: number; after?: string }, ctx: GraphqlContext) => {
      return connectionOf(await listFlows(ctx.deps, ctx.workspaceId, { ...pageOf(args) }));
    },
  },
  Flow: {
    versions: async (obj: { id: string }, _args: unknown, ctx: GraphqlContext) => (await listVersions(ctx.deps, ctx.workspaceId, obj.id)).data,
    stats: (obj: { id: string }, args: { conversionEvent?: string }, ctx: GraphqlContext) => flowStats(ctx.deps, ctx.workspaceId, obj.id, args.conversionEvent ? { conversionEvent: args.conversionEvent } : {}),
  },
};
