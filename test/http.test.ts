// Cross-cutting HTTP behaviour: problem+json for every failure, limits, request ids, rate limits.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { SYNC_MS } from '../src/http/rate-limit.ts';
import { startRuntime } from '../src/runtime/runtime.ts';
import { caller, eventually, ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;

t.test('unknown routes and methods are problem+json 404s', async (t) => {
  const res = await caller(app, null)('GET', '/v2/nothing?x=1');
  t.equal(res.statusCode, 404);
  t.equal(res.headers['content-type'], 'application/problem+json');
  t.match(res.json(), { type: 'https://herald.dev/problems/not_found', title: 'Not Found', status: 404, detail: 'No route GET /v2/nothing', instance: res.headers['x-request-id'] });
});

t.test('a body over the limit is a 413', async (t) => {
  const { call } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/customers', { externalId: 'x', custom: { blob: 'a'.repeat(1_100_000) } });
  t.equal(res.statusCode, 413);
  t.equal(res.headers['content-type'], 'application/problem+json');
  t.equal(res.json().code, 'payload_too_large');
  const events = await call('POST', '/v1/events', { externalId: 'x', type: 'a', properties: { blob: 'a'.repeat(6 * 1024 * 1024) } });
  t.equal(events.statusCode, 413, 'event batches have their own, larger limit');
});

t.test('compressed bodies: gzip, deflate and br are read; a gzip bomb is cut at the body limit; other encodings are a 415', async (t) => {
  const { token, call } = await workspaceWithKey(app);
  const post = (url: string, body: Buffer, encoding: string, length = true) =>
    app.inject({ method: 'POST', url, payload: body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-encoding': encoding, ...(length ? {} : { 'content-length': undefined as unknown as string }) } });
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  for (const [encoding, pack] of [['gzip', gzipSync], ['deflate', deflateSync], ['br', brotliCompressSync]] as const) {
    const res = await post('/v1/customers', pack(json({ externalId: `zip-${encoding}`, email: `${encoding}@example.com` })), encoding);
    t.equal(res.statusCode, 201, `${encoding}: ${res.body}`);
  }
  t.equal((await call('GET', '/v1/customers?externalId=zip-br')).json().data[0]?.email, 'br@example.com', 'the decompressed body was stored');
  // 200 MB of JSON whitespace packs into ~200 KB: refused once 1 MiB has come out of it.
  const bomb = gzipSync(Buffer.concat([Buffer.from('{"externalId":"bomb","custom":{"x":"'), Buffer.alloc(200 * 1024 * 1024, 0x20), Buffer.from('"}}')]), { level: 9 });
  t.ok(bomb.length < 1024 * 1024, `the bomb is small on the wire (${bomb.length} bytes)`);
  const rssBefore = process.memoryUsage().rss;
  const boom = await post('/v1/customers', bomb, 'gzip');
  t.equal(boom.statusCode, 413, boom.body);
  t.equal(boom.json().code, 'payload_too_large');
  t.ok(process.memoryUsage().rss - rssBefore < 100 * 1024 * 1024, 'it was not inflated whole');
  const events = await post('/v1/events', gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x20)), 'gzip');
  t.equal(events.statusCode, 413, 'the events route applies its own (larger) limit to the decompressed bytes');
  const broken = await post('/v1/customers', Buffer.from('this is not gzip at all'), 'gzip');
  t.equal(broken.statusCode, 400, broken.body);
  t.equal(broken.json().code, 'bad_encoding');
  const unknown = await post('/v1/customers', json({ externalId: 'z' }), 'compress');
  t.equal(unknown.statusCode, 415);
  t.equal(unknown.headers['content-type'], 'application/problem+json');
  t.equal((await call('GET', '/v1/customers?externalId=bomb')).json().data.length, 0, 'nothing of the refused bodies was stored');
});

t.test('a wrong content type is a 415', async (t) => {
  const { call } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/customers', 'externalId=x', { 'content-type': 'application/x-www-form-urlencoded' });
  t.equal(res.statusCode, 415);
  t.equal(res.headers['content-type'], 'application/problem+json');
  t.equal((await call('POST', '/v1/customers', 'hello', { 'content-type': 'text/plain' })).statusCode, 415);
});

t.test('request ids: given ones are echoed, others are generated', async (t) => {
  const given = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
  t.equal(given.headers['x-request-id'], 'abc-123');
  const made = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'bad id with spaces' } });
  t.match(made.headers['x-request-id'], /^[0-9a-f-]{36}$/);
});

