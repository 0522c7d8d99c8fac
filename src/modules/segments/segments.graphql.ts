// Segments for dashboards over GraphQL, from their REST service.
import type { IResolvers } from 'mercurius';
import { countAudience } from '../../audience/audience.service.ts';
import type { Filter } from '../../audience/filter.ts';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, connectionTypes, pageOf, uuidArg } from '../customers/customers.graphql.ts';
import { getSegment, listSegments } from './segments.service.ts';

/** Segment counts of one request (its context), by segment id. */
const countsOf = new WeakMap<GraphqlContext, Map<string, Promise<number>>>();

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

  ${connectionTypes('Segment')}
  extend type Query {
    segment(id: ID!): Segment
    segments(first: Int = 20, after: String): SegmentConnection!
  }
`;

export const segmentResolvers: IResolvers = {
  Query: {
    segment: (_root: unknown, args: { id: string }, ctx: GraphqlContext) => getSegment(ctx.deps, ctx.workspaceId, uuidArg(args.id)),
    segments: async (_root: unknown, args: { first?: number; after?: string }, ctx: GraphqlContext) =>
      connectionOf(await listSegments(ctx.deps, ctx.workspaceId, { ...pageOf(args) })),
  },
  Segment: {
    // Once per segment per request: a segment listed under each of a page of customers is counted once, not once per customer.
    count: (obj: { id: string; filter: Filter }, _args: unknown, ctx: GraphqlContext) => {
      let counts = countsOf.get(ctx);
      if (!counts) countsOf.set(ctx, (counts = new Map()));
      let count = counts.get(obj.id);
      if (!count) counts.set(obj.id, (count = countAudience(ctx.deps.database.sql, { workspaceId: ctx.workspaceId, filter: obj.filter, now: ctx.deps.clock.now() })));
      return count;
    },
  },
};
