// Scale-out: one API process and two worker processes (`node src/server.ts`, HERALD_ROLE=worker)
// on one PostgreSQL share the flow engine's ticks, the action runs and the sends, and no step,
// run or message is done twice.
//
// The API runs in this process (HERALD_ROLE=api: it runs no jobs); the workers are children on
// the same database, each connecting with its own application_name (the standard
// `?application_name=` parameter of the connection URL, which postgres.js and pg honour over the
// name Herald sets). Who did what is recorded by the database itself: test-only triggers, made
// here on this test's database, log each flow decision written, each action run finished, and
// each message's status changes ('queued' -> 'sending' is the send worker marking the message
// just before its provider call: one per call) with the writing session's application_name.
// Nothing in Herald is changed for it.
import t from 'tap';
import { enqueueMessages } from '../src/modules/messages/outbox.ts';
import { ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';
import { welcomeFlow } from './helpers/faults-setup.ts';
import { spawnHerald, type HeraldChild } from './helpers/spawn.ts';

const CUSTOMERS = 4000;
/** Events per POST: customers enter the flow in a stream, so that wake-ups keep coming while the workers tick. */
const EVENT_BATCH = 200;
const ACTIONS = 4;
const BATCH_SENDS = 2000;
const WORKERS = ['herald-worker-a', 'herald-worker-b'];
const SECRET = 'test-secret-test-secret-test-secret-0123';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, databaseUrl } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, check: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The work log: one row per decision, run outcome and message status change, with the session that wrote it. */
async function installWorkLog(): Promise<void> {
  await sql.unsafe(`
    create table scale_work (kind text not null, key text not null, app text not null, source text);
    create function scale_log_decisions() returns trigger language plpgsql as $$ begin
      insert into scale_work (kind, key, app, source) select 'decision', n.entry_id || '/' || u.node_id, current_setting('application_name'), 'flow' from new_rows n cross join unnest(n.node_ids) as u(node_id);
      return null; end $$;
    create trigger scale_log_decisions after insert on flow_decisions referencing new table as new_rows for each statement execute function scale_log_decisions();
    create function scale_log_messages() returns trigger language plpgsql as $$ begin
      insert into scale_work (kind, key, app, source)
      select case when n.status = 'sending' then 'call' else 'outcome:' || n.status end, n.id::text, current_setting('application_name'), n.source_type || ':' || n.source_id
      from new_rows n join old_rows o on o.workspace_id = n.workspace_id and o.id = n.id where n.status is distinct from o.status;
      return null; end $$;
    create trigger scale_log_messages after update on messages referencing old table as old_rows new table as new_rows for each statement execute function scale_log_messages();
    create function scale_log_runs() returns trigger language plpgsql as $$ begin
      insert into scale_work (kind, key, app, source)
      select 'run:' || n.status, n.id::text, current_setting('application_name'), n.action_id::text
      from new_rows n join old_rows o on o.workspace_id = n.workspace_id and o.id = n.id where n.status is distinct from o.status;
      return null; end $$;
    create trigger scale_log_runs after update on action_runs referencing old table as old_rows new table as new_rows for each statement execute function scale_log_runs();
  `);
}

