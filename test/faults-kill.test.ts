// kill -9 under load (issue 7, faults): Herald workers (`node src/server.ts`, HERALD_ROLE=worker)
// drain a flow with two email steps and single-send actions over a segment of thousands, sending
// through a SendGrid mock on 127.0.0.1 that answers after a delay (so sends are in flight); a
// worker is killed with SIGKILL at a random moment — mid flow tick, mid action run, mid send —
// and restarted, ten times. In the end every flow customer finished, every action recipient has
// exactly one message, the mock saw no message id twice, and the messages whose outcome is
// unknown (their request may have left when the worker died) are counted per kill and bounded
// by the sends that can be in flight in a worker.
//
// It also holds what the earlier flows-kill test showed of the engine: a kill mid-tick rolls the
// tick back (no decision or message of an unfinished entry survives), no step or decision runs
// twice, and a restarted worker is woken by an event at once, whatever dead workers left active.
//
// The API runs in this process (HERALD_ROLE=api: no jobs); all the work happens in the children.
// Nothing wakes a restarted worker by itself but the per-minute crons (or pg-boss's retry of a
// dead worker's job once its heartbeats are missed), too slow here: the test sends the wake-ups.
// The last check shows an event's own wake-up reaching a restarted worker at once.
import t from 'tap';
import { RUN_QUEUE } from '../src/modules/actions/actions.runs.ts';
import { SEND_QUEUE } from '../src/modules/messages/outbox.ts';
import { recoverAbandoned, SEND_SLOTS, SENDING_LEASE_MS } from '../src/modules/messages/send.worker.ts';
import { startHerald, workspaceWithKey } from './helpers/app.ts';
import { allowLoopback, inFlight, makeCustomers, repeated, sleep, until as untilIn, welcomeFlow, workerBackends, workerPool } from './helpers/faults-setup.ts';
import { startSendGridMock } from './mocks/index.ts';

const KILLS = 10;
/** What each round kills; 'run' and 'tick' fall back to a kill mid-send when the moment is missed. */
const PLAN = ['tick', 'run', 'send', 'tick', 'send', 'run', 'send', 'tick', 'run', 'send'] as const;
/** Flow customers waiting before a 'tick' round (a tick claims up to 5000). */
const FLOW_BATCH = 2500;
/** Customers in the actions' segment: each 'run' round launches a single send to all of them. */
const AUDIENCE = 2000;
/** Messages queued before a 'send' round, topped up with flow customers. */
const KEEP_QUEUED = 1500;
/** The mock answers each request this late: sends are in flight whenever the worker sends. */
const SEND_DELAY_MS = 40;

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, databaseUrl } = herald;
const { sql } = herald.runtime.deps.database;
const { boss } = herald.runtime.deps;
const until = <T>(what: string, check: () => Promise<T | undefined>, ms: number, every?: number) => untilIn(sql, what, check, ms, every);

