import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { CloneTemplateBody, CreateTemplateBody, GetTemplateQuery, ListTemplatesQuery, PreviewTemplateBody, Template, TemplatePreview, UpdateTemplateBody } from './templates.schemas.ts';
import { cloneTemplate, createTemplate, deleteTemplate, getTemplate, listTemplates, previewTemplate, updateTemplate } from './templates.service.ts';

const tags = ['templates'];

export async function templateRoutes(app: App, deps: Deps) {
  app.post('/v1/templates', {
    config: { access: 'write' },
    schema: {
      operationId: 'createTemplate', tags, summary: 'Create a template (version 1)',
      description: 'Liquid is compiled on save: a template that does not compile is a 400 naming the field and line.',
      body: CreateTemplateBody,
      response: { 201: Ref(Template), ...problems(400, 401, 403, 413, 415, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createTemplate(deps, workspaceOf(request), request.body)));

  app.get('/v1/templates', {
    config: { access: 'read' },
    schema: {
      operationId: 'listTemplates', tags, summary: 'List templates (current versions)',
      querystring: ListTemplatesQuery,
      response: { 200: Page(Ref(Template), 'templates'), ...problems(400, 401, 403) },
    },
  }, async (request) => listTemplates(deps, workspaceOf(request), request.query));

  app.get('/v1/templates/:id', {
    config: { access: 'read' },
    schema: {
      operationId: 'getTemplate', tags, summary: 'Get a template, at its current version or ?version=N',
      params: IdParams,
      querystring: GetTemplateQuery,
      response: { 200: Ref(Template), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => getTemplate(deps, workspaceOf(request), request.params.id, request.query.version));

  app.put('/v1/templates/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'updateTemplate', tags, summary: 'Rename a template or save new content (a new version; earlier versions never change)',
      params: IdParams,
      body: UpdateTemplateBody,
      response: { 200: Ref(Template), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => updateTemplate(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/templates/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'deleteTemplate', tags, summary: 'Delete a template (messages that used it keep their version)',
      params: IdParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    await deleteTemplate(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  app.post('/v1/templates/:id/clone', {
    config: { access: 'write' },
    schema: {
      operationId: 'cloneTemplate', tags, summary: 'Copy a template\'s current content into a new template',
      params: IdParams,
      body: CloneTemplateBody,
      response: { 201: Ref(Template), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => reply.code(201).send(await cloneTemplate(deps, workspaceOf(request), request.params.id, request.body.name)));

  app.post('/v1/templates/:id/preview', {
    config: { access: 'read' },
    schema: {
      operationId: 'previewTemplate', tags, summary: 'Render a template for a customer or sample data, and list merge tags with no value',
      params: IdParams,
      body: PreviewTemplateBody,
      response: { 200: Ref(TemplatePreview), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => previewTemplate(deps, workspaceOf(request), request.params.id, request.body));
}
