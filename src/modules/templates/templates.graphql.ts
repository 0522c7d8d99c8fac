// Templates for dashboards over GraphQL, from their REST service.
import type { IResolvers } from 'mercurius';
import type { GraphqlContext } from '../customers/customers.graphql.ts';
import { connectionOf, connectionTypes, pageOf, uuidArg } from '../customers/customers.graphql.ts';
import { getTemplate, listTemplates } from './templates.service.ts';

export const templateSchema = /* GraphQL */ `
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

  ${connectionTypes('Template')}
  extend type Query {
    template(id: ID!, version: Int): Template
    templates(first: Int = 20, after: String, channel: String): TemplateConnection!
  }
`;

export const templateResolvers: IResolvers = {
  Query: {
    template: (_root: unknown, args: { id: string; version?: number }, ctx: GraphqlContext) => getTemplate(ctx.deps, ctx.workspaceId, uuidArg(args.id), args.version ?? undefined),
    templates: async (_root: unknown, args: { first?: number; after?: string; channel?: string }, ctx: GraphqlContext) =>
      connectionOf(await listTemplates(ctx.deps, ctx.workspaceId, { ...pageOf(args), ...(args.channel ? { channel: args.channel as never } : {}) })),
  },
};
