// npm run bench:scale — scale-out: one API process and N worker processes (HERALD_ROLE=worker) on one
// PostgreSQL, for N = 1, 2, 3 (BENCH_SCALE_WORKERS), the workers added one by one to the same database:
//   1. flow: BENCH_SCALE_CUSTOMERS (300,000) customers enter a flow (bench:flow's: trigger -> condition ->
//      wait 0 (collapsed) -> email (sandbox channel) -> splitter -> exit). Their entries are put due
//      at the trigger with one INSERT ... SELECT (what the ingest hook inserts; untimed), then the
//      clock starts and the engine is woken the way a stream of events wakes it: one flow-tick
//      wake-up (entries.ts's wake) every 250 ms. A wake-up is one job of a 'short' queue (one
//      waiting at a time): one wake-up starts one worker's tick job, so a single wake-up for a bulk
//      entry would leave the other workers idle until the per-minute cron. The clock stops when
//      every entry is done. Figure: customer-steps/s (flow decisions per second; 6 per
//      customer). The flow's emails are sent by the same workers meanwhile (sandbox: no provider
//      call), as in a deployment; the outbox is drained before the next phase.
//   2. sending: BENCH_SCALE_MESSAGES (50,000) personalised emails queued with enqueueMessages() in
//      commits of 1000 (each commit wakes the send queue, as each decision to send does) to a
//      local SendGrid mock (another child; BENCH_SCALE_CHANNEL=sandbox for no provider at all).
//      Figure: emails/s from the first commit to the last message recorded as sent.
// Between worker counts, the rows the phases wrote are deleted and the tables vacuumed, so that
// each worker count starts from the same database. Each figure is compared with N = 1's: "vs 1
// worker" (the ideal is N x). This machine has 2 cores shared by the API, the workers, PostgreSQL,
// the mock and this process: little gain is expected past 2, and PostgreSQL's share of the work
// does not scale with Herald's processes.
// Who did the work: each worker connects as application_name herald-worker-<i>, and statement
// triggers made by this bench (not by Herald's migrations) count per statement the decisions
// written and the messages marked 'sending' (the send worker's mark just before a provider call: one
// per call) by each session's application_name, into bench_scale_work (one row per statement).
// Every run checks that nothing was done twice: one provider call per message sent, one decision
// per entry and node, and (SendGrid) one accepted request per message; and that every email was sent.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or an embedded
// PostgreSQL; dropped at the end (BENCH_KEEP_DATABASE=1 keeps it).
// Settings (their own names, so that `npm run bench` can size each bench apart): BENCH_SCALE_CUSTOMERS
// (300000), BENCH_SCALE_MESSAGES (50000, at most the customers), BENCH_SCALE_WORKERS (1,2,3),
// BENCH_SCALE_CHANNEL (sendgrid | sandbox), BENCH_SCALE_TIMEOUT (600 s per phase), BENCH_SCALE_WAKE_MS
// (250; 0 wakes the engine once per phase, as a bulk entry does).
// Exit status: 0 when the runs were clean (this is a measurement), 1 on any failure or double work.
import { randomBytes } from 'node:crypto';
import { machineCpu, postgresCpu, procCpu } from './bench-proc.ts';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { PgBoss } from 'pg-boss';
import type postgres from 'postgres';
import { int, percent, round3, table } from './bench-lib.ts';
import {
  announce, ask, begin, benchDatabase, cleanups, failures, heraldApi, positive, runBench, say, sayErrorTotals, serveHerald, startChild, startHerald, startHeraldWorker, tempDir, writeReport, benchFlowGraph,
} from './bench-harness.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const CUSTOMERS = positive(process.env.BENCH_SCALE_CUSTOMERS, 300_000);
const MESSAGES = Math.min(positive(process.env.BENCH_SCALE_MESSAGES, 50_000), CUSTOMERS);
const WORKERS = [...new Set((process.env.BENCH_SCALE_WORKERS ?? '1,2,3').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0 && n <= 8))].sort((a, b) => a - b);
const CHANNEL = process.env.BENCH_SCALE_CHANNEL === 'sandbox' ? 'sandbox' : 'sendgrid';
const PHASE_TIMEOUT_S = positive(process.env.BENCH_SCALE_TIMEOUT, 600);
/** The engine's wake-ups during the flow phase, one every WAKE_MS; 0: a single one, as a bulk entry makes. */
const WAKE_MS = process.env.BENCH_SCALE_WAKE_MS === '0' ? 0 : positive(process.env.BENCH_SCALE_WAKE_MS, 250);
const POLL_MS = 200;
const ENQUEUE_BATCH = 1000;
const NODES_PASSED = 6;

