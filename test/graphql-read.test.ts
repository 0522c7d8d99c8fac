import t from 'tap';
import WebSocket from 'ws';
import { drainFlows } from '../src/engine/engine.ts';
import { executePendingRuns } from '../src/modules/actions/actions.runs.ts';
import { drainDueMessages } from '../src/modules/messages/send.worker.ts';
import { caller, ROOT_TOKEN, startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

// API role: the test runs the action run, the sends and the flow engine itself.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;

const gql = (token: string | null, query: string, variables?: object) => caller(app, token)('POST', '/graphql', { query, ...(variables ? { variables } : {}) });

/**
 * Counts the SQL statements the app runs while `fn` runs (postgres.js reads its debug option per
 * query), but for the shared rate limit's, which run on their own clock (src/http/rate-limit.ts).
 */
async function statements<T>(fn: () => Promise<T>): Promise<{ result: T; count: number }> {
  let count = 0;
  const options = sql.options as unknown as { debug: unknown };
  const before = options.debug;
  options.debug = (_connection: unknown, query: string) => {
    if (!query.includes('rate_limit_hits')) count++;
  };
  try {
    return { result: await fn(), count };
  } finally {
    options.debug = before;
  }
}

/** A customer with every kind of timeline entry, written through the REST API and the engine. */
async function busyCustomer(call: Call) {
  clock.set('2026-06-01T10:00:00Z');
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'a@acme.example' } })).json();
  const template = (await call('POST', '/v1/templates', { name: 'Hi', channel: 'email', content: { subject: 'Hi {{ customer.email }}', html: '<p>Hello</p>' } })).json();
  const id = (await call('POST', '/v1/customers', { externalId: 'busy', email: 'busy@x.example', custom: { plan: 'gold' } })).json().id;
  await call('POST', '/v1/events', { externalId: 'busy', type: 'visit', occurredAt: '2026-06-01T09:00:00Z' });
  const action = (await call('POST', '/v1/actions', { name: 'Hello', kind: 'single_send', channel: 'email', channelConfigId: config.id, templateId: template.id, audience: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' }, launch: true })).json();
  await executePendingRuns(deps);
  clock.advance(60_000);
  await drainDueMessages(deps);
  const flow = (await call('POST', '/v1/flows', { name: 'F', graph: { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'signup' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] } })).json();
  await call('POST', `/v1/flows/${flow.id}/launch`);
  clock.advance(60_000);
  await call('POST', '/v1/events', { externalId: 'busy', type: 'signup', occurredAt: clock.now().toISOString() });
  clock.advance(60_000);
  await drainFlows(deps);
  return { id, action, flow, template };
}

t.test('a customer\'s timeline: one merged, newest-first connection with stable cursors and typed entries', async (t) => {
  const { call, token } = await workspaceWithKey(app);
  const { id, action, flow } = await busyCustomer(call);
  const query = `query($id: ID, $after: String, $kinds: [TimelineKind!]) { customer(id: $id) {
    timeline(first: 3, after: $after, kinds: $kinds) { edges { cursor node { kind at
      event { type } message { channel status source content } action { kind sourceId } decision { flowId nodeId branch reason } } }
      pageInfo { hasNextPage endCursor } } } }`;
  const page1 = (await gql(token, query, { id })).json();
  t.notOk(page1.errors, JSON.stringify(page1.errors));
  const edges = page1.data.customer.timeline.edges;
  t.same(edges.map((e: { node: { kind: string } }) => e.node.kind), ['flow', 'flow', 'event'], 'newest first: the flow\'s decisions, then the signup event');
  t.match(edges[0].node.decision, { flowId: flow.id, nodeId: 'end', reason: { exit: 'completed' } });
  t.equal(page1.data.customer.timeline.pageInfo.hasNextPage, true);
  const page2 = (await gql(token, query, { id, after: page1.data.customer.timeline.pageInfo.endCursor })).json().data.customer.timeline;
  t.same(page2.edges.map((e: { node: { kind: string } }) => e.node.kind), ['action', 'message', 'event']);
  t.match(page2.edges[1].node.message, { channel: 'email', status: 'sent', source: { type: 'action', id: action.id }, content: { subject: 'Hi busy@x.example' } }, 'the personalised content on request');
  t.match(page2.edges[0].node.action, { kind: 'sent', sourceId: action.id });
  t.equal(page2.pageInfo.hasNextPage, false);
  const onlyEvents = (await gql(token, query, { id, kinds: ['event'] })).json().data.customer.timeline.edges;
  t.same(onlyEvents.map((e: { node: { event: { type: string } } }) => e.node.event.type), ['signup', 'visit']);
  const rest = (await call('GET', `/v1/customers/${id}/timeline?limit=6`)).json().data;
  t.same(rest.map((e: { kind: string }) => e.kind), ['flow', 'flow', 'event', 'action', 'message', 'event'], 'REST shows the same timeline');
  const bad = (await gql(token, query, { id, after: 'not-a-cursor' })).json();
  t.equal(bad.errors[0].extensions.code, 'BAD_USER_INPUT', 'a bad cursor');
});

t.test('no N+1: a page of 50 customers with their timelines, consents, segments and points is a small constant of statements', async (t) => {
  const { call, token } = await workspaceWithKey(app);
  clock.set('2026-06-01T10:00:00Z');
  await call('POST', '/v1/segments', { name: 'Gold', filter: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } });
  const events = Array.from({ length: 50 }, (_, i) => [{ externalId: `n${i}`, type: 'a' }, { externalId: `n${i}`, type: 'b' }]).flat();
  await call('POST', '/v1/events', { events });
  await sql`update customers set custom = '{"plan":"gold"}' where external_id in ('n1', 'n2')`;
  const query = (first: number) => `{ customers(first: ${first}) { edges { node { id externalId consents { channel } pushSubscriptions { endpoint } promoCodes { code }
    points { balance } segments { name } events(first: 2) { type } timeline(first: 5) { edges { node { kind event { type } } } } } } pageInfo { hasNextPage } } }`;
  const small = await statements(() => gql(token, query(5)));
  const big = await statements(() => gql(token, query(50)));
  const data = big.result.json().data.customers.edges;
  t.equal(data.length, 50);
  t.equal(data[0].node.timeline.edges.length, 2);
  t.same(data.filter((e: { node: { segments: unknown[] } }) => e.node.segments.length).map((e: { node: { externalId: string } }) => e.node.externalId).sort(), ['n1', 'n2'], 'memberships computed on demand');
  t.ok(big.count <= 15, `50 customers: ${big.count} statements`);
  t.equal(big.count, small.count, 'the same number for 5 and 50 customers');
});