t.test('workers killed at random moments of a flow run and action runs with sends: every customer finishes, no message is sent twice', async (t) => {
  const started = Date.now();
  const mock = await startSendGridMock({ apiKey: 'SG.faults-kill', faults: { delayMs: SEND_DELAY_MS } });
  t.teardown(() => mock.close());
  const flying = inFlight(mock);
  const { call, workspaceId } = await workspaceWithKey(app);
  await allowLoopback(app, workspaceId);
  const config = (await call('POST', '/v1/channel-configs', { name: 'SendGrid', provider: 'sendgrid', settings: { fromEmail: 'news@acme.example', apiBaseUrl: mock.url }, secrets: { apiKey: 'SG.faults-kill' } })).json();
  const template = async (name: string) => (await call('POST', '/v1/templates', { name, channel: 'email', content: { subject: `${name} {{ customer.external_id }}`, html: `<p>${name}, {{ customer.external_id }}</p>` } })).json().id as string;
  const [welcome, bonus, promo] = [await template('Welcome'), await template('Gold bonus'), await template('Promo')];
  const graph = welcomeFlow(config.id, welcome, bonus, { type: 'field', field: 'custom.tier', op: 'eq', value: 'gold' });
  const flow = await call('POST', '/v1/flows', { name: 'Kill me', graph });
  t.equal(flow.statusCode, 201, flow.body);
  const flowId = flow.json().id as string;
  t.equal((await call('POST', `/v1/flows/${flowId}/launch`)).statusCode, 200, 'the flow is launched');
  await makeCustomers(sql, workspaceId, 'promo-', AUDIENCE, { group: 'promo' });
  const segment = (await call('POST', '/v1/segments', { name: 'Promo', filter: { type: 'field', field: 'custom.group', op: 'eq', value: 'promo' } })).json();

  // Flow customers: made in SQL (with an email; every third is gold), entered through POST /v1/events.
  let customers = 0;
  let golds = 0;
  const enter = async (n: number) => {
    const from = customers;
    await makeCustomers(sql, workspaceId, 'plain-', n, {}, from);
    await sql`update customers set custom = '{"tier":"gold"}' where workspace_id = ${workspaceId} and external_id like 'plain-%' and substr(external_id, 7)::int >= ${from} and substr(external_id, 7)::int % 3 = 0`;
    for (let i = from; i < from + n; i += 1000) {
      const events = Array.from({ length: Math.min(1000, from + n - i) }, (_, j) => ({ externalId: `plain-${String(i + j).padStart(6, '0')}`, type: 'signup' }));
      const res = await call('POST', '/v1/events', { events });
      if (res.statusCode !== 200) throw new Error(res.body);
    }
    for (let i = from; i < from + n; i++) if (i % 3 === 0) golds++;
    customers += n;
  };
  const actions: string[] = [];
  const launch = async () => {
    const res = await call('POST', '/v1/actions', { name: `Promo ${actions.length + 1}`, kind: 'single_send', channel: 'email', channelConfigId: config.id, templateId: promo, audience: { type: 'segment', segmentId: segment.id }, launch: true });
    if (res.statusCode !== 201) throw new Error(res.body);
    actions.push(res.json().id);
  };

  const progress = async () => {
    const [row] = await sql<{ entries: number; done: number }[]>`
      select count(*)::int as entries, (count(*) filter (where state = 'done'))::int as done from flow_entries where flow_id = ${flowId}`;
    return row!;
  };
  const statuses = async () => Object.fromEntries((await sql<{ status: string; n: number }[]>`select status, count(*)::int as n from messages where workspace_id = ${workspaceId} group by 1`).map((r) => [r.status, r.n])) as Record<string, number>;
  const workerHolds = async (table: string) => {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.database = (select oid from pg_database where datname = current_database())
        and l.relation = ${table}::regclass and l.mode = 'RowShareLock' and a.application_name = 'herald-worker'`;
    return row!.n > 0;
  };
  const wake = async (label: string) => {
    await boss.send('flow-tick', {}, { singletonKey: label });
    await boss.send(SEND_QUEUE, {});
    for (const r of await sql<{ id: string }[]>`select id from action_runs where workspace_id = ${workspaceId} and status = 'pending'`) await boss.send(RUN_QUEUE, { workspaceId, runId: r.id });
  };

  const pool = workerPool(databaseUrl);
  t.teardown(pool.teardown);
  interface Kill { round: number; planned: string; moment: string; mockInFlight: number; sendingBefore: number; newlySending: number; queuedAfter: number }
  const kills: Kill[] = [];
  let sendingLeft = 0; // messages left in 'sending' by the workers killed so far
  for (let round = 0; round < KILLS; round++) {
    const planned = PLAN[round]!;
    if (planned === 'send') {
      // Due ones: the claims of a killed worker that it had not started are due when their lease ends.
      const [due] = await sql<{ n: number }[]>`select count(*)::int as n from message_queue where workspace_id = ${workspaceId} and not sending and due_at <= now()`;
      if (due!.n < KEEP_QUEUED) await enter(KEEP_QUEUED - due!.n);
    }
    const w = await pool.start();
    let moment: string = planned;
    let entering: Promise<void> | undefined;
    // Flow entries and action runs are made once the worker listens: its wake-ups take them at once.
    if (planned === 'tick') {
      const now = await progress();
      entering = enter(Math.max(0, FLOW_BATCH - (now.entries - now.done)));
      await until('a worker to claim flow entries', async () => ((await workerHolds('flow_entries')) ? true : undefined), 30_000, 5);
      await sleep(Math.floor(Math.random() * 200));
      if (!(await workerHolds('flow_entries'))) moment = 'tick (just committed)';
    } else if (planned === 'run') {
      await launch();
      const caught = await until('the action run', async () => ((await workerHolds('action_runs')) ? true : (await sql`select 1 from action_runs where workspace_id = ${workspaceId} and status = 'pending'`).length ? undefined : false), 30_000, 5);
      if (caught) {
        await sleep(Math.floor(Math.random() * 20));
        if (!(await workerHolds('action_runs'))) moment = 'run (just committed)';
      } else {
        moment = 'send (the run was missed)';
        await until('sends in flight', async () => (flying() > 0 ? true : undefined), 30_000, 5);
      }
    } else {
      await until('sends in flight', async () => (flying() > 0 ? true : undefined), 30_000, 5).catch(async (e) => {
        throw new Error(`${e}\nprogress ${JSON.stringify(await progress())} statuses ${JSON.stringify(await statuses())} jobs ${JSON.stringify(await sql`select name, state, singleton_key, count(*)::int from pgboss.job group by 1,2,3`)}\nworker: ${w.output()}`);
      });
      await sleep(Math.floor(Math.random() * 1000));
    }
    const mockInFlight = flying();
    const sendingBefore = (await statuses()).sending ?? 0;
    t.equal(await w.kill('SIGKILL'), 'SIGKILL', `kill ${round + 1}: the worker died of SIGKILL`);
    await entering;
    // Its backends end when PostgreSQL sees the sockets close; an open transaction rolls back then.
    await until("the killed worker's backends to end", async () => ((await workerBackends(sql)) === 0 ? true : undefined), 30_000);
    const now = await statuses();
    const newlySending = (now.sending ?? 0) - sendingLeft;
    sendingLeft = now.sending ?? 0;
    kills.push({ round: round + 1, planned, moment, mockInFlight, sendingBefore, newlySending, queuedAfter: now.queued ?? 0 });

    // A flow entry is either done with all of its decisions and messages, or active with none.
    const partial = await sql.begin(async (tx) => {
      await tx`set local enable_nestloop = off`;
      const [row] = await tx<{ decisions: number; messages: number }[]>`
        select (select count(*)::int from flow_decisions d join flow_entries f on f.workspace_id = d.workspace_id and f.id = d.entry_id where d.flow_id = ${flowId} and f.state <> 'done') as decisions,
               (select count(*)::int from messages m join flow_entries f on f.workspace_id = m.workspace_id and f.id::text = m.entry_id where m.source_type = 'flow' and m.source_id = ${flowId} and f.state <> 'done') as messages`;
      return row;
    });
    t.same(partial, { decisions: 0, messages: 0 }, `kill ${round + 1}: no decision or message of an unfinished flow entry survived`);
    // A run is finished with all of its messages, or pending with none.
    const halfRuns = await sql`
      select r.id, r.status, count(m.id)::int as n from action_runs r left join messages m on m.workspace_id = r.workspace_id and m.run_id = r.id
      where r.workspace_id = ${workspaceId} group by 1, 2 having (r.status = 'pending') <> (count(m.id) = 0)`;
    t.same(halfRuns, [], `kill ${round + 1}: no run is half done`);
    t.comment(`kill ${round + 1} (${moment}): ${mockInFlight} requests in flight at the mock, ${sendingBefore} messages 'sending' before the kill, ${newlySending} left 'sending' by it; queued ${now.queued ?? 0}`);
    const said = w.output().split('\n').filter((l) => l.trim() && !/listening on/.test(l)).join('\n');
    if (said) t.comment(`worker ${round + 1} said: ${said.slice(0, 2000)}`);
    await wake(`after-kill-${round + 1}`);
  }

  // The last worker drains everything; claims of dead workers that had not started come back.
  const last = await pool.start();
  await until('every flow entry to finish and every run to be done', async () => {
    const p = await progress();
    const [runs] = await sql<{ pending: number }[]>`select count(*) filter (where status <> 'finished')::int as pending from action_runs where workspace_id = ${workspaceId}`;
    return p.done === customers && runs!.pending === 0 ? true : undefined;
  }, 60_000, 100);
  await t.test('a restarted worker is woken by a new event within seconds, whatever dead workers left active', async (t) => {
    await makeCustomers(sql, workspaceId, 'late-', 1);
    const res = await call('POST', '/v1/events', { externalId: 'late-000000', type: 'signup' });
    t.equal(res.statusCode, 200, res.body);
    const lateDone = async () => {
      const [row] = await sql<{ state: string }[]>`select f.state from flow_entries f join customers c on c.workspace_id = f.workspace_id and c.id = f.customer_id where f.flow_id = ${flowId} and c.external_id = 'late-000000'`;
      return row?.state === 'done' ? true : undefined;
    };
    t.ok(await until('the late customer', lateDone, 5_000).catch(() => false), 'the late customer finished within 5 s');
  });
  let nudged = Date.now();
  await until("every message to be sent, but those dead workers left 'sending'", async () => {
    const s = await statuses();
    if (!s.queued && (s.sending ?? 0) === sendingLeft) return true;
    if (Date.now() - nudged > 1000) {
      nudged = Date.now();
      await boss.send(SEND_QUEUE, {});
    }
    return undefined;
  }, 60_000, 100);
  await last.kill('SIGKILL');
  // What the sweep does once the lease of a 'sending' message has passed (5 minutes, not waited for here).
  const swept = await recoverAbandoned(sql, new Date(Date.now() + SENDING_LEASE_MS + 1000));
  t.equal(swept, sendingLeft, "the sweep calls the dead workers' sends unknown");

  const final = await statuses();
  const unknown = final.unknown ?? 0;
  const total = Object.values(final).reduce((a, b) => a + b, 0);
  t.same(Object.keys(final).sort(), unknown ? ['sent', 'unknown'] : ['sent'], `every message was sent or has an unknown outcome: ${JSON.stringify(final)}`);

  // The mock's view: each Herald message id at most once; each sent message exactly once.
  const ids = mock.messages.map((m) => m.body.custom_args?.herald_message_id ?? '(none)');
  t.same(repeated(ids), {}, 'the mock received no message id twice');
  const seen = new Set(ids);
  const rows = await sql<{ id: string; status: string }[]>`select id, status from messages where workspace_id = ${workspaceId}`;
  const known = new Set(rows.map((r) => r.id));
  t.equal(ids.filter((id) => !known.has(id)).length, 0, 'every mail the mock got is a message of Herald');
  t.equal(rows.filter((r) => r.status === 'sent' && !seen.has(r.id)).length, 0, 'every message recorded as sent reached the mock');
  const unknownSeen = rows.filter((r) => r.status === 'unknown' && seen.has(r.id)).length;
  t.equal(mock.counts.accepted, seen.size, "the mock's count of accepted mails is its count of distinct message ids");

  t.ok(kills.some((k) => k.moment === 'tick'), 'at least one kill hit a flow tick in flight');
  t.ok(kills.some((k) => k.moment === 'run'), 'at least one kill hit an action run in flight');
  t.ok(kills.some((k) => k.mockInFlight > 0), 'at least one kill hit sends in flight');
  const bound = kills.length * SEND_SLOTS;
  t.ok(unknown <= bound, `${unknown} messages with an unknown outcome: at most ${kills.length} kills x ${SEND_SLOTS} sends in flight per worker (${bound})`);
  for (const k of kills) t.ok(k.newlySending <= SEND_SLOTS, `kill ${k.round}: ${k.newlySending} unknown outcomes, at most the ${SEND_SLOTS} sends a worker has in flight`);

  // The flow: every customer finished once, each email of a step once.
  const states = await sql<{ state: string; exit_reason: string; n: number }[]>`select state, exit_reason, count(*)::int as n from flow_entries where flow_id = ${flowId} group by 1, 2`;
  t.same(states, [{ state: 'done', exit_reason: 'completed', n: customers + 1 }], 'every flow entry finished at the exit');
  const perStep = await sql<{ step_id: string; n: number; customers: number }[]>`
    select step_id, count(*)::int as n, count(distinct customer_id)::int as customers from messages where source_type = 'flow' and source_id = ${flowId} group by 1 order by 1`;
  t.same(perStep, [{ step_id: 'gold/0', n: golds, customers: golds }, { step_id: 'mail/0', n: customers + 1, customers: customers + 1 }], 'each customer got the welcome once, each gold customer the bonus once');
  const [entries] = await sql<{ n: number; customers: number }[]>`select count(*)::int as n, count(distinct customer_id)::int as customers from flow_entries where flow_id = ${flowId}`;
  t.same(entries, { n: customers + 1, customers: customers + 1 }, 'one entry per customer');
  const twiceDecided = await sql`select entry_id, node_id, count(*)::int as n from flow_decision_list where flow_id = ${flowId} group by 1, 2 having count(*) > 1 limit 5`;
  t.same(twiceDecided, [], 'no (entry, node) decision was recorded twice');
  const decided = await sql<{ node_id: string; n: number }[]>`select node_id, count(*)::int as n from flow_decision_list where flow_id = ${flowId} group by 1 order by 1`;
  const all = customers + 1;
  t.same(decided, [
    { node_id: 'check', n: all }, { node_id: 'end', n: all }, { node_id: 'gold', n: golds },
    { node_id: 'mail', n: all }, { node_id: 'pause', n: all }, { node_id: 'start', n: all },
  ], 'every entry passed every node of its path once');
  const [fc] = await sql<{ n: number; in_flight: number }[]>`select count(*)::int as n, count(active_entry_id)::int as in_flight from flow_customers where flow_id = ${flowId}`;
  t.same(fc, { n: customers + 1, in_flight: 0 }, 'the re-entry rows agree: no entry left in flight');

  // The actions: each run finished, each recipient has exactly one message.
  const perAction = await sql<{ source_id: string; n: number; customers: number }[]>`
    select source_id, count(*)::int as n, count(distinct customer_id)::int as customers from messages where source_type = 'action' and workspace_id = ${workspaceId} group by 1`;
  t.same(perAction.map((a) => [a.n, a.customers]), actions.map(() => [AUDIENCE, AUDIENCE]), `each of the ${actions.length} actions: one message for each of the ${AUDIENCE} customers of its segment`);
  const runs = await sql<{ status: string; queued: number }[]>`select status, queued from action_runs where workspace_id = ${workspaceId}`;
  t.same(runs.map((r) => [r.status, r.queued]), actions.map(() => ['finished', AUDIENCE]), 'each action ran once, and that run queued the whole segment');

  t.comment(`kills: ${kills.map((k) => `#${k.round} ${k.moment}: ${k.newlySending} unknown (${k.mockInFlight} in flight at the mock)`).join('; ')}`);
  t.comment(`${total} messages (${customers + 1} flow customers, ${actions.length} actions x ${AUDIENCE}): ${unknown} with an unknown outcome after ${kills.length} kills (${unknownSeen} of them reached the mock, ${unknown - unknownSeen} never left), bound ${bound}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
});
