// Tenant isolation, enumerated from the contract: every operation of openapi/openapi.json with a
// path parameter, and every GraphQL root field that takes an id, is called by workspace B with
// workspace A's real ids. B must get the same answer as for an id that exists nowhere (a 404 for
// workspace data), and A's resources must be unchanged afterwards. A new route or field that is
// not in the tables below fails this file, so that nobody forgets its cross-tenant check.
import { randomUUID } from 'node:crypto';
import t from 'tap';
import WebSocket from 'ws';
import { buildSchema, getNamedType, isObjectType, type GraphQLField } from 'graphql';
import { executePendingRuns } from '../src/modules/actions/actions.runs.ts';
import { drainDueMessages } from '../src/modules/messages/send.worker.ts';
import { caller, ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';
import { fillPath, graphqlSdl, operations, pathParams, seedWorkspace, type Operation, type Seeded } from './helpers/openapi.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api', HERALD_RATE_LIMIT: '1000000' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;

clock.set('2026-06-01T10:00:00Z');
const drive = async () => {
  await executePendingRuns(deps);
  clock.advance(60_000);
  await drainDueMessages(deps);
};
const messageOf = async (workspaceId: string) => (await sql<{ id: string }[]>`select id from messages where workspace_id = ${workspaceId} order by created_at limit 1`)[0]?.id;

const wsA = await workspaceWithKey(app);
const A = await seedWorkspace(wsA, drive, messageOf, 'a');
const wsB = await workspaceWithKey(app);
const B = await seedWorkspace(wsB, drive, messageOf, 'b');
const root = caller(app, ROOT_TOKEN);
const anonymous = caller(app, null);

/**
 * How each guarded operation is called, by operationId:
 * - tenant: workspace data; B's key with A's ids must get 404, like an id that does not exist.
 * - root: the root token only; B's key is refused (403) whatever the id, so the id reveals nothing.
 * - named: the parameter is a name in the caller's own namespace (a promo pool); B sees its own.
 * - public: no workspace key applies (a signed token or a provider signature is the capability);
 *   anonymous callers with A's ids must get the same answer as with made-up ones.
 * `params` gives the path values from a seeded workspace; `body` a body that would succeed for
 * the owner, so that validation cannot answer before the workspace check does.
 */
type Kind = 'tenant' | 'root' | 'named' | 'public';
interface Case {
  kind: Kind;
  params: (w: Seeded) => Record<string, string>;
  body?: (w: Seeded, caller: Seeded) => unknown;
  query?: (w: Seeded) => string;
  headers?: Record<string, string>;
}
const id = (w: Seeded) => ({ id: w.customer });
const graph = { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'signup' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] };
const CASES: Record<string, Case> = {
  getWorkspace: { kind: 'tenant', params: (w) => ({ id: w.workspaceId }) },
  updateWorkspace: { kind: 'tenant', params: (w) => ({ id: w.workspaceId }), body: () => ({ name: 'stolen' }) },
  createApiKey: { kind: 'root', params: (w) => ({ id: w.workspaceId }), body: () => ({ name: 'stolen', scopes: ['read', 'write'] }) },
  revokeApiKey: { kind: 'root', params: (w) => ({ id: w.workspaceId, keyId: w.keyId }) },
  getCustomer: { kind: 'tenant', params: id },
  updateCustomer: { kind: 'tenant', params: id, body: () => ({ custom: { stolen: true } }) },
  deleteCustomer: { kind: 'tenant', params: id },
  setConsent: { kind: 'tenant', params: (w) => ({ id: w.customer, channel: 'email' }), body: () => ({ status: 'unsubscribed' }) },
  createPushSubscription: { kind: 'tenant', params: id, body: () => ({ kind: 'mobile_push', token: 'stolen-token', platform: 'ios' }) },
  getCustomerTimeline: { kind: 'tenant', params: id },
  getImport: { kind: 'tenant', params: (w) => ({ id: w.importId }) },
  getSegment: { kind: 'tenant', params: (w) => ({ id: w.segment }) },
  updateSegment: { kind: 'tenant', params: (w) => ({ id: w.segment }), body: () => ({ name: 'stolen', filter: { type: 'field', field: 'email', op: 'exists' } }) },
  deleteSegment: { kind: 'tenant', params: (w) => ({ id: w.segment }) },
  previewSegment: { kind: 'tenant', params: (w) => ({ id: w.segment }), body: () => ({ limit: 10 }) },
  getAction: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  // B's own config and template, so that only the action's id is foreign.
  updateAction: { kind: 'tenant', params: (w) => ({ id: w.action }), body: (_w, b) => ({ name: 'stolen', channel: 'email', channelConfigId: b.channelConfig, templateId: b.template, audience: { type: 'field', field: 'email', op: 'exists' } }) },
  deleteAction: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  launchAction: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  pauseAction: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  cloneAction: { kind: 'tenant', params: (w) => ({ id: w.action }), body: () => ({ name: 'stolen' }) },
  previewAction: { kind: 'tenant', params: (w) => ({ id: w.action }), body: () => ({ limit: 10 }) },
  getActionReport: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  getActionTracking: { kind: 'tenant', params: (w) => ({ id: w.action }) },
  getFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  deleteFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  getFlowDraft: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  saveFlowDraft: { kind: 'tenant', params: (w) => ({ id: w.flow }), body: () => ({ name: 'stolen', graph }) },
  deleteFlowDraft: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  validateFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }), body: () => ({}) },
  launchFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  pauseFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  resumeFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  duplicateFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }), body: () => ({ name: 'stolen' }) },
  dryRunFlow: { kind: 'tenant', params: (w) => ({ id: w.flow }), body: () => ({ since: '2026-05-01T00:00:00Z' }) },
  listFlowVersions: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  getFlowVersion: { kind: 'tenant', params: (w) => ({ id: w.flow, version: '1' }) },
  getFlowStats: { kind: 'tenant', params: (w) => ({ id: w.flow }) },
  getPromoPool: { kind: 'named', params: (w) => ({ pool: w.pool }) },
  getTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }) },
  updateTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }), body: () => ({ name: 'stolen' }) },
  deleteTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }) },
  cloneTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }), body: () => ({ name: 'stolen' }) },
  previewTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }), body: () => ({}) },
  testSendTemplate: { kind: 'tenant', params: (w) => ({ id: w.template }), body: (_w, b) => ({ channelConfigId: b.channelConfig, to: 'spy@x.example' }) },
  getChannelConfig: { kind: 'tenant', params: (w) => ({ id: w.channelConfig }) },
  updateChannelConfig: { kind: 'tenant', params: (w) => ({ id: w.channelConfig }), body: () => ({ name: 'stolen' }) },
  deleteChannelConfig: { kind: 'tenant', params: (w) => ({ id: w.channelConfig }) },
  getMessage: { kind: 'tenant', params: (w) => ({ id: w.message }) },
  listActionTemplateCustomers: { kind: 'tenant', params: (w) => ({ id: w.actionTemplate }) },
  // Tracking links carry a signed token (the capability), not a workspace resource id.
  trackOpen: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  trackClick: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  unsubscribePage: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  unsubscribe: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  trackPush: { kind: 'public', params: () => ({ token: 'forged.token' }), body: () => ({ event: 'opened' }) },
  viewMessage: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  forwardMessage: { kind: 'public', params: () => ({ token: 'forged.token' }) },
  // Provider webhooks: the provider's signature is the capability; an unsigned call with A's config id learns nothing.
  sendgridEventWebhook: { kind: 'public', params: (w) => ({ channelConfigId: w.channelConfig }), body: () => [] },
  smsStatusWebhook: { kind: 'public', params: (w) => ({ channelConfigId: w.channelConfig }), body: () => 'MessageSid=SM1&MessageStatus=delivered', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
};

