// Segments and templates for dashboards over GraphQL, from their REST services.
import type { IResolvers } from 'mercurius';
import { countAudience } from '../../audience/audience.service.ts';
import type { Filter } from '../../audience/filter.ts';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, firstOf, uuidArg } from '../customers/customers.graphql.ts';
import { getTemplate, listTemplates } from '../templates/templates.service.ts';
import { getSegment, listSegments } from './segments.service.ts';

export const segmentSchema = /* GraphQL */ `
  type Segment {
    id: ID!
    name: String!
    description: String
    filter: JSON!
    createdAt: DateTime!
    updatedAt: DateTime!
    "How many customers match now (computed when asked for)."
    count: Int!
  }

  type SegmentConnection {
    edges: [SegmentEdge!]!
    pageInfo: PageInfo!
  }

  type SegmentEdge {
    cursor: String
    node: Segment!
  }

  type Template {
    id: ID!
    name: String!
    channel: String!
    version: Int!
    currentVersion: Int!
    content: JSON!
    mergeTags: [String!]!
    createdAt: DateTime!
    updatedAt: DateTime!
  }

  type TemplateConnection {
    edges: [TemplateEdge!]!
    pageInfo: PageInfo!
  }

  type TemplateEdge {
    cursor: String
    node: Template!
  }

  extend type Query {
    segment(id: ID!): Segment
    segments(first: Int = 20, after: String): SegmentConnection!
    template(id: ID!, version: Int): Template
    templates(first: Int = 20, after: String, channel: String): TemplateConnection!
  }
`;

export const segmentResolvers: IResolvers = {
  Query: {
    segment: (_root: unknown, args: { id: string }, ctx: GraphqlContext) => getSegment(ctx.deps, ctx.workspaceId, uuidArg(args.id)),
    segments: async (_root: unknown, args: { first?: number; after?: string }, ctx: GraphqlContext) =>
      connectionOf(await listSegments(ctx.deps, ctx.workspaceId, { limit: Math.max(1, firstOf(args.first)), ...(args.after ? { cursor: args.after } : {}) })),
    template: (_root: unknown, args: { id: string; version?: number }, ctx: GraphqlContext) => getTemplate(ctx.deps, ctx.workspaceId, uuidArg(args.id), args.version ?? undefined),
    templates: async (_root: unknown, args: { first?: number; after?: string; channel?: string }, ctx: GraphqlContext) =>
      connectionOf(await listTemplates(ctx.deps, ctx.workspaceId, { limit: Math.max(1, firstOf(args.first)), ...(args.after ? { cursor: args.after } : {}), ...(args.channel ? { channel: args.channel as never } : {}) })),
  },
  Segment: {
    count: (obj: { filter: Filter }, _args: unknown, ctx: GraphqlContext) => countAudience(ctx.deps.database.sql, { workspaceId: ctx.workspaceId, filter: obj.filter, now: ctx.deps.clock.now() }),
  },
};
