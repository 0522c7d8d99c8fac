// GraphQL at /graphql: the same keys as REST (checked by the auth hook before mercurius runs),
// a depth limit, and errors that carry a code and never a stack or SQL.
import type { FastifyInstance } from 'fastify';
import { GraphQLError, GraphQLScalarType, Kind, specifiedRules, validate, valueFromASTUntyped, type SourceLocation, type ValidationRule } from 'graphql';
import mercurius, { type IResolvers } from 'mercurius';
import { isDatabaseDown } from '../db/errors.ts';
import type { Deps } from '../deps.ts';
import { HeraldError } from '../http/errors.ts';
import { isBadData } from '../http/problem.ts';
import { actionResolvers, actionSchema } from '../modules/actions/actions.graphql.ts';
import { customerLoaders, customerResolvers, customerSchema, type GraphqlContext } from '../modules/customers/customers.graphql.ts';
import { flowResolvers, flowSchema } from '../modules/flows/flows.graphql.ts';
import { messageLoaders, messageResolvers, messageSchema } from '../modules/messages/messages.graphql.ts';
import { segmentResolvers, segmentSchema } from '../modules/segments/segments.graphql.ts';
import { templateResolvers, templateSchema } from '../modules/templates/templates.graphql.ts';
import { MAX_DEPTH, subscriptionLimits, validationRules, variableLimits } from './limits.ts';
import { TimelineFeed } from './subscriptions.ts';

export const MAX_QUERY_DEPTH = MAX_DEPTH;

