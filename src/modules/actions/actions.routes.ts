import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { AudiencePreview, PreviewSavedBody } from '../segments/segments.schemas.ts';
import { ActionReport, ReportQuery, TrackingPage, TrackingQuery } from './actions.report.schemas.ts';
import { actionReport, trackingCsv, trackingPage } from './actions.report.ts';
import { Action, CloneActionBody, CreateActionBody, ListActionsQuery, UpdateActionBody } from './actions.schemas.ts';
import { cloneAction, createAction, deleteAction, getAction, launchAction, listActions, pauseAction, previewAction, updateAction } from './actions.service.ts';

const tags = ['actions'];

export async function actionRoutes(app: App, deps: Deps) {
  app.post('/v1/actions', {
    config: { access: 'write' },
    schema: {
      operationId: 'createAction', tags, summary: 'Save an action (triggered, recurring or single send), and launch it with launch: true',
      body: CreateActionBody,
      response: { 201: Ref(Action), ...problems(400, 401, 403, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createAction(deps, workspaceOf(request), request.body)));

  app.get('/v1/actions', {
    config: { access: 'read' },
    schema: { operationId: 'listActions', tags, summary: 'List actions (deleted ones are not listed)', querystring: ListActionsQuery, response: { 200: Page(Ref(Action), 'actions'), ...problems(400, 401, 403) } },
  }, async (request) => listActions(deps, workspaceOf(request), request.query));

  app.get('/v1/actions/:id', {
    config: { access: 'read' },
    schema: { operationId: 'getAction', tags, summary: 'Get an action (deleted ones too, with deletedAt)', params: IdParams, response: { 200: Ref(Action), ...problems(400, 401, 403, 404) } },
  }, async (request) => getAction(deps, workspaceOf(request), request.params.id));

  app.put('/v1/actions/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'updateAction', tags, summary: 'Edit an action: an active one runs with the new settings from its next run',
      params: IdParams, body: UpdateActionBody,
      response: { 200: Ref(Action), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request) => updateAction(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/actions/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'deleteAction', tags, summary: 'Delete an action: it stops and leaves the lists; its messages and reports stay readable',
      params: IdParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    await deleteAction(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  for (const [verb, operationId, summary, fn, codes] of [
    ['launch', 'launchAction', 'Launch (or resume, or re-launch) an action: it becomes active and its first run starts when due', launchAction, [422]],
    ['pause', 'pauseAction', 'Pause an active action: no run starts until it is launched again', pauseAction, [409]],
  ] as const) {
    app.post(`/v1/actions/:id/${verb}`, {
      config: { access: 'write' },
      schema: { operationId, tags, summary, params: IdParams, response: { 200: Ref(Action), ...problems(400, 401, 403, 404, ...codes) } },
    }, async (request) => fn(deps, workspaceOf(request), request.params.id));
  }

  app.post('/v1/actions/:id/clone', {
    config: { access: 'write' },
    schema: {
      operationId: 'cloneAction', tags, summary: 'Clone an action: same settings and audience, a new name, inactive',
      params: IdParams, body: CloneActionBody,
      response: { 201: Ref(Action), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => reply.code(201).send(await cloneAction(deps, workspaceOf(request), request.params.id, request.body ?? {})));

  app.post('/v1/actions/:id/preview', {
    config: { access: 'read' },
    schema: {
      operationId: 'previewAction', tags, summary: 'Execute an action\'s audience: who would get it now',
      params: IdParams, body: PreviewSavedBody,
      response: { 200: Ref(AudiencePreview), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request) => previewAction(deps, workspaceOf(request), request.params.id, request.body ?? {}));

  app.get('/v1/actions/:id/report', {
    config: { access: 'read' },
    schema: {
      operationId: 'getActionReport', tags, summary: 'The delivery funnel, a conversion chart and the runs of an action',
      params: IdParams, querystring: ReportQuery,
      response: { 200: Ref(ActionReport), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => actionReport(deps, workspaceOf(request), request.params.id, request.query));

  app.get('/v1/actions/:id/tracking', {
    config: { access: 'read' },
    schema: {
      operationId: 'getActionTracking', tags,
      summary: 'One row per message with the columns asked for: JSON pages, or the whole table streamed as CSV with Accept: text/csv',
      params: IdParams, querystring: TrackingQuery,
      response: {
        200: {
          description: 'A page of rows (JSON) or every row (CSV)',
          content: { 'application/json': { schema: Ref(TrackingPage) }, 'text/csv': { schema: Type.String({ description: 'A header line, then one line per message' }) } },
        },
        ...problems(400, 401, 403, 404),
      },
    },
  }, async (request, reply) => {
    const workspaceId = workspaceOf(request);
    if (/\btext\/csv\b/.test(request.headers.accept ?? '')) {
      const stream = await trackingCsv(deps, workspaceId, request.params.id, request.query);
      return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="action-${request.params.id}-tracking.csv"`).send(stream as never);
    }
    return trackingPage(deps, workspaceId, request.params.id, request.query);
  });
}