t.test('two workers share flows, action runs and sends; nothing is done twice', async (t) => {
  const started = Date.now();
  const since = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  await installWorkLog();
  const { workspaceId, call } = await workspaceWithKey(app);
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'news@acme.example' } })).json();
  const template = (name: string) => call('POST', '/v1/templates', { name, channel: 'email', content: { subject: `${name}, {{ customer.first_name | default: "you" }}`, html: `<p>${name} <a href="https://acme.example/x">more</a></p>` } }).then((r) => r.json().id as string);
  const [welcome, bonus, sale] = await Promise.all([template('Welcome'), template('Gold bonus'), template('Sale')]);
  const graph = welcomeFlow(config.id, welcome, bonus, { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' });
  const created = await call('POST', '/v1/flows', { name: 'Shared', graph });
  t.equal(created.statusCode, 201, created.statusCode === 201 ? 'the flow is saved' : created.body);
  const flowId = created.json().id as string;
  t.equal((await call('POST', `/v1/flows/${flowId}/launch`)).statusCode, 200, 'the flow is launched');

  // Customers with an address (every third one gold, groups a..d for the actions), made in SQL.
  await sql`
    insert into customers (workspace_id, id, external_id, email, custom)
    select ${workspaceId}::uuid, herald_uuid_v7(now()), 'c' || lpad(n::text, 5, '0'), 'c' || n || '@x.example',
      jsonb_build_object('plan', case when n % 3 = 0 then 'gold' else 'free' end, 'group', chr(97 + n % ${ACTIONS}), 'first_name', 'Ada')
    from generate_series(0, ${CUSTOMERS - 1}::int) n`;
  const golds = Math.ceil(CUSTOMERS / 3);

  const workers: HeraldChild[] = [];
  t.teardown(() => Promise.all(workers.map((w) => w.kill('SIGKILL'))));
  for (const name of WORKERS) {
    const url = new URL(databaseUrl);
    url.searchParams.set('application_name', name);
    workers.push(spawnHerald({
      NODE_ENV: 'test', DATABASE_URL: url.toString(), HERALD_ROLE: 'worker', PORT: '0',
      HERALD_SECRET: SECRET, HERALD_ROOT_TOKEN: ROOT_TOKEN, LOG_LEVEL: 'warn', HERALD_DB_POOL: '6',
    }));
  }
  await Promise.all(workers.map((w) => w.listening()));
  t.comment(`setup: ${CUSTOMERS} customers, 2 workers listening at ${since()}`);

  // 1. The flow: events in a stream of posts, each waking the engine.
  for (let i = 0; i < CUSTOMERS; i += EVENT_BATCH) {
    const events = Array.from({ length: Math.min(EVENT_BATCH, CUSTOMERS - i) }, (_, k) => ({ externalId: `c${String(i + k).padStart(5, '0')}`, type: 'signup' }));
    const res = await call('POST', '/v1/events', { events });
    if (res.statusCode !== 200) throw new Error(res.body);
  }
  t.comment(`${CUSTOMERS} events posted at ${since()}`);
  // 2. Action runs: single sends to four groups, launched at once (four run jobs).
  const launched = await Promise.all(Array.from({ length: ACTIONS }, (_, i) => call('POST', '/v1/actions', {
    name: `Sale ${i}`, kind: 'single_send', channel: 'email', channelConfigId: config.id, templateId: sale,
    audience: { type: 'field', field: 'custom.group', op: 'eq', value: String.fromCharCode(97 + i) }, launch: true,
  })));
  t.same(launched.map((r) => r.statusCode), Array(ACTIONS).fill(201), launched.find((r) => r.statusCode !== 201)?.body ?? 'the actions are saved and launched');
  const actionIds = launched.map((r) => r.json().id as string);
  // 3. A batch of sends queued straight into the outbox (what any decision to send does), in batches of 500.
  const ids = (await sql<{ id: string }[]>`select id from customers where workspace_id = ${workspaceId} order by id limit ${BATCH_SENDS}`).map((r) => r.id);
  for (let i = 0; i < ids.length; i += 500) {
    await sql.begin((tx) => enqueueMessages(tx, deps.boss, ids.slice(i, i + 500).map((customerId) => ({
      workspaceId, customerId, channel: 'email', channelConfigId: config.id, templateId: sale, templateVersion: 1, sourceType: 'action', sourceId: 'scale-batch',
    })), new Date()));
  }

  t.comment(`actions launched and the batch queued at ${since()}`);
  const expectedMessages = CUSTOMERS + golds + CUSTOMERS + BATCH_SENDS;
  const state = async () => {
    const [row] = await sql<{ done: number; messages: number; open: number; runs: number }[]>`
      select (select count(*)::int from flow_entries where flow_id = ${flowId} and state = 'done') as done,
        (select count(*)::int from messages where workspace_id = ${workspaceId}) as messages,
        (select count(*)::int from messages where workspace_id = ${workspaceId} and status in ('queued', 'sending')) as open,
        (select count(*)::int from action_runs where workspace_id = ${workspaceId} and status = 'finished') as runs`;
    return row!;
  };
  await until('the flow, the runs and the sends to finish', async () => {
    const s = await state();
    return s.done === CUSTOMERS && s.runs === ACTIONS && s.messages === expectedMessages && s.open === 0 ? s : undefined;
  }, 45_000).catch(async (error: Error) => {
    const jobs = await sql`select name, state, singleton_key, created_on, started_on, completed_on, output from pgboss.job where name in ('flow-tick', 'action-runs') and state <> 'completed' order by created_on limit 3`;
    throw new Error(`${error.message}: ${JSON.stringify(await state())}; jobs ${JSON.stringify(jobs)}; workers said: ${workers.map((w) => w.output().slice(-1500)).join(' | ')}`);
  });
  t.comment(`all done at ${since()}`);
  // How long the jobs waited for a worker. pg-boss polls a queue with `notify` every 30 s
  // (notifyPollingInterval), whatever pollingIntervalSeconds says, and a worker that was busy when
  // several jobs were announced fetches once more, then sleeps: a burst of jobs larger than the
  // workers can leave one waiting 30 s. (Told here when it happens; the deadline above allows it.)
  const waits = await sql<{ name: string; n: number; max: number }[]>`
    select name, count(*)::int as n, round(max(extract(epoch from started_on - created_on))::numeric, 1)::float as max
    from pgboss.job where name in ('flow-tick', 'action-runs', 'send-messages') and started_on is not null group by 1 order by 1`;
  t.comment(`longest wait for a worker: ${waits.map((w) => `${w.name} ${w.max} s (of ${w.n} jobs)`).join(', ')}`);

  // ---- nothing twice ----
  const twice = await sql<{ kind: string; key: string; n: number }[]>`
    select kind, key, count(*)::int as n from scale_work group by 1, 2 having count(*) > 1 limit 5`;
  t.same(twice, [], 'no decision, provider call, outcome or run transition was logged twice');
  const statuses = await sql<{ status: string; n: number }[]>`select status, count(*)::int as n from messages where workspace_id = ${workspaceId} group by 1`;
  t.same(statuses, [{ status: 'sent', n: expectedMessages }], 'every message was sent');
  const [calls] = await sql<{ calls: number; sent: number; actions: number }[]>`
    select (select count(*)::int from scale_work where kind = 'call') as calls, (select count(*)::int from scale_work where kind = 'outcome:sent') as sent,
      (select count(*)::int from customer_actions x join action_templates a on a.workspace_id = x.workspace_id and a.id = x.action_template_id where x.workspace_id = ${workspaceId} and a.kind = 'sent') as actions`;
  t.same(calls, { calls: expectedMessages, sent: expectedMessages, actions: expectedMessages }, 'each message went to the provider once, was recorded sent once, got its "sent" action once');
  const twiceSent = await sql`
    select source_id, customer_id, step_id, count(*)::int as n from messages where workspace_id = ${workspaceId} group by 1, 2, 3 having count(*) > 1 limit 5`;
  t.same(twiceSent, [], 'no customer got the email of a step or an action twice');
  const twiceDecided = await sql`select entry_id, node_id, count(*)::int as n from flow_decision_list where flow_id = ${flowId} group by 1, 2 having count(*) > 1 limit 5`;
  t.same(twiceDecided, [], 'no (entry, node) decision was recorded twice');
  const [decided] = await sql<{ n: number; entries: number }[]>`select count(*)::int as n, count(distinct entry_id)::int as entries from flow_decision_list where flow_id = ${flowId}`;
  t.same(decided, { n: CUSTOMERS * 5 + golds, entries: CUSTOMERS }, 'every customer passed every node of their path once (5 nodes, 6 for gold)');
  const runs = await sql<{ action_id: string; runs: number; queued: number }[]>`
    select action_id, count(*)::int as runs, sum(queued)::int as queued from action_runs where workspace_id = ${workspaceId} group by 1`;
  t.equal(runs.length, ACTIONS, 'each action has its run');
  t.ok(runs.every((r) => r.runs === 1 && r.queued === CUSTOMERS / ACTIONS), 'each action ran once and queued its group once');
  t.same(new Set(runs.map((r) => r.action_id)), new Set(actionIds), 'the runs are those of the launched actions');

  // ---- shared ----
  const byWorker = await sql<{ work: string; app: string; n: number }[]>`
    select case when kind = 'decision' then 'flow decisions'
                when kind = 'run:finished' then 'action runs'
                when kind = 'call' and source = 'flow:' || ${flowId} then 'sends: flow emails'
                when kind = 'call' and source = 'action:scale-batch' then 'sends: the outbox batch'
                when kind = 'call' then 'sends: action emails' end as work,
      app, count(*)::int as n
    from scale_work where kind in ('decision', 'run:finished', 'call') group by 1, 2 order by 1, 2`;
  const table = new Map<string, Record<string, number>>();
  for (const r of byWorker) table.set(r.work, { ...table.get(r.work), [r.app]: r.n });
  for (const [work, apps] of table) t.comment(`${work.padEnd(24)} ${Object.entries(apps).map(([a, n]) => `${a} ${n}`).join(', ')}`);
  t.same([...table.keys()].sort(), ['action runs', 'flow decisions', 'sends: action emails', 'sends: flow emails', 'sends: the outbox batch'], 'every kind of work was logged');
  for (const [work, apps] of table) {
    t.same(Object.keys(apps).sort(), WORKERS, `${work}: done by the two workers, and by no other process`);
  }
  t.comment(`${since()} in all`);
});
