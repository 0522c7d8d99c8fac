// GraphQL at /graphql: the same keys as REST (checked by the auth hook before mercurius runs),
// a depth limit, and errors that carry a code and never a stack or SQL.
import type { FastifyInstance } from 'fastify';
import { GraphQLError, GraphQLScalarType, Kind, type SourceLocation } from 'graphql';
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
      let statusCode = formatted.statusCode;
      const errors = (execution.errors ?? []).flatMap((e) => {
        const original = e.originalError as (Error & { errors?: { message: string; locations?: readonly SourceLocation[] }[] }) | undefined;
        if (original instanceof HeraldError) {
          // Raised before execution (auth, rate limit): the HTTP status says it too.
          if (!e.path && [401, 403, 429].includes(original.status)) statusCode = original.status;
          return [{ message: original.message, locations: e.locations, path: e.path, extensions: { code: CODES[original.status] ?? 'BAD_USER_INPUT' } }];
        }
        if (Array.isArray(original?.errors)) {
          return original.errors.map((inner) => ({ message: inner.message, locations: inner.locations, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
        }
        if (original && e.path && !(original instanceof GraphQLError)) {
          app.log.error({ err: original }, 'graphql resolver error');
          return [{ message: 'Internal error', locations: e.locations, path: e.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } }];
        }
        return [{ message: e.message, locations: e.locations, path: e.path, extensions: { code: e.path ? 'BAD_USER_INPUT' : 'GRAPHQL_VALIDATION_FAILED' } }];
      });
      return { statusCode, response: { data: formatted.response.data ?? null, errors } };
    },
  });
}