/** Values that name nothing anywhere, with the same shape as the seeded ones. */
const ghost: Seeded = {
  workspaceId: randomUUID(), keyId: randomUUID(), token: 'none', customer: randomUUID(), externalId: 'ghost', importId: randomUUID(), segment: randomUUID(), template: randomUUID(),
  channelConfig: randomUUID(), action: randomUUID(), flow: randomUUID(), message: randomUUID(), actionTemplate: randomUUID(), pool: 'pool-ghost',
};

const guarded = operations().filter((op) => pathParams(op).length > 0);

t.test('the table covers every operation with a path parameter in the document', async (t) => {
  t.ok(guarded.length >= 55, `${guarded.length} operations with a path parameter`);
  for (const op of guarded) {
    const c = CASES[op.operationId];
    if (!c) {
      t.fail(`${op.method} ${op.path} (${op.operationId}) has a path parameter but no cross-tenant case: add it to CASES in test/isolation.test.ts`);
      continue;
    }
    const values = c.params(A);
    t.same(Object.keys(values).sort(), pathParams(op).map((p) => p.name).sort(), `${op.operationId}: the case gives every path parameter`);
    if (op.requestBody?.required) t.ok(c.body, `${op.operationId}: the case gives a body (the operation requires one)`);
  }
  for (const operationId of Object.keys(CASES)) t.ok(guarded.some((op) => op.operationId === operationId), `${operationId} is still in the document`);
});

