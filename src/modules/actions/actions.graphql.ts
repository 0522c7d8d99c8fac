// Actions for dashboards over GraphQL: settings, runs, the funnel and the conversion series,
// from actions.service.ts and actions.report.ts (the same functions as REST).
import type { IResolvers } from 'mercurius';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, connectionTypes, pageOf, uuidArg } from '../customers/customers.graphql.ts';
import { actionReport } from './actions.report.ts';
import { getAction, listActions } from './actions.service.ts';

export const actionSchema = /* GraphQL */ `
  type Action {
    id: ID!
    name: String!
    kind: String!
    status: String!
    channel: String!
    channelConfigId: ID!
    templateId: ID!
    audience: JSON!
    everyMinutes: Int
    schedule: JSON
    repeat: String
    startAt: DateTime
    endAt: DateTime
    nextRunAt: DateTime
    lastRunAt: DateTime
    launchedAt: DateTime
    createdAt: DateTime!
    deletedAt: DateTime
    "The delivery funnel, the runs and (with conversionEvent) the conversion series."
    report(conversionEvent: String, conversionWindowHours: Int, interval: String, timeZone: String): JSON!
  }

  ${connectionTypes('Action')}
  extend type Query {
    action(id: ID!): Action
    actions(first: Int = 20, after: String, kind: String, status: String): ActionConnection!
  }
`;

export const actionResolvers: IResolvers = {
  Query: {
    action: (_root: unknown, args: { id: string }, ctx: GraphqlContext) => getAction(ctx.deps, ctx.workspaceId, uuidArg(args.id)),
    actions: async (_root: unknown, args: { first?: number; after?: string; kind?: string; status?: string }, ctx: GraphqlContext) => {
      return connectionOf(await listActions(ctx.deps, ctx.workspaceId, {
        ...pageOf(args), ...(args.kind ? { kind: args.kind as never } : {}), ...(args.status ? { status: args.status as never } : {}),
      }));
    },
  },
  Action: {
    report: (obj: { id: string }, args: { conversionEvent?: string; conversionWindowHours?: number; interval?: 'day' | 'hour'; timeZone?: string }, ctx: GraphqlContext) =>
      actionReport(ctx.deps, ctx.workspaceId, obj.id, Object.fromEntries(Object.entries(args).filter(([, v]) => v != null))),
  },
};
