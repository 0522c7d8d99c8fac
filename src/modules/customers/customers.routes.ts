import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Page, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import {
  Consent, ConsentParams, CreateCustomerBody, CreatePushSubscriptionBody, Customer, CustomerDetail, ListCustomersQuery, PatchCustomerBody, PushSubscription, PutConsentBody,
} from './customers.schemas.ts';
import { addPushSubscription, deleteCustomer, getCustomer, listCustomers, patchCustomer, setConsent, upsertCustomer } from './customers.service.ts';

const tags = ['customers'];

export async function customerRoutes(app: App, deps: Deps) {
  app.post('/v1/customers', {
    config: { access: 'write' },
    schema: {
      operationId: 'createCustomer', tags, summary: 'Create a customer, or update the one with the same externalId',
      body: CreateCustomerBody,
      response: { 200: Ref(Customer), 201: Ref(Customer), ...problems(400, 401, 403, 409, 413, 415, 422) },
    },
  }, async (request, reply) => {
    const { customer, created } = await upsertCustomer(deps, workspaceOf(request), request.body);
    return reply.code(created ? 201 : 200).send(customer);
  });

  app.get('/v1/customers', {
    config: { access: 'read' },
    schema: {
      operationId: 'listCustomers', tags, summary: 'List customers (cursor-paginated, oldest first)',
      querystring: ListCustomersQuery,
      response: { 200: Page(Ref(Customer), 'customers'), ...problems(400, 401, 403) },
    },
  }, async (request) => listCustomers(deps, workspaceOf(request), request.query));

  app.get('/v1/customers/:id', {
    config: { access: 'read' },
    schema: {
      operationId: 'getCustomer', tags, summary: 'Get a customer with consents and push subscriptions',
      params: IdParams,
      response: { 200: Ref(CustomerDetail), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => getCustomer(deps, workspaceOf(request), request.params.id));

  app.patch('/v1/customers/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'updateCustomer', tags, summary: 'Update a customer; custom fields are merged (null removes one)',
      params: IdParams,
      body: PatchCustomerBody,
      response: { 200: Ref(Customer), ...problems(400, 401, 403, 404, 409) },
    },
  }, async (request) => patchCustomer(deps, workspaceOf(request), request.params.id, request.body));

  app.delete('/v1/customers/:id', {
    config: { access: 'write' },
    schema: {
      operationId: 'deleteCustomer', tags, summary: 'Delete a customer with their events, consents and subscriptions',
      params: IdParams,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problems(400, 401, 403, 404) },
    },
  }, async (request, reply) => {
    await deleteCustomer(deps, workspaceOf(request), request.params.id);
    return reply.code(204).send(null);
  });

  app.put('/v1/customers/:id/consents/:channel', {
    config: { access: 'write' },
    schema: {
      operationId: 'setConsent', tags, summary: 'Set the consent of a customer on one channel (the change is kept in its history)',
      params: ConsentParams,
      body: PutConsentBody,
      response: { 200: Ref(Consent), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => setConsent(deps, workspaceOf(request), request.params.id, request.params.channel, request.body));

  app.post('/v1/customers/:id/push-subscriptions', {
    config: { access: 'write' },
    schema: {
      operationId: 'createPushSubscription', tags, summary: 'Register a web-push or mobile-push subscription',
      params: IdParams,
      body: CreatePushSubscriptionBody,
      response: { 200: Ref(PushSubscription), 201: Ref(PushSubscription), ...problems(400, 401, 403, 404, 422) },
    },
  }, async (request, reply) => {
    const { subscription, created } = await addPushSubscription(deps, workspaceOf(request), request.params.id, request.body);
    return reply.code(created ? 201 : 200).send(subscription);
  });
}