const CODES: Record<number, string> = { 400: 'BAD_USER_INPUT', 401: 'UNAUTHENTICATED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 422: 'BAD_USER_INPUT' };

const JSONScalar = new GraphQLScalarType({ name: 'JSON', serialize: (v) => v, parseValue: (v) => v, parseLiteral: (ast, variables) => valueFromASTUntyped(ast, variables) });
/** An RFC 3339 date-time, as input too: anything else is the caller's error (it reached the resolvers as an Invalid Date, a 500). */
const dateTimeOf = (v: unknown): string => {
  const m = typeof v === 'string' ? /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.exec(v) : null;
  // A day the month does not have (2026-02-30) is refused, not rolled over into the next month.
  const day = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : null;
  if (!m || !day || day.getUTCMonth() !== Number(m[2]) - 1 || day.getUTCDate() !== Number(m[3]) || Number.isNaN(Date.parse(v as string))) {
    throw new GraphQLError(`DateTime must be an RFC 3339 date-time such as 2026-06-01T09:00:00Z (got ${JSON.stringify(v)?.slice(0, 60)})`);
  }
  return v as string;
};
const DateTime = new GraphQLScalarType({
  name: 'DateTime',
  serialize: (v) => (v instanceof Date ? v.toISOString() : v),
  parseValue: dateTimeOf,
  parseLiteral: (ast) => dateTimeOf(ast.kind === Kind.STRING ? ast.value : undefined),
});

/** The whole schema (also written to openapi/schema.graphql by `npm run openapi`). */
export const schema = [customerSchema, messageSchema, flowSchema, actionSchema, segmentSchema, templateSchema].join('\n');

/** Subscriptions live on the WebSocket; over HTTP they are refused with that answer. */
const noSubscriptionOverHttp: ValidationRule = (context) => ({
  OperationDefinition(node) {
    if (node.operation === 'subscription') context.reportError(new GraphQLError('Subscriptions are served over WebSocket (graphql-transport-ws) at /graphql, not over HTTP', { nodes: node }));
  },
});

function mergeResolvers(...all: IResolvers[]): IResolvers {
  const out: Record<string, Record<string, unknown>> = {};
  for (const r of all) for (const [type, fields] of Object.entries(r)) out[type] = { ...out[type], ...(fields as Record<string, unknown>) };
  return out as IResolvers;
}

/** How often the keys of open subscriptions are checked again (an expiry; a revocation this process did not hear). */
const KEY_RECHECK_MS = 30_000;
/** The WebSocket close code for a subscription whose key was revoked or expired (4401, as graphql-ws uses for unauthorized). */
export const KEY_GONE_CLOSE_CODE = 4401;

interface Closable {
  close(code?: number, reason?: string): void;
  once(event: 'close', listener: () => void): unknown;
}

export async function graphqlPlugin(app: FastifyInstance, opts: { deps: Deps; introspection: boolean }) {
  const feed = new TimelineFeed(opts.deps.database.sql);
  // A subscription lives on its socket as long as the socket is open, authorised once at the
  // upgrade: each socket is kept by its key, and closed when the key is revoked (this process's
  // own revocation, or another's heard through NOTIFY) or found revoked or expired by a recheck.
  const sockets = new Map<string, Set<Closable>>();
  const closeKey = (keyId: string) => {
    for (const socket of sockets.get(keyId) ?? []) socket.close(KEY_GONE_CLOSE_CODE, 'The API key was revoked or has expired');
    sockets.delete(keyId);
  };
  const recheck = async () => {
    const ids = [...sockets.keys()];
    if (!ids.length) return;
    const live = await opts.deps.database.sql<{ id: string }[]>`
      select id from api_keys where id = any(${ids}::uuid[]) and revoked_at is null and (expires_at is null or expires_at > ${opts.deps.clock.now()})`;
    const ok = new Set(live.map((r) => r.id));
    for (const id of ids) if (!ok.has(id)) closeKey(id);
  };
  const recheckSoon = () => void recheck().catch((error: unknown) => app.log.warn({ err: error }, 'graphql: the subscriptions\' keys could not be checked'));
  app.onApiKeyForgotten((keyId) => (keyId ? closeKey(keyId) : recheckSoon()));
  const rechecks = setInterval(recheckSoon, KEY_RECHECK_MS);
  rechecks.unref();
  const track = (keyId: string, socket: Closable) => {
    let set = sockets.get(keyId);
    if (!set) sockets.set(keyId, (set = new Set()));
    if (set.has(socket)) return; // a second connection_init on the socket
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (!set.size && sockets.get(keyId) === set) sockets.delete(keyId);
    });
  };
  const contextOf = (principal: { kind: string; workspaceId?: string } | null): GraphqlContext => ({
    deps: opts.deps, workspaceId: principal?.kind === 'key' ? principal.workspaceId! : '',
  });
  const subscription: IResolvers = {
    Subscription: {
      timelineUpdated: {
        // Errors here reach the socket without the error formatter: ours keep their message and
        // code, anything else (a database error) is logged and answered as an internal error.
        subscribe: (async (_root: unknown, args: { customerId: string }, ctx: Parameters<TimelineFeed['subscribe']>[0]) => {
          try {
            return await feed.subscribe(ctx, args.customerId);
          } catch (error) {
            if (error instanceof HeraldError) throw new GraphQLError(error.message, { extensions: { code: CODES[error.status] ?? 'BAD_USER_INPUT' } });
            app.log.error({ err: error }, 'graphql subscription error');
            throw new GraphQLError('Internal error', { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
          }
        }) as never,
        resolve: (payload: { timelineUpdated: unknown }) => payload.timelineUpdated,
      },
    },
  };
  await app.register(mercurius, {
    schema,
    resolvers: mergeResolvers(customerResolvers, messageResolvers, flowResolvers, actionResolvers, segmentResolvers, templateResolvers, subscription, { JSON: JSONScalar, DateTime } as never) as never,
    loaders: { ...customerLoaders, ...messageLoaders },
    graphiql: opts.introspection,
    queryDepth: MAX_QUERY_DEPTH,
    allowBatchedQueries: false,
    // Static rules, so that mercurius caches parsing and validation per query text; `first: $n`
    // is checked with its value in the preExecution hook below.
    validationRules: [...validationRules(undefined, opts.introspection), noSubscriptionOverHttp],
    // Compile a query with graphql-jit from its second use (bench:graphql).
    jit: 1,
    subscription: {
      // The upgrade request went through the same auth hook as every /graphql request.
      context: (socket, request) => {
        if (request.principal?.kind === 'key') track(request.principal.keyId, socket as unknown as Closable);
        return contextOf(request.principal);
      },
    },
    context: (request): GraphqlContext => contextOf(request.principal),
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
        if (original && isBadData(original)) {
          return [{ message: 'A value cannot be stored or compared (out of range or malformed)', locations: e.locations, path: e.path, extensions: { code: 'BAD_USER_INPUT' } }];
        }
        if (original && isDatabaseDown(original)) {
          // Not a bug of ours: the database is down (a restart). Like REST, answer 503.
          statusCode = 503;
          context?.reply?.header('retry-after', '5');
          return [{ message: 'The database is unavailable; retry shortly', locations: e.locations, path: e.path, extensions: { code: 'SERVICE_UNAVAILABLE' } }];
        }
        if (original && e.path && !(original instanceof GraphQLError)) {
          app.log.error({ err: original }, 'graphql resolver error');
          return [{ message: 'Internal error', locations: e.locations, path: e.path, extensions: { code: 'INTERNAL_SERVER_ERROR' } }];
        }
        return [{ message: e.message, locations: e.locations, path: e.path, extensions: { code: e.path ? 'BAD_USER_INPUT' : 'GRAPHQL_VALIDATION_FAILED' } }];
      });
      // A query refused by validation is a bad request, whatever the environment.
      if (!formatted.response.data && errors.length && errors.every((e) => e.extensions.code === 'GRAPHQL_VALIDATION_FAILED')) statusCode = 400;
      return { statusCode, response: { data: formatted.response.data ?? null, errors } };
    },
  });
  app.graphql.addHook('preExecution', async (schema, document, _context, variables) => {
    const problems = variableLimits(document, variables as Record<string, unknown> | undefined, schema);
    if (problems.length) throw Object.assign(new Error('The query is over a limit'), { errors: problems.map((m) => new GraphQLError(m)), statusCode: 400 });
  });
  // The WebSocket path gets the same limits as HTTP, before anything is subscribed.
  app.graphql.addHook('preSubscriptionExecution', async (schema, document) => {
    // The standard rules too: this path is not validated the way HTTP's is.
    const errors = validate(schema, document, [...specifiedRules, ...validationRules(undefined, opts.introspection)]).map((e) => e.message);
    // Its variables are not known here: a `first: $n` counts at its largest.
    if (!errors.length) errors.push(...subscriptionLimits(document, schema));
    if (errors.length) throw new GraphQLError(errors.join('; '));
  });
  feed.start((topic, payload) => {
    app.graphql.pubsub.publish({ topic, payload }, () => {});
  });
  app.addHook('onClose', () => {
    clearInterval(rechecks);
    return feed.stop();
  });
}