// ---- child modes -------------------------------------------------------------------------------

async function mock(): Promise<void> {
  const { startSendGridMock } = await import('../test/mocks/sendgrid.ts');
  const sendgrid = await startSendGridMock({ apiKey: process.env.BENCH_SENDGRID_KEY!, record: false });
  await announce(sendgrid.server.address(), () => sendgrid.close(), { stats: () => ({ ...sendgrid.counts }) });
}

const round2 = (n: number) => Math.round(n * 100) / 100;
/** Cores busy over a phase: the API, each worker, the mock, PostgreSQL (all of its processes), and the machine's busy share. */
function cpuMeter(pids: { api: number; workers: number[]; mock: number | undefined }) {
  const start = { at: performance.now(), api: procCpu(pids.api), workers: pids.workers.map(procCpu), mock: procCpu(pids.mock), pg: postgresCpu(), machine: machineCpu() };
  return () => {
    const s = (performance.now() - start.at) / 1000;
    const machine = machineCpu();
    return {
      api: round2((procCpu(pids.api) - start.api) / s),
      workers: pids.workers.map((pid, i) => round2((procCpu(pid) - start.workers[i]!) / s)),
      mock: pids.mock ? round2((procCpu(pids.mock) - start.mock) / s) : null,
      postgres: round2((postgresCpu() - start.pg) / s),
      machineBusy: round3((machine.busy - start.machine.busy) / (machine.total - start.machine.total)),
    };
  };
}
type Cpu = ReturnType<ReturnType<typeof cpuMeter>>;

// ---- the flow, the customers, the work log ------------------------------------------------------


const TEMPLATE = {
  subject: 'Welcome, {{ customer.first_name | default: "there" }}',
  html: '<p>Hi {{ customer.first_name | default: "there" }}, welcome to the {{ customer.plan }} plan.</p><p><a href="https://shop.example.com/start">Get started</a> or <a href="https://shop.example.com/help">ask us</a>.</p><p><a href="{{ unsubscribe_url }}" data-herald-no-track>Unsubscribe</a></p>',
  text: 'Hi {{ customer.first_name | default: "there" }}, welcome to the {{ customer.plan }} plan: https://shop.example.com/start',
};

async function makeCustomers(sql: postgres.Sql, workspaceId: string, n: number): Promise<void> {
  await sql`
    insert into customers (workspace_id, id, external_id, email, custom, created_at, updated_at)
    select ${workspaceId}::uuid, herald_uuid_v7(now() - interval '1 hour' + n * interval '1 microsecond'), 'c' || n, 'c' || n || '@bench.example.com',
      jsonb_build_object('plan', (array['free', 'pro', 'team'])[1 + n % 3], 'first_name', (array['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Radia'])[1 + n % 6]),
      now(), now()
    from generate_series(0, ${n - 1}::int) n`;
}

