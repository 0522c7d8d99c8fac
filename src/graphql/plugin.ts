// GraphQL at /graphql: the same keys as REST (checked by the auth hook before mercurius runs),
// a depth limit, and errors that carry a code and never a stack or SQL.
import type { FastifyInstance } from 'fastify';
import { GraphQLScalarType, Kind } from 'graphql';
import mercurius from 'mercurius';
import type { Deps } from '../deps.ts';
import { HeraldError } from '../http/errors.ts';
import { customerLoaders, customerResolvers, customerSchema, type GraphqlContext } from '../modules/customers/customers.graphql.ts';

export const MAX_QUERY_DEPTH = 8;

const CODES: Record<number, string> = { 400: 'BAD_USER_INPUT', 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 422: 'BAD_USER_INPUT' };

const JSONScalar = new GraphQLScalarType({ name: 'JSON', serialize: (v) => v, parseValue: (v) => v, parseLiteral: (ast) => (ast.kind === Kind.STRING ? ast.value : null) });
const DateTime = new GraphQLScalarType({ name: 'DateTime', serialize: (v) => (v instanceof Date ? v.toISOString() : v) });

export const schema = customerSchema;

export async function graphqlPlugin(app: FastifyInstance, opts: { deps: Deps; graphiql: boolean }) {
  await app.register(mercurius, {
    schema,
    resolvers: { ...customerResolvers, JSON: JSONScalar, DateTime } as never,
    loaders: customerLoaders,
    graphiql: opts.graphiql,
    queryDepth: MAX_QUERY_DEPTH,
    allowBatchedQueries: false,
    context: (request): GraphqlContext => {
      const p = request.principal;
      return { deps: opts.deps, workspaceId: p?.kind === 'key' ? p.workspaceId : '' };
    },
    errorFormatter: (execution, context) => {
      const formatted = mercurius.defaultErrorFormatter(execution, context);
      const errors = (execution.errors ?? []).map((e) => {
        const original = e.originalError;
        if (original instanceof HeraldError) {
          return { message: original.message, locations: e.locations, path: e.path, extensions: { code: CODES[original.status] ?? 'BAD_USER_INPUT' } };
        }
        if (original && !(original as { extensions?: unknown }).extensions && e.path) {
          app.log.error({ err: original }, 'graphql resolver error');
          return { message: 'Internal error', locations: e.locations, path: e.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
        }
        return { message: e.message, locations: e.locations, path: e.path, extensions: { code: 'GRAPHQL_VALIDATION_FAILED', ...(e.extensions ?? {}) } };
      });
      return { statusCode: formatted.statusCode, response: { data: formatted.response.data ?? null, errors } };
    },
  });
}