t.test('read models: flows with versions and stats, actions with their report, templates, segments with a count, action templates with customers', async (t) => {
  const { call, token } = await workspaceWithKey(app);
  const { action, flow, template } = await busyCustomer(call);
  const res = (await gql(token, `{ flows { edges { node { id name status versions { version status } stats } } }
    actions { edges { node { id kind status report } } }
    templates(channel: "email") { edges { node { id name mergeTags } } }
    segments { edges { node { name count } } }
    actionTemplates(sourceType: "action", sourceId: "${action.id}") { kind count customers(first: 5) { edges { node { externalId } } } }
    template(id: "${template.id}") { name version } }`)).json();
  t.notOk(res.errors, JSON.stringify(res.errors));
  t.match(res.data.flows.edges[0].node, { id: flow.id, status: 'active', versions: [{ version: 1, status: 'active' }], stats: { entries: { done: 1 } } });
  t.match(res.data.actions.edges[0].node, { id: action.id, kind: 'single_send', status: 'completed', report: { funnel: { messages: 1, byStatus: { sent: 1 } } } });
  t.match(res.data.templates.edges[0].node, { id: template.id, mergeTags: ['customer.email'] });
  t.match(res.data.actionTemplates.find((a: { kind: string }) => a.kind === 'sent'), { count: 1, customers: { edges: [{ node: { externalId: 'busy' } }] } });
  await call('POST', '/v1/segments', { name: 'Gold', filter: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } });
  t.same((await gql(token, '{ segments { edges { node { name count } } } }')).json().data.segments.edges, [{ node: { name: 'Gold', count: 1 } }]);
});