t.test('Idempotency-Key: same key and body replays, another body is a 422', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const body = { externalId: 'idem', email: 'idem@x.io' };
  const first = await call('POST', '/v1/customers', body, { 'idempotency-key': 'k-1' });
  t.equal(first.statusCode, 201);
  await call('PATCH', `/v1/customers/${first.json().id}`, { email: 'changed@x.io' });
  const replay = await call('POST', '/v1/customers', body, { 'idempotency-key': 'k-1' });
  t.equal(replay.statusCode, 201, 'the first status');
  t.equal(replay.body, first.body, 'the first answer, byte for byte');
  t.equal(replay.headers['idempotent-replayed'], 'true');
  t.equal((await call('GET', `/v1/customers/${first.json().id}`)).json().email, 'changed@x.io', 'the request did not run again');
  const other = await call('POST', '/v1/customers', { ...body, email: 'other@x.io' }, { 'idempotency-key': 'k-1' });
  t.equal(other.statusCode, 422);
  t.match(other.json().errors, [{ pointer: '/headers/idempotency-key' }]);
  const otherRoute = await call('POST', '/v1/events', { externalId: 'idem', type: 'a' }, { 'idempotency-key': 'k-1' });
  t.equal(otherRoute.statusCode, 422, 'the same key on another route');
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('POST', '/v1/customers', body, { 'idempotency-key': 'k-1' })).statusCode, 201, 'keys are per workspace');
  const ghost = { customerId: '00000000-0000-4000-8000-000000000000', type: 'a' };
  const failed = await call('POST', '/v1/events', ghost, { 'idempotency-key': 'k-bad' });
  t.equal(failed.statusCode, 422);
  const failedAgain = await call('POST', '/v1/events', ghost, { 'idempotency-key': 'k-bad' });
  t.equal(failedAgain.statusCode, 422);
  t.equal(failedAgain.headers['idempotent-replayed'], 'true', 'a 4xx answer is replayed too');
  t.match(failedAgain.headers['content-type'], /^application\/problem\+json/);
  t.equal((await call('POST', '/v1/customers', body, { 'idempotency-key': 'x'.repeat(256) })).statusCode, 400, 'an oversize key');
  const [{ n }] = (await herald.runtime.deps.database.sql`select count(*)::int as n from customers where workspace_id = ${workspaceId}`) as unknown as [{ n: number }];
  t.equal(n, 1);
});

t.test('Idempotency-Key: concurrent duplicates run once; keys expire after 24 hours', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const answers = await Promise.all(Array.from({ length: 5 }, () => call('POST', '/v1/events', { externalId: 'c', type: 'buy' }, { 'idempotency-key': 'burst' })));
  const codes = answers.map((a) => a.statusCode);
  t.ok(codes.every((c) => c === 200 || c === 409), `200 or 409 (${codes})`);
  const [{ n }] = (await herald.runtime.deps.database.sql`select count(*)::int as n from events where workspace_id = ${workspaceId}`) as unknown as [{ n: number }];
  t.equal(n, 1, 'one event however many raced');
  herald.clock.advance(24 * 3600_000 + 1000);
  const later = await call('POST', '/v1/events', { externalId: 'c', type: 'buy' }, { 'idempotency-key': 'burst' });
  t.equal(later.headers['idempotent-replayed'], undefined, 'after 24 hours the key is new again');
  t.equal(later.json().accepted, 1);
});

