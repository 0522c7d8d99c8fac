import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { CreateFlowBody, DryRunBody, DryRunReport, Flow, FlowProblem, FlowStats, FlowVersion, ListFlowsQuery, SaveDraftBody, StatsQuery, ValidateFlowBody, VersionParams } from './flows.schemas.ts';
import {
  createFlow, deleteDraft, deleteFlow, duplicateFlow, getDraft, getFlow, getVersion, launchFlow, listFlows, listVersions, pauseFlow, resumeFlow, saveDraft, validateFlow,
} from './flows.service.ts';
import { dryRun, flowStats } from './flows.stats.ts';

const tags = ['flows'];
const Deleted = Type.Null({ description: 'Deleted' });

export async function flowRoutes(app: App, deps: Deps) {
  app.post('/v1/flows', {
    config: { access: 'write' },
    schema: { operationId: 'createFlow', tags, summary: 'Create a flow: its first draft (ready when every node is filled in and connected)', body: CreateFlowBody, response: { 201: Ref(Flow), ...problems(400, 401, 403) } },
  }, async (request, reply) => reply.code(201).send(await createFlow(deps, workspaceOf(request), request.body)));

  app.get('/v1/flows', {
    config: { access: 'read' },
    schema: { operationId: 'listFlows', tags, summary: 'List flows', querystring: ListFlowsQuery, response: { 200: Page(Ref(Flow), 'flows'), ...problems(400, 401, 403) } },
  }, async (request) => listFlows(deps, workspaceOf(request), request.query));

  app.get('/v1/flows/:id', {
    config: { access: 'read' },
    schema: { operationId: 'getFlow', tags, summary: 'Get a flow: status, versions, the draft\'s problems', params: IdParams, response: { 200: Ref(Flow), ...problems(400, 401, 403, 404) } },
  }, async (request) => getFlow(deps, workspaceOf(request), request.params.id));

  app.delete('/v1/flows/:id', {
    config: { access: 'write' },
    schema: { operationId: 'deleteFlow', tags, summary: 'Delete a flow: customers in flight exit (flow_deleted)', params: IdParams, response: { 204: Deleted, ...problems(400, 401, 403, 404) } },
  }, async (request, reply) => {
    await deleteFlow(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  app.get('/v1/flows/:id/draft', {
    config: { access: 'read' },
    schema: { operationId: 'getFlowDraft', tags, summary: 'Get the draft', params: IdParams, response: { 200: Ref(FlowVersion), ...problems(400, 401, 403, 404) } },
  }, async (request) => getDraft(deps, workspaceOf(request), request.params.id));

  app.put('/v1/flows/:id/draft', {
    config: { access: 'write' },
    schema: {
      operationId: 'saveFlowDraft', tags, summary: 'Save the draft (every save is kept as a version; the active version keeps running until the draft is launched)',
      params: IdParams, body: SaveDraftBody, response: { 200: Ref(FlowVersion), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => saveDraft(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/flows/:id/draft', {
    config: { access: 'write' },
    schema: { operationId: 'deleteFlowDraft', tags, summary: 'Discard the draft', params: IdParams, response: { 204: Deleted, ...problems(400, 401, 403, 404) } },
  }, async (request, reply) => {
    await deleteDraft(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  app.post('/v1/flows/:id/validate', {
    config: { access: 'read' },
    schema: {
      operationId: 'validateFlow', tags, summary: 'Check the draft (or a given graph): each problem names its node and field',
      params: IdParams, body: ValidateFlowBody,
      response: { 200: Type.Object({ ready: Type.Boolean(), problems: Type.Array(FlowProblem) }, { additionalProperties: false }), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => validateFlow(deps, workspaceOf(request), request.params.id, request.body?.graph));

  for (const [verb, operationId, summary, fn, codes] of [
    ['launch', 'launchFlow', 'Launch the draft: it becomes the active version; customers in flight move to the node with the same id, or exit (node_removed)', launchFlow, [409, 422]],
    ['pause', 'pauseFlow', 'Pause: nobody moves or enters; waits keep their wake times', pauseFlow, [409]],
    ['resume', 'resumeFlow', 'Resume: what came due while paused runs at once', resumeFlow, [409]],
  ] as const) {
    app.post(`/v1/flows/:id/${verb}`, {
      config: { access: 'write' },
      schema: { operationId, tags, summary, params: IdParams, response: { 200: Ref(Flow), ...problems(400, 401, 403, 404, ...codes) } },
    }, async (request) => fn(deps, workspaceOf(request), request.params.id));
  }

  app.post('/v1/flows/:id/duplicate', {
    config: { access: 'write' },
    schema: {
      operationId: 'duplicateFlow', tags, summary: 'Duplicate: a new flow whose draft copies this one\'s draft (or active version)',
      params: IdParams, body: Type.Object({ name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }, { additionalProperties: false }),
      response: { 201: Ref(Flow), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => reply.code(201).send(await duplicateFlow(deps, workspaceOf(request), request.params.id, request.body?.name)));

  app.post('/v1/flows/:id/dry-run', {
    config: { access: 'read' },
    schema: {
      operationId: 'dryRunFlow', tags, summary: 'Run the draft (or active version) over the real customers and events of a past period: waits collapsed, nothing sent or changed',
      params: IdParams, body: DryRunBody, response: { 200: Ref(DryRunReport), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => dryRun(deps, workspaceOf(request), request.params.id, request.body));

  app.get('/v1/flows/:id/versions', {
    config: { access: 'read' },
    schema: {
      operationId: 'listFlowVersions', tags, summary: 'Every version: when it was drafted, launched and stopped',
      params: IdParams, response: { 200: Type.Object({ data: Type.Array(Ref(FlowVersion)) }, { additionalProperties: false }), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => listVersions(deps, workspaceOf(request), request.params.id));

  app.get('/v1/flows/:id/versions/:version', {
    config: { access: 'read' },
    schema: { operationId: 'getFlowVersion', tags, summary: 'A version exactly as it ran', params: VersionParams, response: { 200: Ref(FlowVersion), ...problems(400, 401, 403, 404) } },
  }, async (request) => getVersion(deps, workspaceOf(request), request.params.id, request.params.version));

  app.get('/v1/flows/:id/stats', {
    config: { access: 'read' },
    schema: {
      operationId: 'getFlowStats', tags, summary: 'Live per-node counts: entered, waiting, passed per branch, exited with reason (A/B conversions with ?conversionEvent=)',
      params: IdParams, querystring: StatsQuery, response: { 200: Ref(FlowStats), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => flowStats(deps, workspaceOf(request), request.params.id, request.query));
}