/** A's resources as A sees them: what must not change, whatever B tried. */
async function snapshot(w: Seeded) {
  const call = caller(app, w.token);
  const urls = [
    `/v1/workspaces/${w.workspaceId}`, `/v1/customers/${w.customer}`, `/v1/customers/${w.customer}/timeline`, `/v1/imports/${w.importId}`,
    `/v1/segments/${w.segment}`, `/v1/actions/${w.action}`, `/v1/flows/${w.flow}`, `/v1/flows/${w.flow}/versions`, `/v1/flows/${w.flow}/draft`,
    `/v1/templates/${w.template}`, `/v1/channel-configs/${w.channelConfig}`, `/v1/messages/${w.message}`, `/v1/promo-codes/${w.pool}`,
    `/v1/action-templates/${w.actionTemplate}/customers`, '/v1/customers', '/v1/segments', '/v1/actions', '/v1/flows', '/v1/templates', '/v1/channel-configs',
  ];
  const out: Record<string, unknown> = {};
  for (const url of urls) {
    const res = await call('GET', url);
    const { instance: _, ...body } = res.json() as Record<string, unknown>; // the request id differs per call
    out[url] = { status: res.statusCode, body };
  }
  const [counts] = await sql`select
    (select count(*)::int from customers where workspace_id = ${w.workspaceId}) as customers,
    (select count(*)::int from push_subscriptions where workspace_id = ${w.workspaceId}) as push,
    (select count(*)::int from messages where workspace_id = ${w.workspaceId}) as messages,
    (select count(*)::int from api_keys where workspace_id = ${w.workspaceId} and revoked_at is null) as keys`;
  out.counts = counts;
  return out;
}

async function callAs(token: string | null, op: Operation, c: Case, target: Seeded) {
  const url = fillPath(op.path, c.params(target)) + (c.query ? `?${c.query(target)}` : '');
  const body = c.body?.(target, B);
  return caller(app, token)(op.method, url, body, c.headers);
}

const problemCode = (res: { headers: Record<string, unknown>; body: string }) => (/json/.test(String(res.headers['content-type'])) ? (JSON.parse(res.body) as { code?: string }).code : undefined);

t.test("B's key with A's ids: the same answer as for ids that exist nowhere (404 for workspace data), and A unchanged", async (t) => {
  const before = await snapshot(A);
  let covered = 0;
  for (const op of guarded) {
    const c = CASES[op.operationId];
    if (!c) continue;
    covered++;
    const token = c.kind === 'public' ? null : B.token;
    const withA = await callAs(token, op, c, A);
    const withGhost = await callAs(token, op, c, ghost);
    const where = `${op.method} ${fillPath(op.path, c.params(A))} (${op.operationId}, ${c.kind})`;
    t.ok(withA.statusCode < 500, `${where}: no 5xx (${withA.statusCode} ${withA.body.slice(0, 200)})`);
    t.equal(withA.statusCode, withGhost.statusCode, `${where}: A's id answers like a made-up one (${withA.statusCode} vs ${withGhost.statusCode})`);
    t.equal(problemCode(withA), problemCode(withGhost), `${where}: the same problem code`);
    if (c.kind === 'tenant') {
      t.equal(withA.statusCode, 404, `${where}: 404 (got ${withA.statusCode} ${withA.body.slice(0, 300)})`);
      t.equal(problemCode(withA), 'not_found', `${where}: code not_found`);
    } else if (c.kind === 'root') {
      t.equal(withA.statusCode, 403, `${where}: a workspace key is refused`);
    } else if (c.kind === 'named') {
      t.equal(withA.statusCode, 200, `${where}: B reads its own namespace`);
      t.match(withA.json(), { total: 0, issued: 0, free: 0 }, `${where}: nothing of A's shows`);
    } else {
      t.ok(withA.statusCode >= 400, `${where}: refused without the capability (${withA.statusCode})`);
    }
    t.notMatch(withA.body, new RegExp(`${A.externalId}|${A.workspaceId}`), `${where}: nothing of A's in the answer`);
  }
  t.equal(covered, guarded.length, `${covered} operations called`);
  const after = await snapshot(A);
  t.same(after, before, "A's resources, lists and counts are unchanged");
  t.equal((await caller(app, A.token)('GET', `/v1/customers/${A.customer}`)).statusCode, 200, "A's key still works");
});