t.test('the root token can use Idempotency-Key on workspace creation', async (t) => {
  const root = caller(app, ROOT_TOKEN);
  const a = await root('POST', '/v1/workspaces', { name: 'once' }, { 'idempotency-key': 'ws-once' });
  const b = await root('POST', '/v1/workspaces', { name: 'once' }, { 'idempotency-key': 'ws-once' });
  t.equal(a.json().id, b.json().id);
});

t.test('an internal error is a 500 with no stack, no SQL and a request id', async (t) => {
  const { call } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/customers', { externalId: 'boom' })).json().id;
  await herald.runtime.deps.database.sql`alter table consent_changes rename to consent_changes_gone`;
  const res = await call('PUT', `/v1/customers/${id}/consents/email`, { status: 'subscribed' });
  await herald.runtime.deps.database.sql`alter table consent_changes_gone rename to consent_changes`;
  t.equal(res.statusCode, 500);
  t.equal(res.headers['content-type'], 'application/problem+json');
  t.match(res.json(), { status: 500, code: 'internal', detail: new RegExp(res.headers['x-request-id'] as string) });
  t.notMatch(res.body, /consent_changes|relation|insert|\.ts:|at /, 'nothing from inside leaks');
  t.equal((await call('GET', `/v1/customers/${id}`)).json().consents.length, 0, 'the transaction rolled back');
});