t.test('hostile queries are refused before any resolver runs; isolation; bad input', async (t) => {
  const { call, token } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'h1' })).json().id;
  const refused = async (what: string, query: string, pattern: RegExp) => {
    const { result, count } = await statements(() => gql(token, query));
    t.equal(result.statusCode, 400, `${what}: 400`);
    t.equal(count, 0, `${what}: no resolver ran (no SQL)`);
    t.match(result.json().errors[0].message, pattern, what);
    t.equal(result.json().errors[0].extensions.code, 'GRAPHQL_VALIDATION_FAILED');
  };
  await refused('deep', '{ customers { edges { node { timeline { edges { node { customer { timeline { edges { node { kind } } } } } } } } } } }', /depth|deep/i);
  await refused('wide', '{ customers(first: 100) { edges { node { timeline(first: 100) { edges { node { kind at data id } } } } } } }', /costs/);
  await refused('aliased', `{ ${Array.from({ length: 31 }, (_, i) => `a${i}: customer(externalId: "h1") { id }`).join(' ')} }`, /aliases/);
  await refused('fragment cycle', '{ customer(externalId: "h1") { ...A } } fragment A on Customer { ...B } fragment B on Customer { ...A }', /cycle|itself/i);
  await refused('first over the cap', '{ customers(first: 1000) { edges { node { id } } } }', /first must be between/);
  for (const [what, variables, pattern] of [['first over the cap, from a variable', { a: 1000, b: 1 }, /first must be between/], ['wide, from variables', { a: 100, b: 100 }, /costs/]] as const) {
    const { result, count } = await statements(() => gql(token, 'query($a: Int, $b: Int) { customers(first: $a) { edges { node { timeline(first: $b) { edges { node { kind at data id } } } } } } }', variables));
    t.equal(result.statusCode, 400, `${what}: 400`);
    t.equal(count, 0, `${what}: no resolver ran`);
    t.match(result.json().errors[0].message, pattern, what);
  }
  // A variable's default counts (it used to be taken as 20), and so do the fields that run a
  // query of their own: a segment's count under each customer of a page, each of up to 200 segments.
  const { result: defaulted, count: defaultedSql } = await statements(() => gql(token, 'query($a: Int = 100, $b: Int = 100) { customers(first: $a) { edges { node { timeline(first: $b) { edges { node { kind at data id } } } } } } }'));
  t.equal(defaulted.statusCode, 400, 'wide through variables\' defaults: 400');
  t.equal(defaultedSql, 0);
  t.match(defaulted.json().errors[0].message, /costs/);
  await refused('a count under each of a page of customers', '{ customers(first: 100) { edges { node { segments { name count } } } } }', /costs/);
  await refused('stats under each of a page of flows', '{ flows(first: 100) { edges { node { stats versions { version } } } } }', /costs/);
  const cheap = await gql(token, `{ actionTemplates(sourceType: "action", sourceId: "${id}") { kind count customers(first: 5) { edges { node { customerId } } } } }`);
  t.equal(cheap.statusCode, 200, `an action template's count is a column, not a query: ${cheap.body}`);
  const since = await gql(token, '{ customer(externalId: "h1") { timeline(since: "garbage") { edges { node { kind } } } } }');
  t.equal(since.statusCode, 400, `a malformed DateTime is the caller's error: ${since.body}`);
  t.match(since.json().errors[0].message, /RFC 3339/);
  const sinceVariable = await gql(token, 'query($s: DateTime) { customer(externalId: "h1") { timeline(since: $s) { edges { node { kind } } } } }', { s: '2026-13-45' });
  t.equal(sinceVariable.statusCode, 400, 'from a variable too');
  t.equal((await gql(token, 'query($s: DateTime) { customer(externalId: "h1") { timeline(since: $s) { edges { node { kind } } } } }', { s: '2026-02-30T09:00:00Z' })).statusCode, 400, 'a day the month does not have is refused, not rolled over');
  t.equal((await gql(token, 'query($s: DateTime) { customer(externalId: "h1") { timeline(since: $s) { edges { node { kind } } } } }', { s: '2026-06-01T09:00:00.123456+02:00' })).statusCode, 200, 'a good one passes');
  const batched = await caller(app, token)('POST', '/graphql', [{ query: '{ customer(externalId: "h1") { id } }' }, { query: '{ customer(externalId: "h1") { id } }' }]);
  t.equal(batched.statusCode, 400, 'batched queries are off');

  const stranger = await workspaceWithKey(app);
  const other = (await gql(stranger.token, `{ customer(id: "${id}") { id } }`)).json();
  t.equal(other.data.customer, null);
  t.equal(other.errors[0].extensions.code, 'NOT_FOUND', 'another workspace\'s customer is NOT_FOUND');
  const ghost = (await gql(token, '{ customers(filter: {type: "field", field: "password", op: "eq", value: "x"}) { edges { node { id } } } }')).json();
  t.equal(ghost.errors[0].extensions.code, 'BAD_USER_INPUT', 'a bad filter');
  const broken = (await gql(token, '{ flow(id: "00000000-0000-4000-8000-000000000000") { id } }')).json();
  t.equal(broken.errors[0].extensions.code, 'NOT_FOUND');
  t.notMatch(JSON.stringify(broken), /select|stack|\.ts:/i, 'no SQL or stack in errors');
});

