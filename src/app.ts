// buildApp: the whole HTTP application as a plugin tree, in order: core plugins, the contract
// (OpenAPI), cross-cutting HTTP concerns (auth, rate limits, idempotency), then the modules.
import { randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Deps } from './deps.ts';
import { invalid, type FieldError } from './http/errors.ts';
import { graphqlPlugin } from './graphql/plugin.ts';
import { authPlugin } from './http/auth.ts';
import { requestDecoding } from './http/encoding.ts';
import { sharedRateLimit } from './http/rate-limit.ts';
import { idempotencyPlugin } from './http/idempotency.ts';
import { openapiPlugin } from './http/openapi.ts';
import { problemBody, problemPlugin, sendProblem } from './http/problem.ts';
import type { App } from './http/types.ts';
import { validatorCompiler } from './http/validation.ts';
import { jobs } from './jobs/index.ts';
import { customerRoutes } from './modules/customers/customers.routes.ts';
import { eventRoutes } from './modules/events/events.routes.ts';
import { importRoutes } from './modules/imports/imports.routes.ts';
import { channelRoutes } from './modules/channels/channels.routes.ts';
import { actionRoutes } from './modules/actions/actions.routes.ts';
import { flowRoutes } from './modules/flows/flows.routes.ts';
import { promotionRoutes } from './modules/promotions/promotions.routes.ts';
import { segmentRoutes } from './modules/segments/segments.routes.ts';
import { templateRoutes } from './modules/templates/templates.routes.ts';
import { messageRoutes } from './modules/messages/messages.routes.ts';
import { trackingRoutes } from './modules/tracking/tracking.routes.ts';
import { webhookRoutes } from './modules/webhooks/webhooks.routes.ts';
import { workspaceRoutes } from './modules/workspaces/workspaces.routes.ts';
import { opsRoutes } from './ops/ops.routes.ts';

const UUID_ANY_CASE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface BuildOptions {
  deps: Deps;
  rootToken: string;
  /** Whether pg-boss has started, for /readyz. */
  queueReady: () => boolean;
  logger?: boolean;
}

/** The JSON pointer of the first string (or key) holding U+0000 in parsed JSON, if any (iterative: bodies may nest deeply). */
/**
 * JSON nested deeper than this is refused: nothing Herald keeps needs it (audience filters stop
 * far sooner), and a few thousand levels overflow JSON.stringify and PostgreSQL's jsonb (a 500).
 */
export const MAX_JSON_DEPTH = 64;

/** The first value PostgreSQL could not take (U+0000 in text or a key) or that is nested too deeply. */
function badValue(root: unknown, base: string): FieldError | undefined {
  const stack: [unknown, string, number][] = [[root, base, 0]];
  while (stack.length) {
    const [value, at, depth] = stack.pop()!;
    if (typeof value === 'string') {
      if (value.includes('\u0000')) return { pointer: at, detail: 'contains U+0000' };
    } else if (Array.isArray(value)) {
      if (depth >= MAX_JSON_DEPTH) return { pointer: at, detail: `nested deeper than ${MAX_JSON_DEPTH} levels` };
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${at}/${i}`, depth + 1]);
    } else if (value && typeof value === 'object' && typeof (value as { pipe?: unknown }).pipe !== 'function' && !Buffer.isBuffer(value)) {
      // Parsed JSON and query strings only: a streamed body (a CSV import) is not walked.
      if (depth >= MAX_JSON_DEPTH) return { pointer: at, detail: `nested deeper than ${MAX_JSON_DEPTH} levels` };
      for (const [key, v] of Object.entries(value)) {
        const here = `${at}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;
        if (key.includes('\u0000')) return { pointer: here, detail: 'contains U+0000' };
        stack.push([v, here, depth + 1]);
      }
    }
  }
  return undefined;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

