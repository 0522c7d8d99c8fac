import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, PageQuery, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { ActionTemplate, ActionTemplateCustomer, ListActionTemplatesQuery, Message, TestSendBody, TestSendResult, TimelineEntry, TimelineQuery } from './messages.schemas.ts';
import { actionTemplateCustomers, customerTimeline, getMessage, listActionTemplates, testSend } from './messages.service.ts';

export async function messageRoutes(app: App, deps: Deps) {
  app.get('/v1/messages/:id', {
    config: { access: 'read' },
    schema: {
      operationId: 'getMessage', tags: ['messages'], summary: 'A message with its personalised content as sent and what happened to it',
      params: IdParams,
      response: { 200: Ref(Message), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => getMessage(deps, workspaceOf(request), request.params.id));

  app.get('/v1/action-templates', {
    config: { access: 'read' },
    schema: {
      operationId: 'listActionTemplates', tags: ['messages'], summary: 'The action templates of a message source, with how many customers got each',
      querystring: ListActionTemplatesQuery,
      response: { 200: Type.Object({ data: Type.Array(Ref(ActionTemplate)) }, { additionalProperties: false }), ...problems(400, 401, 403) },
    },
  }, async (request) => ({ data: await listActionTemplates(deps, workspaceOf(request), request.query.sourceType, request.query.sourceId) }));

  app.get('/v1/action-templates/:id/customers', {
    config: { access: 'read' },
    schema: {
      operationId: 'listActionTemplateCustomers', tags: ['messages'], summary: '"Same actions": every customer assigned this action template, newest first',
      params: IdParams,
      querystring: Type.Object(PageQuery, { additionalProperties: false }),
      response: { 200: Page(ActionTemplateCustomer, 'customers of an action template'), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => actionTemplateCustomers(deps, workspaceOf(request), request.params.id, request.query));

  app.get('/v1/customers/:id/timeline', {
    config: { access: 'read' },
    schema: {
      operationId: 'getCustomerTimeline', tags: ['customers'], summary: 'Events, messages (with not-sent reasons) and action templates of a customer, newest first',
      params: IdParams,
      querystring: TimelineQuery,
      response: { 200: Page(Ref(TimelineEntry), 'timeline entries'), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => customerTimeline(deps, workspaceOf(request), request.params.id, request.query));

  app.post('/v1/templates/:id/test-send', {
    config: { access: 'write' },
    schema: {
      operationId: 'testSendTemplate', tags: ['templates'], summary: 'Render a template and send it to one address through a channel config, now',
      params: IdParams,
      body: TestSendBody,
      response: { 200: Ref(TestSendResult), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => testSend(deps, workspaceOf(request), request.params.id, request.body));
}