t.test('ids in queries and bodies of operations without path parameters do not reach another workspace', async (t) => {
  const call = caller(app, B.token);
  const list = await call('GET', `/v1/action-templates?sourceType=action&sourceId=${A.action}`);
  t.equal(list.statusCode, 200);
  t.same(list.json().data, [], "A's action templates are not listed to B");
  t.same((await call('GET', `/v1/customers?externalId=${A.externalId}`)).json().data, [], "A's externalId finds nothing in B");
  t.same((await call('GET', `/v1/customers?email=a%40x.example`)).json().data, [], "A's email finds nothing in B");
  const action = await call('POST', '/v1/actions', { name: 'x', kind: 'single_send', channel: 'email', channelConfigId: A.channelConfig, templateId: A.template, audience: { type: 'field', field: 'email', op: 'exists' } });
  t.ok(action.statusCode >= 400 && action.statusCode < 500, `an action on A's config and template is refused (${action.statusCode})`);
  const inSegment = await call('POST', '/v1/segments/preview', { filter: { type: 'segment', segmentId: A.segment } });
  t.ok(inSegment.statusCode === 422 || inSegment.statusCode === 400 || (inSegment.statusCode === 200 && inSegment.json().count === 0), `a filter on A's segment matches nothing of A's (${inSegment.statusCode} ${inSegment.body.slice(0, 200)})`);
  const event = await call('POST', '/v1/events', { customerId: A.customer, type: 'stolen' });
  t.ok(event.statusCode < 500, `an event for A's customer id: ${event.statusCode}`);
  const testSend = await call('POST', `/v1/templates/${B.template}/test-send`, { channelConfigId: A.channelConfig, to: 'spy@x.example' });
  t.ok(testSend.statusCode >= 400 && testSend.statusCode < 500, `a test send through A's config is refused (${testSend.statusCode})`);
  const preview = await call('POST', `/v1/templates/${B.template}/preview`, { customerId: A.customer });
  t.ok(preview.statusCode >= 400 && preview.statusCode < 500, `a preview for A's customer is refused (${preview.statusCode})`);
  t.notMatch(preview.body, /a@x\.example/, "A's customer's email does not show");
  const [events] = await sql`select count(*)::int as n from events where workspace_id = ${A.workspaceId} and type = 'stolen'`;
  t.equal(events!.n, 0, "no event was written to A's customer");
  t.equal((await root('GET', `/v1/workspaces/${A.workspaceId}`)).statusCode, 200, 'the root token still reads A');
});

// GraphQL: every root field (and subscription) with an id-like argument.
const gqlSchema = buildSchema(graphqlSdl);
const isIdArg = (name: string, type: string) => type === 'ID' || /id$/i.test(name);
const idFields = (fields: Record<string, GraphQLField<unknown, unknown>>) =>
  Object.values(fields).filter((f) => f.args.some((a) => isIdArg(a.name, getNamedType(a.type).name))).map((f) => f.name);

type GqlCase = { query: (w: Seeded) => string; empty: (data: Record<string, unknown>) => boolean };
const isNull = (field: string) => (data: Record<string, unknown>) => data?.[field] === null;
const GQL: Record<string, GqlCase[]> = {
  customer: [
    { query: (w) => `{ customer(id: "${w.customer}") { id email externalId custom timeline { edges { node { kind } } } } }`, empty: isNull('customer') },
    { query: (w) => `{ customer(externalId: "${w.externalId}") { id email } }`, empty: isNull('customer') },
  ],
  actionTemplates: [{ query: (w) => `{ actionTemplates(sourceType: "action", sourceId: "${w.action}") { id count customers { edges { node { customerId email } } } } }`, empty: (d) => Array.isArray(d?.actionTemplates) && d.actionTemplates.length === 0 }],
  flow: [{ query: (w) => `{ flow(id: "${w.flow}") { id name versions { version graph } stats } }`, empty: isNull('flow') }],
  action: [{ query: (w) => `{ action(id: "${w.action}") { id name report } }`, empty: isNull('action') }],
  segment: [{ query: (w) => `{ segment(id: "${w.segment}") { id name count filter } }`, empty: isNull('segment') }],
  template: [{ query: (w) => `{ template(id: "${w.template}") { id name content } }`, empty: isNull('template') }],
};
const SUBSCRIPTIONS = ['timelineUpdated'];