/** The work log: per statement, decisions written and provider calls started ('sending'), by the writing session's application_name. */
async function installWorkLog(sql: postgres.Sql): Promise<void> {
  await sql.unsafe(`
    create unlogged table bench_scale_work (app text not null, kind text not null, n int not null);
    create function bench_scale_decisions() returns trigger language plpgsql as $$ begin
      insert into bench_scale_work select current_setting('application_name'), 'decisions', sum(cardinality(node_ids)) from new_rows having count(*) > 0;
      return null; end $$;
    create trigger bench_scale_decisions after insert on flow_decisions referencing new table as new_rows for each statement execute function bench_scale_decisions();
    create function bench_scale_calls() returns trigger language plpgsql as $$ begin
      insert into bench_scale_work select current_setting('application_name'), 'calls', count(*)
      from new_rows n join old_rows o on o.workspace_id = n.workspace_id and o.id = n.id where n.status = 'sending' and o.status = 'queued' having count(*) > 0;
      return null; end $$;
    create trigger bench_scale_calls after update on messages referencing old table as old_rows new table as new_rows for each statement execute function bench_scale_calls();
  `);
}

async function workByApp(sql: postgres.Sql, kind: string): Promise<Record<string, number>> {
  const rows = await sql<{ app: string; n: number }[]>`select app, sum(n)::int as n from bench_scale_work where kind = ${kind} group by 1 order by 1`;
  return Object.fromEntries(rows.map((r) => [r.app, r.n]));
}

/** Deletes what a worker count's phases wrote (the flow's entries and decisions, the messages and their actions), so that the next starts from the same database. */
async function clearPhase(sql: postgres.Sql, workspaceId: string, flowId: string, sourceId: string): Promise<void> {
  await sql`
    delete from customer_actions x using action_templates a
    where x.workspace_id = ${workspaceId} and a.workspace_id = x.workspace_id and a.id = x.action_template_id
      and ((a.source_type = 'flow' and a.source_id = ${flowId}) or (a.source_type = 'action' and a.source_id = ${sourceId}))`;
  await sql`delete from messages where workspace_id = ${workspaceId} and ((source_type = 'flow' and source_id = ${flowId}) or (source_type = 'action' and source_id = ${sourceId}))`;
  await sql`delete from flow_decisions where workspace_id = ${workspaceId} and flow_id = ${flowId}`;
  await sql`delete from flow_entries where workspace_id = ${workspaceId} and flow_id = ${flowId}`;
  await sql`delete from flow_customers where workspace_id = ${workspaceId} and flow_id = ${flowId}`;
}

async function settle(sql: postgres.Sql): Promise<void> {
  await sql`truncate bench_scale_work`;
  await sql.unsafe('vacuum (analyze) flow_entries, flow_customers, flow_decisions, messages, message_queue, customer_actions, customers');
  await sql`checkpoint`;
}

// ---- main ----------------------------------------------------------------------------------------

interface Phase {
  seconds: number;
  perSecond: number;
  byWorker: Record<string, number>;
  cpu: Cpu;
}

