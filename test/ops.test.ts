import t from 'tap';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;

t.test('liveness and readiness need no token', async (t) => {
  t.same((await app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { status: 'ready', checks: { database: 'ok', queue: 'ok' } });
});

t.test('Prometheus metrics: HTTP latency by route, queue depths, database connections', async (t) => {
  const { call } = await workspaceWithKey(app);
  await call('GET', '/v1/customers');
  await call('POST', '/v1/customers/import', 'externalId\nm1\n', { 'content-type': 'text/csv' });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  t.match(res.body, /herald_http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/v1\/customers",status_code="200"\} 1/);
  t.match(res.body, /herald_queue_jobs\{queue="customer-import",state="(ready|active|deferred|failed)"\}/);
  t.match(res.body, /herald_db_connections\{application="herald-all",state="[a-z ]+"\} \d+/);
  t.match(res.body, /herald_process_resident_memory_bytes/);
  t.notMatch(res.body, /hk_|Bearer/, 'no secrets');
});
