import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { AudiencePreview, ListSegmentsQuery, PreviewFilterBody, PreviewSavedBody, SaveSegmentBody, Segment } from './segments.schemas.ts';
import { createSegment, deleteSegment, getSegment, listSegments, previewFilter, previewSegment, updateSegment } from './segments.service.ts';

const tags = ['segments'];

export async function segmentRoutes(app: App, deps: Deps) {
  app.post('/v1/segments', {
    config: { access: 'write' },
    schema: {
      operationId: 'createSegment', tags, summary: 'Save a segment (a filter tree over customers)',
      body: SaveSegmentBody,
      response: { 201: Ref(Segment), ...problems(400, 401, 403, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createSegment(deps, workspaceOf(request), request.body)));

  app.get('/v1/segments', {
    config: { access: 'read' },
    schema: { operationId: 'listSegments', tags, summary: 'List segments', querystring: ListSegmentsQuery, response: { 200: Page(Ref(Segment), 'segments'), ...problems(400, 401, 403) } },
  }, async (request) => listSegments(deps, workspaceOf(request), request.query));

  app.get('/v1/segments/:id', {
    config: { access: 'read' },
    schema: { operationId: 'getSegment', tags, summary: 'Get a segment', params: IdParams, response: { 200: Ref(Segment), ...problems(400, 401, 403, 404) } },
  }, async (request) => getSegment(deps, workspaceOf(request), request.params.id));

  app.put('/v1/segments/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'updateSegment', tags, summary: 'Replace a segment\'s name, description and filter (actions that use it see the change at their next run)',
      params: IdParams, body: SaveSegmentBody,
      response: { 200: Ref(Segment), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request) => updateSegment(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/segments/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'deleteSegment', tags, summary: 'Delete a segment (409 while an active or paused action, or another segment, uses it)',
      params: IdParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 401, 403, 404, 409) },
    },
  }, async (request, reply) => {
    await deleteSegment(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  app.post('/v1/segments/:id/preview', {
    config: { access: 'read' },
    schema: {
      operationId: 'previewSegment', tags, summary: 'Execute a saved segment: the count and the first page of matching customers',
      params: IdParams, body: PreviewSavedBody,
      response: { 200: Ref(AudiencePreview), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request) => previewSegment(deps, workspaceOf(request), request.params.id, request.body));

  app.post('/v1/segments/preview', {
    config: { access: 'read' },
    schema: {
      operationId: 'previewSegmentDefinition', tags, summary: 'Execute an unsaved filter: the count and the first page of matching customers',
      body: PreviewFilterBody,
      response: { 200: Ref(AudiencePreview), ...problems(400, 401, 403, 422) },
    },
  }, async (request) => previewFilter(deps, workspaceOf(request), request.body));
}