t.test('introspection and GraphiQL are off in production unless enabled', async (t) => {
  const prod = await startHerald(t, { HERALD_ROLE: 'api', NODE_ENV: 'production' });
  const { token } = await workspaceWithKey(prod.app);
  const introspect = await caller(prod.app, token)('POST', '/graphql', { query: '{ __schema { types { name } } }' });
  t.equal(introspect.statusCode, 400);
  t.match(introspect.json().errors[0].message, /introspection/i);
  t.equal((await prod.app.inject({ method: 'GET', url: '/graphiql' })).statusCode, 404);
  const open = await startHerald(t, { HERALD_ROLE: 'api', NODE_ENV: 'production', HERALD_GRAPHQL_INTROSPECTION: 'true' });
  const k = await workspaceWithKey(open.app);
  t.equal((await caller(open.app, k.token)('POST', '/graphql', { query: '{ __schema { queryType { name } } }' })).json().data.__schema.queryType.name, 'Query');
});

t.test('timelineUpdated over WebSocket: new entries as they are written; the same keys and limits', async (t) => {
  const live = await startHerald(t, { HERALD_ROLE: 'api' });
  await live.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (live.app.server.address() as { port: number }).port;
  const { call, token } = await workspaceWithKey(live.app);
  const id = (await call('POST', '/v1/customers', { externalId: 'ws1' })).json().id;
  const stranger = await workspaceWithKey(live.app);

  const connect = (key: string | null) => new Promise<{ ws: WebSocket; messages: Record<string, unknown>[]; next: () => Promise<Record<string, unknown>> }>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers: key ? { authorization: `Bearer ${key}` } : {} });
    const messages: Record<string, unknown>[] = [];
    const waiting: ((m: Record<string, unknown>) => void)[] = [];
    ws.on('message', (data: unknown) => {
      const m = JSON.parse(String(data));
      if (m.type === 'connection_ack' || m.type === 'ping') return;
      const w = waiting.shift();
      if (w) w(m);
      else messages.push(m);
    });
    ws.on('unexpected-response', (req: { destroy(): void }, res: { statusCode: number }) => {
      req.destroy(); // ws leaves a refused upgrade's connection open otherwise
      reject(Object.assign(new Error('refused'), { status: res.statusCode }));
    });
    ws.on('error', reject);
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'connection_init' }));
      resolve({ ws, messages, next: () => new Promise((ok) => (messages.length ? ok(messages.shift()!) : waiting.push(ok))) });
    });
  });

  await t.rejects(connect(null), { status: 401 } as never, 'no key: the upgrade is refused');
  const client = await connect(token);
  client.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { kind event { type properties } } }` } }));
  await new Promise((r) => setTimeout(r, 300));
  await call('POST', '/v1/events', { externalId: 'ws1', type: 'page.viewed', properties: { path: '/pricing' } });
  const pushed = await client.next();
  t.match(pushed, { id: '1', type: 'next', payload: { data: { timelineUpdated: { kind: 'event', event: { type: 'page.viewed', properties: { path: '/pricing' } } } } } });

  // Flow decisions, stored a tick's worth per row, arrive one by one with the ids the timeline gives them.
  const flow = (await call('POST', '/v1/flows', { name: 'Live', graph: { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'signup' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] } })).json();
  t.equal((await call('POST', `/v1/flows/${flow.id}/launch`)).statusCode, 200);
  client.ws.send(JSON.stringify({ id: '7', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { id kind decision { nodeId branch reason } } }` } }));
  await new Promise((r) => setTimeout(r, 300));
  await call('POST', '/v1/events', { externalId: 'ws1', type: 'signup' });
  await drainFlows(live.runtime.deps);
  const heard: { id: string; kind: string; decision: { nodeId: string } | null }[] = [];
  while (heard.filter((e) => e.kind === 'flow').length < 2) {
    const m = (await client.next()) as { id: string; payload: { data: { timelineUpdated: (typeof heard)[number] } } };
    if (m.id === '7') heard.push(m.payload.data.timelineUpdated);
  }
  const decisions = heard.filter((e) => e.kind === 'flow');
  t.same(decisions.map((e) => e.decision!.nodeId).sort(), ['end', 'start'], 'both decisions of the tick are pushed');
  const listed = (await call('GET', `/v1/customers/${id}/timeline?kinds=flow`)).json().data.map((e: { id: string }) => e.id);
  t.same(decisions.map((e) => e.id).sort(), [...listed].sort(), 'with the ids the timeline lists');

  const spy = await connect(stranger.token);
  spy.ws.send(JSON.stringify({ id: '2', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { kind } }` } }));
  const denied = await spy.next();
  t.match(JSON.stringify(denied), /not found/i, 'another workspace\'s customer is not found over WebSocket too');
  spy.ws.send(JSON.stringify({ id: '3', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { message { source content } decision { reason } event { properties } action { touchpoint kind } ...A } } fragment A on TimelineEntry { ...B } fragment B on TimelineEntry { ...A }` } }));
  const limited = await spy.next();
  t.equal(limited.type, 'error', 'a fragment cycle is refused on the WebSocket path');
  spy.ws.send(JSON.stringify({ id: '4', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { customer { timeline { edges { node { customer { timeline { edges { node { kind } } } } } } } } } }` } }));
  t.equal((await spy.next()).type, 'error', 'too deep is refused on the WebSocket path');
  const aliases = Array.from({ length: 31 }, (_, i) => `a${i}: kind`).join(' ');
  spy.ws.send(JSON.stringify({ id: '5', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { ${aliases} } }` } }));
  const aliased = await spy.next();
  t.match(aliased, { type: 'error' }, 'too many aliases are refused on the WebSocket path');
  t.match(JSON.stringify(aliased), /aliases/);
  spy.ws.send(JSON.stringify({ id: '6', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { customer { timeline(first: 100) { edges { node { customer { events(first: 100) { id type properties occurredAt receivedAt clientId } } } } } } } }` } }));
  const wide = await spy.next();
  t.match(wide, { type: 'error' }, 'a wide query is refused on the WebSocket path');
  t.match(JSON.stringify(wide), /costs/);
  spy.ws.send(JSON.stringify({ id: '8', type: 'subscribe', payload: { query: `subscription($n: Int) { timelineUpdated(customerId: "${id}") { customer { timeline(first: $n) { edges { node { customer { events(first: $n) { id type properties occurredAt receivedAt clientId } } } } } } } }`, variables: { n: 100 } } }));
  const wideVariables = await spy.next();
  t.match(wideVariables, { type: 'error' }, 'and so is one whose first comes from variables (taken at their largest)');
  t.match(JSON.stringify(wideVariables), /costs/);
  // Clients leave before the server closes (a server waits for open sockets).
  await Promise.all([client, spy].map((c) => new Promise((ok) => {
    c.ws.once('close', ok);
    c.ws.close();
  })));
});

t.test('a subscription ends when its key is revoked: the socket is closed (4401), no further entry reaches it', async (t) => {
  const live = await startHerald(t, { HERALD_ROLE: 'api' });
  await live.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (live.app.server.address() as { port: number }).port;
  const { call, workspaceId } = await workspaceWithKey(live.app);
  const reader = await caller(live.app, ROOT_TOKEN)('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'support tool', scopes: ['read'] });
  const id = (await call('POST', '/v1/customers', { externalId: 'revoked-sub' })).json().id;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/graphql`, 'graphql-transport-ws', { headers: { authorization: `Bearer ${reader.json().token}` } });
  const received: Record<string, unknown>[] = [];
  const closed = new Promise<number>((resolve) => ws.on('close', (code: number) => resolve(code)));
  ws.on('message', (data: unknown) => {
    const m = JSON.parse(String(data));
    if (m.type === 'next') received.push(m);
  });
  await new Promise((ok) => ws.on('open', ok));
  ws.send(JSON.stringify({ type: 'connection_init' }));
  ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: `subscription { timelineUpdated(customerId: "${id}") { kind } }` } }));
  await new Promise((r) => setTimeout(r, 300));
  await call('POST', '/v1/events', { externalId: 'revoked-sub', type: 'before' });
  for (let i = 0; i < 50 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(received.length, 1, 'entries arrive while the key is valid');

  t.equal((await caller(live.app, ROOT_TOKEN)('DELETE', `/v1/workspaces/${workspaceId}/api-keys/${reader.json().id}`)).statusCode, 204);
  t.equal(await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]), 4401, 'the revocation closes its sockets');
  ws.terminate();
  await call('POST', '/v1/events', { externalId: 'revoked-sub', type: 'after' });
  await new Promise((r) => setTimeout(r, 300));
  t.equal(received.length, 1, 'nothing more reached it');
});
