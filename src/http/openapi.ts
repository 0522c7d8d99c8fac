// The OpenAPI 3.1 document, generated from the routes' TypeBox schemas. Entity schemas with an
// $id become named components; `npm run openapi` writes the document to openapi/openapi.json.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { TSchema } from 'typebox';
import { Problem, problems } from './problem.ts';
import { ApiKey, CreatedApiKey, Workspace } from '../modules/workspaces/workspaces.schemas.ts';
import { Consent, Customer, CustomerDetail, PushSubscription } from '../modules/customers/customers.schemas.ts';
import { Event, IngestResult } from '../modules/events/events.schemas.ts';
import { Import } from '../modules/imports/imports.schemas.ts';
import { Template, TemplatePreview } from '../modules/templates/templates.schemas.ts';
import { ChannelConfig } from '../modules/channels/channels.schemas.ts';
import { ActionTemplate, Message, TestSendResult, TimelineEntry } from '../modules/messages/messages.schemas.ts';
import { WebhookReceipt } from '../modules/webhooks/webhooks.routes.ts';
import { AudienceDuration, AudienceFilter } from '../audience/filter.ts';
import { AudiencePreview, Segment } from '../modules/segments/segments.schemas.ts';
import { Action, ActionRun } from '../modules/actions/actions.schemas.ts';
import { ActionReport, TrackingPage } from '../modules/actions/actions.report.schemas.ts';
import { FlowGraph } from '../modules/flows/flows.graph.ts';
import { PoolCounts } from '../modules/promotions/promotions.routes.ts';
import { DryRunReport, Flow, FlowStats, FlowVersion } from '../modules/flows/flows.schemas.ts';

/** Every schema that routes refer to by name. */
export const componentSchemas: TSchema[] = [Problem, ApiKey, CreatedApiKey, Workspace, Customer, CustomerDetail, Consent, PushSubscription, IngestResult, Event, Import, Template, TemplatePreview, ChannelConfig, Message, ActionTemplate, TimelineEntry, TestSendResult, WebhookReceipt, AudienceDuration, AudienceFilter, Segment, AudiencePreview, Action, ActionRun, ActionReport, TrackingPage, FlowGraph, Flow, FlowVersion, FlowStats, DryRunReport, PoolCounts];

export const API_VERSION = '0.1.0';

const TAGS = [
  { name: 'workspaces', description: 'Tenants and their API keys (root token)' },
  { name: 'customers', description: 'Customer profiles, consents, push subscriptions and bulk imports' },
  { name: 'events', description: 'What customers did' },
  { name: 'segments', description: 'Saved audiences: filter trees over customer fields, consents, events and action templates, executed on demand' },
  { name: 'actions', description: 'Triggered, recurring and single-send actions: audience, template, channel config, schedule; runs, reports and tracking' },
  { name: 'flows', description: 'Journeys: a graph of triggers, conditions, steps, splitters, waits, A/B tests and limitations; drafts, versions, launch, stats, dry run' },
  { name: 'templates', description: 'Message templates per channel, with Liquid merge tags and immutable versions' },
  { name: 'channel configs', description: 'Provider accounts per channel; secrets are encrypted at rest and never returned' },
  { name: 'messages', description: 'Messages as sent, their action templates, and the customers who got them' },
  { name: 'tracking', description: 'Open pixel, click redirects, unsubscribe, push beacons (signed tokens, no API key)' },
  { name: 'provider webhooks', description: 'Delivery events posted by providers (verified by their signatures, no API key)' },
  { name: 'operations', description: 'Health, readiness, metrics' },
];

/**
 * @fastify/swagger marks every body `required` (Fastify wants one when a body schema is set); a
 * route whose config says `optionalBody` fills in a missing one itself (a preValidation hook),
 * and its document says so.
 */
function markOptionalBodies(doc: Record<string, unknown>, operations: Set<string>): Record<string, unknown> {
  for (const item of Object.values((doc.paths ?? {}) as Record<string, Record<string, { operationId?: string; requestBody?: { required?: boolean } }>>)) {
    for (const op of Object.values(item)) if (op.operationId && operations.has(op.operationId) && op.requestBody) op.requestBody.required = false;
  }
  return doc;
}

/** Per app: the operations whose route config says `optionalBody`. */
const optionalBodies = new WeakMap<FastifyInstance, Set<string>>();

/** The OpenAPI document of `app` as served and committed. */
export function openapiDocument(app: FastifyInstance): Record<string, unknown> {
  return markOptionalBodies(app.swagger() as unknown as Record<string, unknown>, optionalBodies.get(app) ?? new Set());
}

export const openapiPlugin = fp(
  async (app: FastifyInstance) => {
    for (const schema of componentSchemas) app.addSchema(schema);
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Herald API',
          version: API_VERSION,
          description: 'Headless customer engagement: customers, events, segments, templates, actions and flows. Errors are RFC 9457 problem+json.',
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A workspace API key, or the root token for workspace administration' } } },
        security: [{ bearer: [] }],
        tags: TAGS,
      },
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
      transform: ({ schema, url, route }) => {
        const access = (route.config as { access?: string } | undefined)?.access;
        const out = { ...(schema as object) } as Record<string, unknown>;
        if (!access || access === 'public') out.security = [];
        if (!schema || url.startsWith('/docs') || url === '/openapi.json' || url.startsWith('/graphql') || url.startsWith('/graphiql')) out.hide = true;
        // What any route can answer whatever its handler does: 400 for bad input (a malformed
        // URL too), 413/415 for a body, 409/422 for an Idempotency-Key on a POST.
        if (out.response) {
          const method = ([] as string[]).concat(route.method)[0];
          const extra = [
            ...(out.body || out.querystring || out.params ? [400] : []),
            ...(out.body ? [413, 415] : []),
            ...(method === 'POST' && url.startsWith('/v1') ? [409, 422] : []),
          ];
          out.response = { ...problems(...extra), ...(out.response as object) };
        }
        return { schema: out as never, url };
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    const optional = new Set<string>();
    optionalBodies.set(app, optional);
    app.addHook('onRoute', (route) => {
      const id = (route.schema as { operationId?: string } | undefined)?.operationId;
      if (id && (route.config as { optionalBody?: boolean } | undefined)?.optionalBody) optional.add(id);
    });
    app.get('/openapi.json', { schema: { hide: true }, config: { access: 'public', rateLimit: false } }, async () => openapiDocument(app));
  },
  { name: 'herald-openapi' },
);
