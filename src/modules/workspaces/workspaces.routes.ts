import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { forbidden, notFound } from '../../http/errors.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { ApiKeyParams, CreateApiKeyBody, CreatedApiKey, CreateWorkspaceBody, UpdateWorkspaceBody, Workspace } from './workspaces.schemas.ts';
import { createApiKey, createWorkspace, getWorkspace, revokeApiKey, updateWorkspace } from './workspaces.service.ts';

const tags = ['workspaces'];

export async function workspaceRoutes(app: App, deps: Deps) {
  app.post('/v1/workspaces', {
    config: { access: 'root' },
    schema: {
      operationId: 'createWorkspace', tags, summary: 'Create a workspace (root token)',
      description: 'With NODE_ENV=development the workspace starts with a sandbox channel config (records, sends nothing) as every channel\'s default.',
      body: CreateWorkspaceBody,
      response: { 201: Ref(Workspace), ...problems(400, 401, 403, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createWorkspace(deps, request.body)));

  app.get('/v1/workspaces/:id', {
    config: { access: 'root-or-workspace' },
    schema: {
      operationId: 'getWorkspace', tags, summary: 'Get a workspace and its API keys',
      params: IdParams,
      response: { 200: Ref(Workspace), ...problems(400, 401, 404) },
    },
  }, async (request) => {
    const p = request.principal;
    if (p?.kind === 'key' && p.workspaceId !== request.params.id) throw notFound('Workspace');
    return getWorkspace(deps, request.params.id);
  });

  app.patch('/v1/workspaces/:id', {
    config: { access: 'root-or-workspace' },
    schema: {
      operationId: 'updateWorkspace', tags, summary: 'Rename a workspace, change its time zone or its sending rules (quiet hours, caps, default sender)',
      description: 'The root token, or a key of the workspace with the write scope. Settings are replaced as a whole. Only the root token can turn `allowPrivateNetworkTargets` on (a key gets 403; it may keep it or turn it off).',
      params: IdParams,
      body: UpdateWorkspaceBody,
      response: { 200: Ref(Workspace), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => {
    const p = request.principal;
    if (p?.kind === 'key' && p.workspaceId !== request.params.id) throw notFound('Workspace');
    if (p?.kind === 'key' && !p.scopes.includes('write')) throw forbidden('This API key lacks the "write" scope');
    return updateWorkspace(deps, request.params.id, request.body, p?.kind !== 'key');
  });

  app.post('/v1/workspaces/:id/api-keys', {
    config: { access: 'root' },
    schema: {
      operationId: 'createApiKey', tags, summary: 'Create an API key; the token is in this answer only',
      params: IdParams,
      body: CreateApiKeyBody,
      response: { 201: Ref(CreatedApiKey), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request, reply) => reply.code(201).send(await createApiKey(deps, request.params.id, request.body)));

  app.delete('/v1/workspaces/:id/api-keys/:keyId', {
    config: { access: 'root' },
    schema: {
      operationId: 'revokeApiKey', tags, summary: 'Revoke an API key (takes effect at once, in every process)',
      params: ApiKeyParams,
      response: { 204: Type.Null({ description: 'Revoked' }), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    await revokeApiKey(deps, request.params.id, request.params.keyId);
    app.forgetApiKey(request.params.keyId);
    return reply.code(204).send(null);
  });
}
