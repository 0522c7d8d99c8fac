import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { ChannelConfig, CreateChannelConfigBody, ListChannelConfigsQuery, UpdateChannelConfigBody } from './channels.schemas.ts';
import { createChannelConfig, deleteChannelConfig, getChannelConfig, listChannelConfigs, updateChannelConfig } from './channels.service.ts';

const tags = ['channel configs'];

export async function channelRoutes(app: App, deps: Deps) {
  app.post('/v1/channel-configs', {
    config: { access: 'write' },
    schema: {
      operationId: 'createChannelConfig', tags, summary: 'Add a provider account for a channel (secrets are encrypted and never returned)',
      body: CreateChannelConfigBody,
      response: { 201: Ref(ChannelConfig), ...problems(400, 401, 403, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createChannelConfig(deps, workspaceOf(request), request.body as never)));

  app.get('/v1/channel-configs', {
    config: { access: 'read' },
    schema: {
      operationId: 'listChannelConfigs', tags, summary: 'List channel configs',
      querystring: ListChannelConfigsQuery,
      response: { 200: Page(Ref(ChannelConfig), 'channel configs'), ...problems(400, 401, 403) },
    },
  }, async (request) => listChannelConfigs(deps, workspaceOf(request), request.query));

  app.get('/v1/channel-configs/:id', {
    config: { access: 'read' },
    schema: {
      operationId: 'getChannelConfig', tags, summary: 'Get a channel config (secret names only)',
      params: IdParams,
      response: { 200: Ref(ChannelConfig), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => getChannelConfig(deps, workspaceOf(request), request.params.id));

  app.put('/v1/channel-configs/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'updateChannelConfig', tags, summary: 'Change a config: settings are replaced, the secrets given replace theirs, others are kept',
      params: IdParams,
      body: UpdateChannelConfigBody,
      response: { 200: Ref(ChannelConfig), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => updateChannelConfig(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/channel-configs/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'deleteChannelConfig', tags, summary: 'Delete a channel config',
      params: IdParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    await deleteChannelConfig(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });
}