export async function buildApp({ deps, rootToken, queueReady, logger = true }: BuildOptions): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    logger: logger && {
      level: config.logLevel,
      redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization'], censor: '[redacted]' },
    },
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    // Router errors answer as problem+json too: a malformed URL is a 400, a path parameter longer
    // than any id is not found.
    frameworkErrors: (error, request, reply) => {
      const tooLong = error.code === 'FST_ERR_MAX_PARAM_LENGTH';
      return sendProblem(request, reply, problemBody(request, tooLong ? 404 : 400, tooLong ? 'not_found' : 'bad_url', tooLong ? 'Not Found' : 'Bad Request', tooLong ? 'No such resource' : 'The URL is malformed'));
    },
    bodyLimit: DEFAULT_BODY_LIMIT,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setValidatorCompiler(validatorCompiler());
  requestDecoding(app);
  // JSON is the API's only body type (imports add CSV and NDJSON on their route): text is a 415.
  app.removeContentTypeParser('text/plain');
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('x-request-id', request.id);
    return payload;
  });
  // PostgreSQL text and jsonb cannot hold U+0000, and deep nesting overflows stacks: refused up
  // front, naming the field, instead of failing in the database.
  app.addHook('preValidation', async (request) => {
    // Ids are stored in lower case: an id in the path written in upper case (still a valid
    // UUID) is the same resource, and every comparison made in SQL and JSON paths sees it so.
    const params = request.params as Record<string, unknown> | undefined;
    if (params) for (const [k, v] of Object.entries(params)) if (typeof v === 'string' && UUID_ANY_CASE.test(v)) params[k] = v.toLowerCase();
    const bad = badValue(request.body, '') ?? badValue(request.query, '/query');
    if (bad) throw invalid(bad.detail === 'contains U+0000' ? 'Text may not contain the NUL character (U+0000)' : `JSON may not be nested deeper than ${MAX_JSON_DEPTH} levels`, [bad]);
  });
  // A refused WebSocket upgrade (no key, a bad key) must not leave its socket open: close it
  // once the answer is out, or it would hold the server (and its shutdown) indefinitely.
  app.addHook('onResponse', async (request, reply) => {
    if (request.headers.upgrade && reply.statusCode >= 400) request.raw.socket?.destroy();
  });

  await app.register(problemPlugin);
  await app.register(openapiPlugin);
  await app.register(authPlugin, { database: deps.database, rootToken, now: () => deps.clock.now() });
  const limits = sharedRateLimit(deps.database.sql, app.log, () => deps.clock.now().getTime());
  app.addHook('onClose', () => limits.close());
  await app.register(rateLimit, {
    global: true,
    store: limits.Store,
    hook: 'preHandler',
    max: config.rateLimit,
    timeWindow: 60_000,
    keyGenerator: (request) => (request.principal?.kind === 'key' ? `key:${request.principal.keyId}` : `ip:${request.ip}`),
    errorResponseBuilder: (_request, context) =>
      Object.assign(new Error(`Rate limit of ${context.max} requests per minute exceeded; retry in ${Math.ceil(context.ttl / 1000)} s`), { statusCode: 429 }),
  });
  await app.register(idempotencyPlugin, { deps });

  await app.register(opsRoutes, { database: deps.database, boss: deps.boss, queues: jobs.map((j) => j.name), queueReady });
  if (config.role !== 'worker') {
    await app.register(async (scope) => {
      await workspaceRoutes(scope as unknown as App, deps);
      await customerRoutes(scope as unknown as App, deps);
      await eventRoutes(scope as unknown as App, deps);
      await importRoutes(scope as unknown as App, deps);
      await segmentRoutes(scope as unknown as App, deps);
      await actionRoutes(scope as unknown as App, deps);
      await flowRoutes(scope as unknown as App, deps);
      await promotionRoutes(scope as unknown as App, deps);
      await templateRoutes(scope as unknown as App, deps);
      await channelRoutes(scope as unknown as App, deps);
      await messageRoutes(scope as unknown as App, deps);
    });
    await app.register(async (scope) => trackingRoutes(scope as unknown as App, deps));
    await app.register(async (scope) => webhookRoutes(scope as unknown as App, deps));
    await app.register(graphqlPlugin, { deps, introspection: config.graphqlIntrospection });
  }
  return app;
}