t.test('rate limit per API key: 429 with Retry-After', async (t) => {
  const limited = await startHerald(t, { HERALD_RATE_LIMIT: '5' });
  const a = await workspaceWithKey(limited.app);
  const b = await workspaceWithKey(limited.app);
  const codes: number[] = [];
  for (let i = 0; i < 6; i++) codes.push((await a.call('GET', '/v1/customers')).statusCode);
  t.same(codes, [200, 200, 200, 200, 200, 429]);
  const res = await a.call('GET', '/v1/customers');
  t.equal(res.statusCode, 429);
  t.equal(res.headers['content-type'], 'application/problem+json');
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After is set');
  t.equal((await b.call('GET', '/v1/customers')).statusCode, 200, 'another key has its own budget');
  t.equal((await limited.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'operations are not limited');
});

t.test('rate limit shared by processes on one database: a key cannot multiply its budget by their number', async (t) => {
  const first = await startHerald(t, { HERALD_RATE_LIMIT: '10', HERALD_ROLE: 'api' });
  // A second process on the same database (another API replica): same settings, same clock.
  const config = loadConfig({
    NODE_ENV: 'test', DATABASE_URL: first.databaseUrl, HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-test-')), HERALD_ROOT_TOKEN: ROOT_TOKEN,
    HERALD_SECRET: 'test-secret-test-secret-test-secret-0123', LOG_LEVEL: 'silent', HERALD_DB_POOL: '3', HERALD_RATE_LIMIT: '10', HERALD_ROLE: 'api',
  });
  const second = await startRuntime(config, { clock: first.clock, logger: true });
  t.teardown(() => second.close());
  const a = await workspaceWithKey(first.app);
  const onSecond = caller(second.app, a.token);
  const hits = async () => (await first.runtime.deps.database.sql<{ hits: number }[]>`select coalesce(sum(hits), 0)::int as hits from rate_limit_hits where key = ${`key:${a.keyId}`}`)[0]!.hits;

  const codes: number[] = [];
  for (let i = 0; i < 6; i++) codes.push((await a.call('GET', '/v1/customers')).statusCode);
  t.same(codes, [200, 200, 200, 200, 200, 200]);
  await eventually(async () => ((await hits()) === 6 ? true : undefined), 5000);
  // The second process reads the shared count on the key's first request: 4 left, not 10.
  const there: number[] = [];
  for (let i = 0; i < 6; i++) there.push((await onSecond('GET', '/v1/customers')).statusCode);
  t.same(there, [200, 200, 200, 200, 429, 429], 'the second process spends what is left of the budget');
  await eventually(async () => ((await hits()) === 10 ? true : undefined), 5000);
  // And the first process learns what the second let through at its next sync.
  await new Promise((r) => setTimeout(r, 3 * SYNC_MS));
  t.equal((await a.call('GET', '/v1/customers')).statusCode, 429, 'the first process refuses too');
  t.equal(await hits(), 10, 'refused requests are not counted');
  // A new window (the clock's minute) starts afresh everywhere.
  first.clock.advance(60_000);
  t.equal((await onSecond('GET', '/v1/customers')).statusCode, 200);
  t.equal((await a.call('GET', '/v1/customers')).statusCode, 200);
});

t.test('deep JSON is refused with a pointer before anything runs (JSON.stringify and jsonb overflow a few thousand levels down)', async (t) => {
  const deep = await startHerald(t, { HERALD_ROLE: 'api' });
  const { call } = await workspaceWithKey(deep.app);
  // As JSON text: JSON.stringify itself overflows on the deepest ones.
  const nest = (depth: number): string => {
    let open = '';
    let close = '';
    for (let i = 0; i < depth; i++) {
      open += i % 2 ? '{"k":' : '[';
      close = (i % 2 ? '}' : ']') + close;
    }
    return `${open}"leaf"${close}`;
  };
  const body = (fields: string) => `{${fields}}`;
  for (const depth of [100, 5000, 100_000]) {
    const res = await call('POST', '/v1/customers', body(`"externalId":"deep-${depth}","custom":{"x":${nest(depth)}}`), { 'content-type': 'application/json' });
    t.equal(res.statusCode, 400, `${depth} levels: ${res.body.slice(0, 200)}`);
    t.match(res.json(), { code: 'validation_failed', errors: [{ pointer: /^\/custom\/x(\/(0|k))+$/, detail: 'nested deeper than 64 levels' }] });
  }
  const json = { 'content-type': 'application/json' };
  const events = await call('POST', '/v1/events', body(`"events":[{"externalId":"deep","type":"x","properties":{"p":${nest(5000)}}}]`), json);
  t.equal(events.statusCode, 400, 'event properties too');
  const gql = await call('POST', '/graphql', body(`"query":"query($v: Int) { customers(first: $v) { edges { node { id } } } }","variables":{"v":${nest(5000)}}`), json);
  t.match(gql.json(), { data: null, errors: [{ message: 'JSON may not be nested deeper than 64 levels', extensions: { code: 'BAD_USER_INPUT' } }] }, 'GraphQL variables too (a GraphQL error)');
  t.equal((await call('POST', '/v1/customers', body(`"externalId":"ok","custom":{"x":${nest(60)}}`), json)).statusCode, 201, '60 levels are fine');
  t.equal((await call('GET', '/v1/customers?externalId=deep-5000')).json().data.length, 0, 'nothing stored');
});

t.test('U+0000 is refused with a pointer, in bodies and query strings alike (PostgreSQL cannot store it)', async (t) => {
  const nul = await startHerald(t, { HERALD_ROLE: 'api' });
  const { call } = await workspaceWithKey(nul.app);
  const inQuery = await call('GET', '/v1/customers?externalId=a%00b');
  t.equal(inQuery.statusCode, 400);
  t.same(inQuery.json().errors, [{ pointer: '/query/externalId', detail: 'contains U+0000' }]);
  const inBody = await call('POST', '/v1/customers', { externalId: 'x', custom: { notes: ['ok', 'a\u0000b'] } });
  t.equal(inBody.statusCode, 400);
  t.same(inBody.json().errors, [{ pointer: '/custom/notes/1', detail: 'contains U+0000' }]);
  t.equal((await call('GET', '/v1/customers')).json().data.length, 0, 'nothing stored');
});
