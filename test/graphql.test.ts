import t from 'tap';
import { caller, startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;

const gql = (token: string | null, query: string, variables?: object) =>
  caller(app, token)('POST', '/graphql', { query, ...(variables ? { variables } : {}) });

t.test('customer by id or externalId, with its recent events newest first', async (t) => {
  const { call, token } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'g1', email: 'g1@x.io', custom: { tier: 'gold' } })).json().id;
  await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'subscribed' });
  await call('POST', '/v1/events', {
    events: [
      { externalId: 'g1', type: 'first', occurredAt: '2026-01-01T00:00:00Z' },
      { externalId: 'g1', type: 'second', occurredAt: '2026-01-02T00:00:00Z', properties: { n: 2 } },
      { externalId: 'g1', type: 'third', occurredAt: '2026-01-03T00:00:00Z' },
    ],
  });
  const query = 'query($id: ID, $ext: String) { customer(id: $id, externalId: $ext) { id externalId email custom consents { channel status } events(first: 2) { type properties occurredAt } } }';
  const byId = await gql(token, query, { id });
  t.equal(byId.statusCode, 200);
  t.same(byId.json().data.customer, {
    id, externalId: 'g1', email: 'g1@x.io', custom: { tier: 'gold' },
    consents: [{ channel: 'email', status: 'subscribed' }],
    events: [{ type: 'third', properties: {}, occurredAt: '2026-01-03T00:00:00.000Z' }, { type: 'second', properties: { n: 2 }, occurredAt: '2026-01-02T00:00:00.000Z' }],
  });
  const byExternal = await gql(token, query, { ext: 'g1' });
  t.equal(byExternal.json().data.customer.id, id);
});

t.test('the same keys as REST: none is a 401, another workspace is NOT_FOUND', async (t) => {
  const owner = await workspaceWithKey(app);
  const stranger = await workspaceWithKey(app);
  const id = (await owner.call('POST', '/v1/customers', { externalId: 'secret' })).json().id;
  const anonymous = await gql(null, '{ customer(externalId: "secret") { id } }');
  t.equal(anonymous.statusCode, 401);
  const res = await gql(stranger.token, 'query($id: ID) { customer(id: $id) { id email } }', { id });
  t.equal(res.json().data.customer, null);
  t.match(res.json().errors, [{ extensions: { code: 'NOT_FOUND' }, path: ['customer'] }]);
  const byExt = await gql(stranger.token, '{ customer(externalId: "secret") { id } }');
  t.match(byExt.json().errors, [{ extensions: { code: 'NOT_FOUND' } }]);
});

t.test('bad input is BAD_USER_INPUT; queries past the depth limit are refused', async (t) => {
  const { token } = await workspaceWithKey(app);
  t.match((await gql(token, '{ customer { id } }')).json().errors, [{ extensions: { code: 'BAD_USER_INPUT' } }], 'neither id nor externalId');
  t.match((await gql(token, '{ customer(id: "nope") { id } }')).json().errors, [{ extensions: { code: 'BAD_USER_INPUT' } }], 'not a uuid');
  t.match((await gql(token, '{ customer(externalId: "x") { events(first: 1000) { id } } }')).json().errors, [{}], 'first is capped');
  const fragmentDeep = `{ customer(externalId: "x") { ${'events { id } '.repeat(1)} } }`;
  t.equal((await gql(token, fragmentDeep)).statusCode, 200);
  // The schema is shallow today; an introspection query nests deep enough to hit the limit.
  const deep = '{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }';
  const res = await gql(token, deep);
  t.equal(res.statusCode, 400);
  t.match(JSON.stringify(res.json().errors), /depth/i);
  const unknownField = await gql(token, '{ customer(externalId: "x") { password } }');
  t.equal(unknownField.statusCode, 400);
  t.notMatch(unknownField.body, /at .*\.(js|ts):\d+/, 'no stack');
});

t.test('GraphiQL is served outside production', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/graphiql' })).statusCode, 200);
});