t.test('GraphQL: every id-taking field is covered, and nested fields take no ids', async (t) => {
  const query = gqlSchema.getQueryType()!;
  const found = idFields(query.getFields());
  t.ok(found.length >= 6, `${found.length} Query fields take an id: ${found.join(', ')}`);
  for (const f of found) t.ok(GQL[f], `Query.${f} takes an id: add it to GQL in test/isolation.test.ts`);
  for (const f of Object.keys(GQL)) t.ok(found.includes(f), `Query.${f} still takes an id`);
  const subs = idFields(gqlSchema.getSubscriptionType()?.getFields() ?? {});
  t.same(subs.sort(), [...SUBSCRIPTIONS].sort(), 'Subscription fields with an id are covered');
  for (const type of Object.values(gqlSchema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__') || type === query || type === gqlSchema.getSubscriptionType()) continue;
    t.same(idFields(type.getFields()), [], `${type.name}: no nested field takes an id (add it to GQL if one does)`);
  }
});

t.test("GraphQL: B asking for A's ids gets null/NOT_FOUND or nothing, like for ids that exist nowhere", async (t) => {
  const gql = async (token: string, query: string) => {
    const res = await caller(app, token)('POST', '/graphql', { query });
    return { status: res.statusCode, json: res.json() as { data: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] }, body: res.body };
  };
  const before = await snapshot(A);
  for (const [field, cases] of Object.entries(GQL)) {
    for (const c of cases) {
      const own = await gql(A.token, c.query(A));
      t.notOk(own.json.errors, `${field}: A reads its own (${JSON.stringify(own.json.errors)})`);
      t.notOk(c.empty(own.json.data), `${field}: A's answer is not empty`);
      const spy = await gql(B.token, c.query(A));
      const none = await gql(B.token, c.query(ghost));
      t.ok(spy.status < 500, `${field}: no 5xx`);
      t.ok(c.empty(spy.json.data), `${field}: B gets nothing for A's id (${spy.body.slice(0, 300)})`);
      t.same((spy.json.errors ?? []).map((e) => e.extensions?.code), (none.json.errors ?? []).map((e) => e.extensions?.code), `${field}: the same errors as for an id that exists nowhere`);
      for (const e of spy.json.errors ?? []) t.equal(e.extensions?.code, 'NOT_FOUND', `${field}: error code NOT_FOUND`);
      t.notMatch(spy.body, new RegExp(`${A.externalId}|a@x\\.example`), `${field}: nothing of A's in the answer`);
    }
  }
  t.same(await snapshot(A), before, 'A unchanged');
});

t.test("GraphQL subscription: B cannot follow A's customer's timeline", async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as { port: number }).port;
  const subscribe = (token: string, customerId: string) => new Promise<Record<string, unknown>[]>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers: { authorization: `Bearer ${token}` } });
    const received: Record<string, unknown>[] = [];
    ws.on('error', reject);
    ws.on('message', (data: unknown) => {
      const m = JSON.parse(String(data));
      if (m.type === 'ping') return;
      if (m.type !== 'connection_ack') {
        received.push(m);
        return;
      }
      ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${customerId}") { kind event { type properties } } }` } }));
      // Something happens to A's customer while B listens; then B gets a moment to hear of it.
      setTimeout(async () => {
        await caller(app, A.token)('POST', '/v1/events', { externalId: A.externalId, type: 'secret.visit', properties: { secret: 42 } });
        setTimeout(() => {
          ws.close();
          resolve(received);
        }, 1000);
      }, 300);
    });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init' })));
  });
  const own = await subscribe(A.token, A.customer);
  t.ok(own.some((m) => m.type === 'next'), 'A hears of its own customer (the check below can fail)');
  const spy = await subscribe(B.token, A.customer);
  t.notOk(spy.some((m) => m.type === 'next'), `B receives nothing of A's customer (${JSON.stringify(spy).slice(0, 300)})`);
  t.notMatch(JSON.stringify(spy), /secret/, "no event of A's");
  t.match(JSON.stringify(spy), /not found/i, 'not found, as for any unknown customer');
});