async function main(): Promise<number> {
  const run = begin(
    'bench:scale',
    `1 API + ${WORKERS.join(', ')} worker process(es) on one PostgreSQL; flow: ${int(CUSTOMERS)} customers x ${NODES_PASSED} nodes; ` +
      `sending: ${int(MESSAGES)} emails (${CHANNEL === 'sendgrid' ? 'SendGrid mock' : 'sandbox'}) per worker count`,
  );
  if (!WORKERS.length) throw new Error('BENCH_SCALE_WORKERS names no worker count');
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp, process.env.BENCH_KEEP_DATABASE === '1');

  const sendgridKey = `SG.${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
  const [herald, sendgrid] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, noun: 'server process' }),
    CHANNEL === 'sendgrid' ? startChild(SCRIPT, 'sendgrid mock', ['--mock'], { env: { BENCH_SENDGRID_KEY: sendgridKey }, noun: 'server process' }) : undefined,
  ]);
  const mockStats = async () => (sendgrid ? ask<{ received: number; accepted: number }>(sendgrid.child, 'stats') : { received: 0, accepted: 0 });

  // ---- setup through the API: the workspace, the channels, the template, one flow per worker count ----
  const api = heraldApi(herald.url);
  const setupStarted = performance.now();
  const workspaceId = String((await api('POST', '/v1/workspaces', herald.rootToken, { name: 'bench:scale' })).id);
  await api('PATCH', `/v1/workspaces/${workspaceId}`, herald.rootToken, { settings: { allowPrivateNetworkTargets: true } });
  const apiKey = String((await api('POST', `/v1/workspaces/${workspaceId}/api-keys`, herald.rootToken, { name: 'bench', scopes: ['read', 'write'] })).token);
  const sandboxId = String((await api('POST', '/v1/channel-configs', apiKey, { name: 'Sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'hello@shop.example.com' } })).id);
  const sendConfigId = sendgrid
    ? String((await api('POST', '/v1/channel-configs', apiKey, {
      name: 'SendGrid (bench mock)', provider: 'sendgrid', settings: { fromEmail: 'hello@shop.example.com', fromName: 'Example Shop', apiBaseUrl: `http://127.0.0.1:${sendgrid.port}` }, secrets: { apiKey: sendgridKey },
    })).id)
    : sandboxId;
  const template = await api('POST', '/v1/templates', apiKey, { name: 'Welcome', channel: 'email', content: TEMPLATE });
  const templateId = String(template.id);
  const templateVersion = Number(template.currentVersion ?? template.version ?? 1);
  const flowIds: string[] = [];
  for (const n of WORKERS) {
    const created = await api('POST', '/v1/flows', apiKey, { name: `Welcome (${n} workers)`, graph: benchFlowGraph(sandboxId, templateId) });
    if (created.status !== 'ready') throw new Error(`setup: the flow is not ready: ${JSON.stringify(created.problems)}`);
    const launched = await api('POST', `/v1/flows/${String(created.id)}/launch`, apiKey);
    if (launched.status !== 'active') throw new Error(`setup: the flow did not launch: ${JSON.stringify(launched).slice(0, 300)}`);
    flowIds.push(String(created.id));
  }

  const { createDatabase } = await import('../src/db/client.ts');
  const database = createDatabase(benchUrl, { max: 4, applicationName: 'herald-bench-scale' });
  cleanups.push(() => database.close());
  const sql = database.sql;
  const { createBoss } = await import('../src/jobs/queue.ts');
  const boss: PgBoss = createBoss(benchUrl, 'api', {
    warn: (o, m) => failures.push({ what: 'bench pg-boss', detail: `${m} ${JSON.stringify(o).slice(0, 300)}` }),
    error: (o, m) => failures.push({ what: 'bench pg-boss', detail: `${m} ${String((o as { err?: Error }).err?.message ?? '')}` }),
  });
  await boss.start();
  cleanups.push(() => boss.stop({ graceful: false, close: true }));
  const { wake } = await import('../src/engine/entries.ts');
  const { enqueueMessages } = await import('../src/modules/messages/outbox.ts');
  const [{ version: flowVersion } = { version: 1 }] = await sql<{ version: number }[]>`select active_version as version from flows where workspace_id = ${workspaceId} and id = ${flowIds[0]!}`;

  let t0 = performance.now();
  await makeCustomers(sql, workspaceId, CUSTOMERS);
  await installWorkLog(sql);
  const customerIds = (await sql<{ id: string }[]>`select id from customers where workspace_id = ${workspaceId} order by id limit ${MESSAGES}`).map((r) => r.id);
  say(`setup: ${int(CUSTOMERS)} customers made in SQL in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${WORKERS.length} flows launched (database ${dbName}, PostgreSQL ${pgVersion}; ${((performance.now() - setupStarted) / 1000).toFixed(1)} s)`);

  const workers: { child: ChildProcess; applicationName: string }[] = [];
  const results: { workers: number; flow: Phase & { decisions: number; entries: number }; sending: Phase & { sent: number } }[] = [];
  const deadline = () => performance.now() + PHASE_TIMEOUT_S * 1000;

  for (const [index, n] of WORKERS.entries()) {
    while (workers.length < n) workers.push(await startHeraldWorker(SCRIPT, { benchUrl, tmp, rootToken: herald.rootToken }, workers.length + 1));
    const names = workers.map((w) => w.applicationName);
    const pids = { api: herald.child.pid!, workers: workers.map((w) => w.child.pid!), mock: sendgrid?.child.pid };
    say(`--- ${n} worker(s): ${names.join(', ')}`);

    // ---- 1. the flow ------------------------------------------------------------------------------
    const flowId = flowIds[index]!;
    t0 = performance.now();
    await sql`
      insert into flow_entries (workspace_id, id, flow_id, customer_id, version, node_id, state, wake_at, context, entered_at, updated_at)
      select c.workspace_id, herald_uuid_v7(c.at), ${flowId}::uuid, c.id, ${flowVersion}::int, 'start', 'active', c.at,
        jsonb_build_object('event', jsonb_build_object('id', gen_random_uuid(), 'type', 'signup', 'properties', jsonb_build_object('source', 'bench'), 'occurredAt', to_json(c.at))),
        c.at, c.at
      from (select workspace_id, id, now() - interval '1 hour' + row_number() over (order by id) * interval '1 microsecond' as at
            from customers where workspace_id = ${workspaceId}) c`;
    await settle(sql);
    say(`flow: ${int(CUSTOMERS)} entries due at the trigger (${((performance.now() - t0) / 1000).toFixed(1)} s); draining...`);
    // Workers may have started on the entries already (their per-minute tick, a wake-up of the
    // last phase): the rate counts only the decisions made while the clock runs.
    const decisionsNow = async () => (await sql<{ n: number }[]>`select coalesce(sum(cardinality(node_ids)), 0)::int as n from flow_decisions where workspace_id = ${workspaceId} and flow_id = ${flowId}`)[0]!.n;
    const decisionsBefore = await decisionsNow();
    let cpu = cpuMeter(pids);
    t0 = performance.now();
    let waking = true;
    const waker = (async () => {
      do {
        await wake(boss).catch((error: unknown) => failures.push({ what: 'flow wake-up', detail: String(error) }));
        await sleep(WAKE_MS);
      } while (waking && WAKE_MS > 0);
    })();
    let done = 0;
    let lastSaid = t0;
    for (const end = deadline(); ; await sleep(POLL_MS)) {
      [{ done } = { done: 0 }] = await sql<{ done: number }[]>`select count(*)::int as done from flow_entries where workspace_id = ${workspaceId} and flow_id = ${flowId} and state = 'done'`;
      if (done >= CUSTOMERS) break;
      if (performance.now() > end) {
        failures.push({ what: `flow, ${n} worker(s)`, detail: `${done} of ${CUSTOMERS} entries done after ${PHASE_TIMEOUT_S} s (BENCH_SCALE_TIMEOUT)` });
        break;
      }
      if (performance.now() - lastSaid > 10_000) {
        lastSaid = performance.now();
        say(`  ... ${int(done)} entries done in ${((lastSaid - t0) / 1000).toFixed(0)} s`);
      }
    }
    const flowSeconds = (performance.now() - t0) / 1000;
    waking = false;
    await waker;
    const flowCpu = cpu();
    const [counts = { decisions: 0, twice: 0, entries: 0 }] = await sql<{ decisions: number; twice: number; entries: number }[]>`
      select count(*)::int as decisions, (count(*) - count(distinct (entry_id, node_id)))::int as twice, count(distinct entry_id)::int as entries
      from flow_decision_list where workspace_id = ${workspaceId} and flow_id = ${flowId}`;
    if (counts.twice || counts.decisions !== CUSTOMERS * NODES_PASSED) failures.push({ what: `flow, ${n} worker(s)`, detail: `${counts.decisions} decisions (expected ${CUSTOMERS * NODES_PASSED}), ${counts.twice} (entry, node) pairs twice` });
    const flow = { seconds: round3(flowSeconds), perSecond: Math.round((counts.decisions - decisionsBefore) / flowSeconds), decisions: counts.decisions, decisionsBefore, entries: counts.entries, byWorker: await workByApp(sql, 'decisions'), cpu: flowCpu };
    say(`  ${int(flow.perSecond)} customer-steps/s (${flowSeconds.toFixed(1)} s; ${int(decisionsBefore)} decisions made before the clock started); decisions by worker: ${share(flow.byWorker)}; CPU cores: workers ${flowCpu.workers.join(' + ')}, PostgreSQL ${flowCpu.postgres}, API ${flowCpu.api} (machine ${percent(flowCpu.machineBusy)} busy)`);

    // The flow's emails (sandbox) are sent by now or soon: the outbox is drained before the send phase.
    for (const end = deadline(); ; await sleep(500)) {
      const [{ open } = { open: 0 }] = await sql<{ open: number }[]>`select count(*)::int as open from messages where workspace_id = ${workspaceId} and status in ('queued', 'sending')`;
      if (!open) break;
      if (performance.now() > end) throw new Error(`the flow's emails were still not sent after ${PHASE_TIMEOUT_S} s: ${open} open`);
    }

    // ---- 2. sending ---------------------------------------------------------------------------------
    await settle(sql);
    const sourceId = `bench-scale-${n}`;
    const before = await mockStats();
    cpu = cpuMeter(pids);
    let firstCommit: number | undefined;
    const enqueue = (async () => {
      for (let from = 0; from < MESSAGES; from += ENQUEUE_BATCH) {
        const rows = customerIds.slice(from, from + ENQUEUE_BATCH).map((customerId) => ({
          workspaceId, customerId, channel: 'email', channelConfigId: sendConfigId, templateId, templateVersion, sourceType: 'action', sourceId, event: { type: 'bench' },
        }));
        await sql.begin((tx) => enqueueMessages(tx, boss, rows, new Date()));
        firstCommit ??= performance.now();
      }
    })();
    const enqueueFailed = enqueue.then(() => new Promise<never>(() => {}));
    while (firstCommit === undefined) await Promise.race([sleep(5), enqueueFailed]);
    let ended = 0;
    let sent = 0;
    for (const end = deadline(); ; await Promise.race([sleep(POLL_MS), enqueueFailed])) {
      [{ ended, sent } = { ended: 0, sent: 0 }] = await sql<{ ended: number; sent: number }[]>`
        select count(*) filter (where status not in ('queued', 'sending'))::int as ended, count(*) filter (where status = 'sent')::int as sent
        from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId}`;
      if (ended >= MESSAGES) break;
      if (performance.now() > end) {
        failures.push({ what: `sending, ${n} worker(s)`, detail: `${ended} of ${MESSAGES} messages ended after ${PHASE_TIMEOUT_S} s (BENCH_SCALE_TIMEOUT)` });
        break;
      }
    }
    const sendSeconds = (performance.now() - firstCommit) / 1000;
    await enqueue;
    const sendCpu = cpu();
    const after = await mockStats();
    const calls = await workByApp(sql, 'calls');
    const called = Object.values(calls).reduce((a, b) => a + b, 0);
    if (sent !== MESSAGES || called !== sent) {
      const statuses = await sql<{ status: string; reason: string | null; n: number }[]>`
        select status, reason, count(*)::int as n from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} group by 1, 2 order by 3 desc`;
      failures.push({ what: `sending, ${n} worker(s)`, detail: `${sent} of ${MESSAGES} sent, ${called} provider calls (expected one per message sent); statuses: ${statuses.map((s) => `${s.status}${s.reason ? ` (${s.reason})` : ''} x${s.n}`).join(', ')}` });
    }
    if (sendgrid && (after.accepted - before.accepted !== sent || after.received - before.received !== sent)) {
      failures.push({ what: `sending, ${n} worker(s)`, detail: `the mock received ${after.received - before.received} and accepted ${after.accepted - before.accepted} requests for ${sent} messages sent (expected exactly one each)` });
    }
    const sending = { seconds: round3(sendSeconds), perSecond: Math.round(sent / sendSeconds), sent, byWorker: calls, cpu: sendCpu };
    say(`sending: ${int(sending.perSecond)} emails/s (${int(sent)} in ${sendSeconds.toFixed(1)} s); provider calls by worker: ${share(calls)}; CPU cores: workers ${sendCpu.workers.join(' + ')}, PostgreSQL ${sendCpu.postgres}${sendCpu.mock === null ? '' : `, mock ${sendCpu.mock}`} (machine ${percent(sendCpu.machineBusy)} busy)`);
    for (const [what, byWorker] of [['flow', flow.byWorker], ['sending', calls]] as const) {
      const strangers = Object.keys(byWorker).filter((app) => !names.includes(app));
      const idle = names.filter((app) => !byWorker[app]);
      if (strangers.length) failures.push({ what: `${what}, ${n} worker(s)`, detail: `work done by other sessions: ${strangers.join(', ')}` });
      if (idle.length) say(`  note: ${idle.join(', ')} did none of the ${what} work`);
    }
    results.push({ workers: n, flow, sending });
    t0 = performance.now();
    await clearPhase(sql, workspaceId, flowId, sourceId);
    say(`(this worker count's rows deleted in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }

  // ---- the report -------------------------------------------------------------------------------
  const base = results[0]!;
  const x = (v: number, b: number) => `${(v / b).toFixed(2)}x`;
  say('');
  say(table([
    [`bench:scale (node ${process.version}, ${run.cores} cores)`, 'flow customer-steps/s', `vs ${base.workers}`, 'emails/s', `vs ${base.workers}`, 'decisions by worker', 'sends by worker'],
    ...results.map((r) => [
      `${r.workers} worker${r.workers > 1 ? 's' : ''} + 1 API`, int(r.flow.perSecond), x(r.flow.perSecond, base.flow.perSecond), int(r.sending.perSecond), x(r.sending.perSecond, base.sending.perSecond), share(r.flow.byWorker), share(r.sending.byWorker),
    ]),
  ], [0, 5, 6]));
  say(`the ideal is N x; ${availableParallelism()} cores are shared by the API, the workers, PostgreSQL${sendgrid ? ', the mock' : ''} and this process`);
  sayErrorTotals(failures.length > 0);

  writeReport('scale.json', { ...run, pgVersion }, {
    settings: { customers: CUSTOMERS, messages: MESSAGES, workers: WORKERS, channel: CHANNEL, wakeMs: WAKE_MS, enqueueBatch: ENQUEUE_BATCH, nodesPassed: NODES_PASSED, flow: benchFlowGraph('<sandbox>', '<template>') },
    flow: {
      unit: 'customer-steps/s (flow decisions per second)',
      byWorkers: results.map((r) => ({ workers: r.workers, figure: r.flow.perSecond, vsOne: round3(r.flow.perSecond / base.flow.perSecond), ...r.flow })),
    },
    sending: {
      unit: 'emails/s',
      provider: CHANNEL === 'sendgrid' ? 'SendGrid mock (own process, record: false)' : 'sandbox (no provider call)',
      byWorkers: results.map((r) => ({ workers: r.workers, figure: r.sending.perSecond, vsOne: round3(r.sending.perSecond / base.sending.perSecond), ...r.sending })),
    },
  });
  return failures.length ? 1 : 0;
}

/** "herald-worker-1 52%, herald-worker-2 48%" */
function share(byApp: Record<string, number>): string {
  const total = Object.values(byApp).reduce((a, b) => a + b, 0);
  return Object.entries(byApp).map(([app, n]) => `${app.replace('herald-worker-', 'w')} ${percent(n / total)}`).join(', ') || 'none';
}

const mode = process.argv[2];
if (mode === '--serve') await serveHerald({ HERALD_ROLE: 'api' });
else if (mode === '--serve-worker') await serveHerald({ HERALD_ROLE: 'worker' });
else if (mode === '--mock') await mock();
else await runBench('bench:scale', main);
