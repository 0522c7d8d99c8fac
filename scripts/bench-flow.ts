// npm run bench:flow — the flow engine (src/engine) against two ceilings measured in the same run on
// the same machine, and the latency from an event to a flow's first step:
//   1. throughput: BENCH_CUSTOMERS (1,000,000) customers enter a flow whose trigger is the event
//      "signup": event_trigger -> condition (custom.plan exists) -> wait (fixed, 0 minutes: it
//      collapses, the entry goes on in the same tick) -> steps (one email through a SendGrid
//      channel config pointing at the local SendGrid mock) -> splitter (percent, 50/50) -> exit
//      (one exit per branch). The customers are generated in SQL, and their entries are put due at
//      the trigger node with one INSERT ... SELECT: the rows the ingest hook (src/engine/entries.ts)
//      would insert, context { event: { id, type, properties, occurredAt } }. Then the engine
//      drains them, timed: `tick(deps)` (DEFAULT_BATCH entries per transaction) in a loop until a
//      tick claims nothing, in 1 and in 2 parallel loops (what drainFlows does, and what the
//      flow-tick job runs: LOOPS drainFlows at once), in this process, with Herald's own database
//      client and pg-boss setup (createDatabase, createBoss in the api role: no workers).
//      customer-steps = decisions written to flow_decisions, counted after the run: one per node an
//      entry passes, the exit node included (trigger, condition, wait, steps, splitter, exit: 6 per
//      customer here). Entries/s is printed too (customer-steps/s = 6 x entries/s).
//      The send workers are kept out of it: the engine's step is to queue the message in the
//      outbox (messages), in the tick's transaction; sending is what bench:send measures. No Herald
//      process runs during this phase, so the engine and its two ceilings have the machine alike.
//      Ceilings, same process, same database, same loop counts, each on 1,000,000 rows made ready
//      first (untimed):
//      (a) pg-boss 12: fetch (batchSize 500) + complete(ids) until the queue is empty (jobs/s);
//          the jobs are inserted first with insert() in batches;
//      (b) raw SQL: a table (id, state, wake_at) with a partial index on the due rows like
//          flow_entries_due_idx; one statement claims 5000 due rows with FOR UPDATE SKIP LOCKED and
//          advances them (state, wake_at), until none is due (rows/s).
//      Before each timed part the tables it touches are vacuumed and analyzed (what autovacuum would
//      have done) and a CHECKPOINT flushes what the preparation wrote. Targets: customer-steps/s at
//      least 3x the pg-boss figure, and at least 40% of the raw SQL figure (the best loop count of
//      each against the best of each ceiling).
//   2. latency: Herald in a child process (HERALD_ROLE=all: its flow-tick and send workers run, the
//      emails go to the SendGrid mock, another child) and the same flow in another workspace;
//      BENCH_EVENTS_PER_S (200) events/s, one event per POST /v1/events, open loop (sent on
//      schedule whatever the answers), each for a customer who has not entered the flow yet
//      (made beforehand with an email and a plan), for BENCH_LATENCY_SECONDS (30) after a 3 s
//      warm-up. Latency = from the moment the POST was sent to the moment the flow's first step
//      (the queued email, written by the steps node in the tick's transaction) is visible to a
//      reader: the bench polls the outbox every 20 ms for the customers still waiting (so the
//      figure is at most ~20 ms late). Also reported: the same from the engine's clock (the steps
//      node's flow_decisions.at, which is the tick's start, so an underestimate), and the POST's
//      own latency. No target is set for it.
// The latency phase runs first, on a database that already holds every customer; its Herald is
// stopped before the throughput phase.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or, with neither
// set, on an embedded PostgreSQL started in a temporary directory; dropped at the end.
// Settings (environment): BENCH_CUSTOMERS (1000000), BENCH_EVENTS_PER_S (200),
// BENCH_LATENCY_SECONDS (30), BENCH_LOOPS (1,2: the loop counts tried), BENCH_DRAIN_TIMEOUT (1800 s
// per drain), BENCH_PROFILE=1 (a V8 CPU profile of this process during each engine drain, in
// bench/profiles/, with its top self times), BENCH_KEEP_DATABASE=1 (keep the database).
// Exit status: 0 when the runs were clean (even when a target is missed: this is a measurement),
// 1 when a request failed, an entry did not finish, counts differ, or the setup failed.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { machineCpu, procCpu } from './bench-proc.ts';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { PgBoss } from 'pg-boss';
import type postgres from 'postgres';
import { int, ms, percent, round3, selfTime, table, verdict, type CpuProfile } from './bench-lib.ts';
import {
  announce, begin, benchDatabase, cleanups, failures, heraldApi, positive, runBench, say, sayErrorTotals, serveHerald, startChild, startHerald, benchFlowGraph, stopChild, tempDir, totals, writeReport,
} from './bench-harness.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const CUSTOMERS = positive(process.env.BENCH_CUSTOMERS, 1_000_000);
const EVENTS_PER_S = positive(process.env.BENCH_EVENTS_PER_S, 200);
const LATENCY_SECONDS = positive(process.env.BENCH_LATENCY_SECONDS, 30);
const LATENCY_WARMUP_SECONDS = 3;
const LOOPS = [...new Set((process.env.BENCH_LOOPS ?? '1,2').split(',').map(Number).filter((n) => Number.isInteger(n) && n > 0 && n <= 8))].sort();
const DRAIN_TIMEOUT_S = positive(process.env.BENCH_DRAIN_TIMEOUT, 1800);
const PROFILE = process.env.BENCH_PROFILE === '1';
const BOSS_BATCH = 500;
const BOSS_INSERT_BATCH = 5000;
const RAW_BATCH = 5000;
const POLL_MS = 20;
/** How long the latency phase waits for the last customers (the flow-tick cron, every minute, is the engine's floor). */
const LATE_WAIT_S = 150;
const TARGET_BOSS = 3;
const TARGET_RAW = 0.4;
/** Nodes each customer passes in the bench's flow (one decision each). */
const NODES_PASSED = 6;

// ---- child modes -------------------------------------------------------------------------------

/** The SendGrid mock, counting only. */
async function mock(): Promise<void> {
  const { startSendGridMock } = await import('../test/mocks/sendgrid.ts');
  const sendgrid = await startSendGridMock({ apiKey: process.env.BENCH_SENDGRID_KEY!, record: false });
  await announce(sendgrid.server.address(), () => sendgrid.close(), { stats: () => ({ ...sendgrid.counts }) });
}

// ---- small helpers -----------------------------------------------------------------------------

/** Wall-clock milliseconds with a fraction (the same clock as PostgreSQL's and Herald's on this machine). */
const wallNow = () => performance.timeOrigin + performance.now();
const seconds = (t0: number) => (performance.now() - t0) / 1000;
const round1 = (n: number) => Math.round(n * 10) / 10;

/** The nearest-rank percentile of sorted values. */
function pct(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 10) / 10;
  return { n: sorted.length, p50: r(pct(sorted, 50)), p90: r(pct(sorted, 90)), p99: r(pct(sorted, 99)), max: r(sorted[sorted.length - 1] ?? Number.NaN), mean: r(sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1)) };
}

// CPU over a measurement, from /proc (Linux): this process, this database's backends (those alive at
// the start and the end), and how busy the machine was (others' work included).
async function cpuMeter(sql: postgres.Sql, dbName: string) {
  const backends = async () => (await sql<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${dbName} and backend_type = 'client backend'`).map((r) => r.pid);
  const startPids = await backends();
  const start = { at: performance.now(), self: process.cpuUsage(), pg: new Map(startPids.map((p) => [p, procCpu(p)])), machine: machineCpu() };
  return async () => {
    const elapsed = seconds(start.at);
    const self = process.cpuUsage(start.self);
    let pg = 0;
    for (const pid of await backends()) {
      const now = procCpu(pid);
      if (Number.isFinite(now)) pg += now - (start.pg.get(pid) ?? 0);
    }
    const machine = machineCpu();
    const benchCores = (self.user + self.system) / 1e6 / elapsed;
    const postgresCores = pg / elapsed;
    const machineBusy = (machine.busy - start.machine.busy) / (machine.total - start.machine.total);
    return {
      benchCores: Math.round(benchCores * 100) / 100,
      postgresCores: Math.round(postgresCores * 100) / 100,
      machineBusy: round3(machineBusy),
      /** Cores busy with anything else (other processes on the machine, PostgreSQL's background processes). */
      otherCores: Math.round(Math.max(0, machineBusy * availableParallelism() - benchCores - postgresCores) * 100) / 100,
    };
  };
}
type Cpu = Awaited<ReturnType<Awaited<ReturnType<typeof cpuMeter>>>>;
const describeCpu = (c: Cpu) => `CPU: bench process ${c.benchCores} cores, PostgreSQL backends ${c.postgresCores}, anything else ${c.otherCores} (machine ${percent(c.machineBusy)} busy)`;

// ---- the flow ----------------------------------------------------------------------------------

const STEPS_NODE = 'welcome';

/** Customers <prefix>0 .. <prefix><n - 1> made in SQL: time-ordered ids (UUID v7 layout), an email, a plan and a first name. */
async function makeCustomers(sql: postgres.Sql, workspaceId: string, prefix: string, n: number): Promise<void> {
  const base = Date.now() - n - 60_000;
  const hex = `md5('${prefix}' || n)`;
  await sql.unsafe(`
    insert into customers (workspace_id, id, external_id, email, custom, created_at, updated_at)
    select $1::uuid, (lpad(to_hex($2::bigint + n), 12, '0') || '7' || substr(${hex}, 1, 3) || '8' || substr(${hex}, 4, 15))::uuid,
      '${prefix}' || n, '${prefix}' || n || '@bench.example.com',
      jsonb_build_object('plan', (array['free', 'pro', 'team'])[1 + n % 3], 'first_name', (array['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Radia'])[1 + n % 6]),
      to_timestamp(($2::bigint + n) / 1000.0), to_timestamp(($2::bigint + n) / 1000.0)
    from generate_series(0, $3::int - 1) n`, [workspaceId, base, n]);
}

/** Settles the database before a timed part: vacuum and analyze what it touches, then flush what the preparation wrote. */
async function settle(sql: postgres.Sql, tables: string[]): Promise<void> {
  await sql.unsafe(`vacuum (analyze) ${tables.join(', ')}`);
  await sql`checkpoint`;
}

// ---- the bench ---------------------------------------------------------------------------------

interface LatencyRecord {
  n: number;
  sentAt: number;
  respondedAt: number;
  customerId: string;
  /** The start of the poll that first saw the email, and of the last one that looked for it in vain (or the POST's start). */
  seenAt?: number;
  notSeenAt?: number;
}

interface Drain {
  loops: number;
  seconds: number;
  entries: number;
  decisions: number;
  customerStepsPerSecond: number;
  entriesPerSecond: number;
  ticks: number;
  tickMs: ReturnType<typeof summary>;
  firstTicksMs: number;
  lastTicksMs: number;
  cpu: Cpu;
  profile?: { file: string; top: { name: string; ms: number; share: number }[] } | undefined;
}

interface Ceiling {
  loops: number;
  seconds: number;
  rows: number;
  perSecond: number;
  cpu: Cpu;
}

async function main(): Promise<number> {
  const run = begin(
    'bench:flow',
    `throughput: ${int(CUSTOMERS)} customers through trigger -> condition -> wait (collapsed) -> email -> splitter -> exit, ${LOOPS.join(' and ')} loop(s), ` +
      `vs pg-boss fetch+complete (batches of ${BOSS_BATCH}) and raw SQL claim-and-advance (batches of ${RAW_BATCH}); ` +
      `latency: ${EVENTS_PER_S} events/s for ${LATENCY_SECONDS} s after a ${LATENCY_WARMUP_SECONDS} s warm-up`,
  );
  if (!LOOPS.length) throw new Error('BENCH_LOOPS names no loop count');
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp, process.env.BENCH_KEEP_DATABASE === '1');

  // ---- setup: Herald (all roles), the SendGrid mock, two workspaces with the flow ----------------
  const sendgridKey = `SG.${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
  const [herald, sendgrid] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, noun: 'server process' }),
    startChild(SCRIPT, 'sendgrid mock', ['--mock'], { env: { BENCH_SENDGRID_KEY: sendgridKey }, noun: 'server process' }),
  ]);
  const mockUrl = `http://127.0.0.1:${sendgrid.port}`;
  const api = heraldApi(herald.url);
  const setupStarted = performance.now();
  const makeWorkspace = async (name: string, flows: number) => {
    const workspaceId = String((await api('POST', '/v1/workspaces', herald.rootToken, { name })).id);
    // The mock listens on 127.0.0.1, which the SSRF guard refuses unless the workspace allows it.
    await api('PATCH', `/v1/workspaces/${workspaceId}`, herald.rootToken, { settings: { allowPrivateNetworkTargets: true } });
    const apiKey = String((await api('POST', `/v1/workspaces/${workspaceId}/api-keys`, herald.rootToken, { name: 'bench', scopes: ['read', 'write'] })).token);
    const config = await api('POST', '/v1/channel-configs', apiKey, {
      name: 'SendGrid (bench mock)', provider: 'sendgrid', settings: { fromEmail: 'hello@shop.example.com', fromName: 'Example Shop', apiBaseUrl: mockUrl }, secrets: { apiKey: sendgridKey },
    });
    const template = await api('POST', '/v1/templates', apiKey, {
      name: 'Welcome', channel: 'email',
      content: {
        subject: 'Welcome, {{ customer.first_name | default: "there" }}',
        html: '<p>Hi {{ customer.first_name | default: "there" }}, welcome to the {{ customer.plan }} plan.</p><p><a href="https://shop.example.com/start">Get started</a></p>',
        text: 'Hi {{ customer.first_name | default: "there" }}, welcome to the {{ customer.plan }} plan: https://shop.example.com/start',
      },
    });
    const graph = benchFlowGraph(String(config.id), String(template.id));
    const flowIds: string[] = [];
    for (let i = 0; i < flows; i++) {
      const created = await api('POST', '/v1/flows', apiKey, { name: `Welcome ${i + 1}`, graph });
      if (created.status !== 'ready') throw new Error(`setup: the flow is not ready: ${JSON.stringify(created.problems)}`);
      const launched = await api('POST', `/v1/flows/${String(created.id)}/launch`, apiKey);
      if (launched.status !== 'active') throw new Error(`setup: the flow did not launch: ${JSON.stringify(launched).slice(0, 300)}`);
      flowIds.push(String(created.id));
    }
    return { workspaceId, apiKey, flowIds };
  };
  const latencyWs = await makeWorkspace('bench:flow latency', 1);
  const throughputWs = await makeWorkspace('bench:flow throughput', LOOPS.length);

  // Herald's own client setup, for the bench's queries and (phase 2) the engine.
  const { createDatabase } = await import('../src/db/client.ts');
  const database = createDatabase(benchUrl, { max: 20, applicationName: 'herald-bench-flow' });
  cleanups.push(() => database.close());
  const sql = database.sql;
  const [server] = await sql<{ shared_buffers: string; autovacuum: string; synchronous_commit: string }[]>`
    select current_setting('shared_buffers') as shared_buffers, current_setting('autovacuum') as autovacuum, current_setting('synchronous_commit') as synchronous_commit`;

  // Triggers on the tables a tick writes (the migrations of the checkout at hand): they weigh on the engine.
  const triggers = (await sql<{ name: string }[]>`
    select c.relname || '.' || t.tgname as name from pg_trigger t join pg_class c on c.oid = t.tgrelid
    where not t.tgisinternal and c.relname in ('flow_entries', 'flow_decisions', 'flow_customers', 'messages', 'customers') order by 1`).map((r) => r.name);
  const latencyEvents = EVENTS_PER_S * (LATENCY_SECONDS + LATENCY_WARMUP_SECONDS);
  let t0 = performance.now();
  await makeCustomers(sql, latencyWs.workspaceId, 'l', latencyEvents);
  await makeCustomers(sql, throughputWs.workspaceId, 'c', CUSTOMERS);
  const customersSeconds = seconds(t0);
  await settle(sql, ['customers']);
  say(
    `setup: 2 workspaces, the flow launched (database ${dbName}, PostgreSQL ${pgVersion}; shared_buffers ${server?.shared_buffers}, autovacuum ${server?.autovacuum}, ` +
      `synchronous_commit ${server?.synchronous_commit}; triggers: ${triggers.join(', ') || 'none'}); ${int(CUSTOMERS + latencyEvents)} customers made in SQL in ${customersSeconds.toFixed(1)} s (${seconds(setupStarted).toFixed(1)} s in all)`,
  );

  // ---- 1. latency: events at a steady rate into a running Herald ----------------------------------
  say(`latency: ${EVENTS_PER_S} events/s for ${LATENCY_WARMUP_SECONDS + LATENCY_SECONDS} s (the first ${LATENCY_WARMUP_SECONDS} s a warm-up)...`);
  const latencyFlow = latencyWs.flowIds[0]!;
  const headers = { authorization: `Bearer ${latencyWs.apiKey}`, 'content-type': 'application/json' };
  const pending = new Map<string, LatencyRecord>();
  const records: LatencyRecord[] = [];
  let requestErrors = 0;
  const post = async (n: number) => {
    const sentAt = wallNow();
    totals.requests++;
    try {
      const response = await fetch(`${herald.url}/v1/events`, { method: 'POST', headers, body: JSON.stringify({ externalId: `l${n}`, type: 'signup', properties: { source: 'bench', n } }) });
      const respondedAt = wallNow();
      const text = await response.text();
      if (response.status !== 200) {
        totals.non2xx++;
        if (requestErrors++ < 3) failures.push({ what: 'latency: POST /v1/events', detail: `${response.status}: ${text.slice(0, 300)}` });
        return;
      }
      const customerId = (JSON.parse(text) as { events: { customerId: string }[] }).events[0]!.customerId;
      const record: LatencyRecord = { n, sentAt, respondedAt, customerId };
      records.push(record);
      pending.set(customerId, record);
    } catch (error) {
      totals.connectionErrors++;
      if (requestErrors++ < 3) failures.push({ what: 'latency: POST /v1/events', detail: error instanceof Error ? error.message : String(error) });
    }
  };
  // The poller: which of the waiting customers have their email queued (the outbox's unique index
  // (workspace, source type, source, customer, ...) answers it).
  let polling = true;
  const pollTimes: number[] = [];
  const poller = (async () => {
    while (polling) {
      const at = wallNow();
      const ids = [...pending.keys()];
      if (ids.length) {
        const rows = await sql<{ customer_id: string }[]>`
          select customer_id from messages where workspace_id = ${latencyWs.workspaceId} and source_type = 'flow' and source_id = ${latencyFlow} and customer_id = any(${ids}::uuid[])`;
        for (const { customer_id } of rows) {
          const record = pending.get(customer_id);
          if (record) {
            record.seenAt = at;
            record.notSeenAt ??= record.sentAt;
            pending.delete(customer_id);
          }
        }
        for (const id of ids) {
          const record = pending.get(id);
          if (record) record.notSeenAt = at;
        }
        pollTimes.push(wallNow() - at);
      }
      await sleep(Math.max(1, POLL_MS - (wallNow() - at)));
    }
  })();
  const heraldCpu = procCpu(herald.child.pid!);
  const latencyCpu = await cpuMeter(sql, dbName);
  const inflight = new Set<Promise<void>>();
  const started = wallNow();
  let sent = 0;
  let maxBehind = 0;
  while (sent < latencyEvents) {
    const due = started + (sent * 1000) / EVENTS_PER_S;
    const wait = due - wallNow();
    if (wait > 1) await sleep(wait);
    // Every event that is due goes now (a late timer sends the ones it missed at once).
    for (let now = wallNow(); sent < latencyEvents && started + (sent * 1000) / EVENTS_PER_S <= now; sent++) {
      maxBehind = Math.max(maxBehind, now - (started + (sent * 1000) / EVENTS_PER_S));
      const p = post(sent);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
  }
  const sendSeconds = (wallNow() - started) / 1000;
  await Promise.all(inflight);
  for (const deadline = Date.now() + LATE_WAIT_S * 1000; pending.size && Date.now() < deadline; ) await sleep(50);
  polling = false;
  await poller;
  const latencyCpuUse = await latencyCpu();
  const heraldCores = Math.round(((procCpu(herald.child.pid!) - heraldCpu) / ((wallNow() - started) / 1000)) * 100) / 100;
  if (pending.size) failures.push({ what: 'latency', detail: `${pending.size} customers never reached the first step within ${LATE_WAIT_S} s of the last event` });

  // The engine's own clock for the same step, and the emails' fate (the send workers ran meanwhile).
  const decisionAt = new Map(
    (await sql<{ customer_id: string; at: Date }[]>`
      select customer_id, at from flow_decisions where workspace_id = ${latencyWs.workspaceId} and flow_id = ${latencyFlow} and ${STEPS_NODE} = any(node_ids)`).map((r) => [r.customer_id, r.at.getTime()]),
  );
  const warmupCount = EVENTS_PER_S * LATENCY_WARMUP_SECONDS;
  const measured = records.filter((r) => r.n >= warmupCount && r.seenAt !== undefined);
  const latency = summary(measured.map((r) => r.seenAt! - r.sentAt));
  const latencyFromAnswer = summary(measured.map((r) => r.seenAt! - r.respondedAt));
  // The same to the last poll that did not see the email yet: the true latency lies between the two.
  const latencyLowerBound = summary(measured.map((r) => r.notSeenAt! - r.sentAt));
  // Customers whose first step took over a second (all events, the warm-up included): when and how long.
  const late = records.filter((r) => r.seenAt === undefined || r.seenAt - r.sentAt > 1000)
    .map((r) => ({ n: r.n, customerId: r.customerId, sentAt: new Date(r.sentAt).toISOString(), ms: r.seenAt === undefined ? null : Math.round(r.seenAt - r.sentAt) }));
  const engineClock = summary(measured.filter((r) => decisionAt.has(r.customerId)).map((r) => decisionAt.get(r.customerId)! - r.sentAt));
  const postLatency = summary(records.filter((r) => r.n >= warmupCount).map((r) => r.respondedAt - r.sentAt));
  if (decisionAt.size !== records.length) failures.push({ what: 'latency', detail: `${records.length} events accepted, ${decisionAt.size} steps decisions` });
  let statuses: { status: string; n: number }[] = [];
  for (const deadline = Date.now() + 60_000; ; await sleep(500)) {
    statuses = await sql<{ status: string; n: number }[]>`
      select status, count(*)::int as n from messages where workspace_id = ${latencyWs.workspaceId} and source_id = ${latencyFlow} group by 1 order by 1`;
    if (!statuses.some((s) => s.status === 'queued' || s.status === 'sending') || Date.now() > deadline) break;
  }
  const sentEmails = statuses.find((s) => s.status === 'sent')?.n ?? 0;
  if (sentEmails !== records.length) failures.push({ what: 'latency: sending', detail: `${records.length} emails queued, ${sentEmails} sent: ${JSON.stringify(statuses)}` });
  say(
    `  ${int(records.length)} events accepted (${(sent / sendSeconds).toFixed(1)} events/s sent, at most ${ms(maxBehind)} behind schedule); ` +
      `event -> first step (${int(latency.n)} measured): p50 ${ms(latency.p50)}, p90 ${ms(latency.p90)}, p99 ${ms(latency.p99)}, max ${ms(latency.max)}`,
  );
  say(
    `  lower bound (the last poll that did not see it): p50 ${ms(latencyLowerBound.p50)}, p99 ${ms(latencyLowerBound.p99)}; from the POST's answer: p50 ${ms(latencyFromAnswer.p50)}, p99 ${ms(latencyFromAnswer.p99)}; engine clock (tick start): p50 ${ms(engineClock.p50)}, p99 ${ms(engineClock.p99)}; ` +
      `POST: p50 ${ms(postLatency.p50)}, p99 ${ms(postLatency.p99)}; poll ${ms(summary(pollTimes).p50)} (p50); emails: ${statuses.map((s) => `${int(s.n)} ${s.status}`).join(', ')}`,
  );
  if (late.length) say(`  over 1 s: ${late.length} customer(s): ${late.slice(0, 5).map((l) => `#${l.n} ${l.ms === null ? 'never' : ms(l.ms)}`).join(', ')}`);
  say(`  Herald ${heraldCores} cores; ${describeCpu(latencyCpuUse)}`);

  // The rest runs with no Herald process: the engine is driven from here.
  await Promise.all([stopChild(herald.child, 'herald'), stopChild(sendgrid.child, 'sendgrid mock')]);

  // ---- 2. throughput: the engine and its ceilings, per loop count ---------------------------------
  const { createBoss, BOSS_SCHEMA } = await import('../src/jobs/queue.ts');
  const { systemClock } = await import('../src/deps.ts');
  const { tick, DEFAULT_BATCH } = await import('../src/engine/engine.ts');
  const boss: PgBoss = createBoss(benchUrl, 'api', {
    warn: (o, m) => failures.push({ what: 'bench pg-boss', detail: `${m} ${JSON.stringify(o).slice(0, 300)}` }),
    error: (o, m) => failures.push({ what: 'bench pg-boss', detail: `${m} ${String((o as { err?: Error }).err?.message ?? '')}` }),
  });
  await boss.start();
  cleanups.push(() => boss.stop({ graceful: false, close: true }));
  const deps = { database, boss, clock: systemClock };
  const [{ version: flowVersion } = { version: 1 }] = await sql<{ version: number }[]>`
    select active_version as version from flows where workspace_id = ${throughputWs.workspaceId} and id = ${throughputWs.flowIds[0]!}`;

  await sql`create table bench_claim (id bigint primary key, state text not null, wake_at timestamptz not null)`;
  await sql`create index bench_claim_due_idx on bench_claim (wake_at) where state = 'active'`;

  const profileDir = resolve('bench', 'profiles');
  if (PROFILE) mkdirSync(profileDir, { recursive: true });
  const drains: Drain[] = [];
  const bossRuns: Ceiling[] = [];
  const rawRuns: Ceiling[] = [];

  for (const [index, loops] of LOOPS.entries()) {
    // (b) raw SQL claim-and-advance.
    say(`raw SQL, ${loops} loop(s): preparing ${int(CUSTOMERS)} rows...`);
    await sql`truncate bench_claim`;
    await sql`insert into bench_claim select n, 'active', now() - interval '1 hour' + n * interval '1 microsecond' from generate_series(1, ${CUSTOMERS}::int) n`;
    await settle(sql, ['bench_claim']);
    let cpu = await cpuMeter(sql, dbName);
    t0 = performance.now();
    const rawCounts = await Promise.all(Array.from({ length: loops }, async () => {
      let n = 0;
      for (;;) {
        const r = await sql`
          with due as (select id from bench_claim where state = 'active' and wake_at <= now() order by wake_at limit ${RAW_BATCH} for update skip locked)
          update bench_claim b set state = 'done', wake_at = now() from due where b.id = due.id`;
        if (!r.count) return n;
        n += r.count;
      }
    }));
    const raw = { loops, seconds: seconds(t0), rows: rawCounts.reduce((a, b) => a + b, 0), perSecond: 0, cpu: await cpu() };
    raw.perSecond = raw.rows / raw.seconds;
    rawRuns.push(raw);
    const [{ left } = { left: -1 }] = await sql<{ left: number }[]>`select count(*)::int as left from bench_claim where state = 'active'`;
    if (raw.rows !== CUSTOMERS || left !== 0) failures.push({ what: `raw SQL, ${loops} loop(s)`, detail: `advanced ${raw.rows} rows of ${CUSTOMERS}, ${left} left due` });
    say(`  ${int(raw.perSecond)} rows/s (${raw.seconds.toFixed(1)} s); ${describeCpu(raw.cpu)}`);

    // (a) pg-boss fetch + complete.
    say(`pg-boss, ${loops} loop(s): inserting ${int(CUSTOMERS)} jobs...`);
    const queue = `bench-ceiling-${loops}`;
    await boss.createQueue(queue);
    t0 = performance.now();
    for (let from = 0; from < CUSTOMERS; from += BOSS_INSERT_BATCH * 2) {
      await Promise.all([0, 1].map((k) => {
        const start = from + k * BOSS_INSERT_BATCH;
        const count = Math.min(BOSS_INSERT_BATCH, CUSTOMERS - start);
        return count > 0 ? boss.insert(queue, Array.from({ length: count }, (_, i) => ({ data: { n: start + i } }))) : undefined;
      }));
    }
    const insertSeconds = seconds(t0);
    const [queueRow] = await sql<{ table_name: string }[]>`select table_name from ${sql(BOSS_SCHEMA)}.queue where name = ${queue}`;
    const jobTable = `${BOSS_SCHEMA}.${queueRow?.table_name ?? 'job'}`;
    await settle(sql, [jobTable]);
    cpu = await cpuMeter(sql, dbName);
    t0 = performance.now();
    const bossCounts = await Promise.all(Array.from({ length: loops }, async () => {
      let n = 0;
      for (;;) {
        const jobs = await boss.fetch(queue, { batchSize: BOSS_BATCH });
        if (!jobs.length) return n;
        await boss.complete(queue, jobs.map((j) => j.id));
        n += jobs.length;
      }
    }));
    const bossRun = { loops, seconds: seconds(t0), rows: bossCounts.reduce((a, b) => a + b, 0), perSecond: 0, cpu: await cpu() };
    bossRun.perSecond = bossRun.rows / bossRun.seconds;
    bossRuns.push(bossRun);
    const [{ completed } = { completed: -1 }] = await sql.unsafe<{ completed: number }[]>(`select count(*)::int as completed from ${jobTable} where name = $1 and state = 'completed'`, [queue]);
    if (bossRun.rows !== CUSTOMERS || completed !== CUSTOMERS) failures.push({ what: `pg-boss, ${loops} loop(s)`, detail: `fetched ${bossRun.rows} jobs of ${CUSTOMERS}, ${completed} completed` });
    say(`  ${int(bossRun.perSecond)} jobs/s (${bossRun.seconds.toFixed(1)} s; the insert took ${insertSeconds.toFixed(1)} s); ${describeCpu(bossRun.cpu)}`);

    // The engine.
    const flowId = throughputWs.flowIds[index]!;
    say(`engine, ${loops} loop(s): entering ${int(CUSTOMERS)} customers at the trigger...`);
    t0 = performance.now();
    // What the ingest hook inserts for an event of each customer (entries.ts), all due.
    await sql`
      insert into flow_entries (workspace_id, id, flow_id, customer_id, version, node_id, state, wake_at, context, entered_at, updated_at)
      select c.workspace_id, herald_uuid_v7(c.at), ${flowId}::uuid, c.id, ${flowVersion}::int, 'start', 'active', c.at,
        jsonb_build_object('event', jsonb_build_object('id', gen_random_uuid(), 'type', 'signup', 'properties', jsonb_build_object('source', 'bench', 'n', c.n), 'occurredAt', to_json(c.at))),
        c.at, c.at
      from (select workspace_id, id, row_number() over (order by id) as n, now() - interval '1 hour' + row_number() over (order by id) * interval '1 microsecond' as at
            from customers where workspace_id = ${throughputWs.workspaceId}) c`;
    const enterSeconds = seconds(t0);
    await settle(sql, ['flow_entries', 'flow_customers', 'flow_decisions', 'messages', 'customers']);
    say(`  entered in ${enterSeconds.toFixed(1)} s; draining...`);
    let session: import('node:inspector/promises').Session | undefined;
    if (PROFILE) {
      const { Session } = await import('node:inspector/promises');
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
    }
    cpu = await cpuMeter(sql, dbName);
    const tickTimes: number[] = [];
    let claimed = 0;
    let progressAt = performance.now();
    const deadline = performance.now() + DRAIN_TIMEOUT_S * 1000;
    t0 = performance.now();
    // drainFlows(deps) in `loops` parallel loops, as the flow-tick job runs them, with each tick timed.
    await Promise.all(Array.from({ length: loops }, async () => {
      for (;;) {
        const ts = performance.now();
        const n = await tick(deps, DEFAULT_BATCH);
        if (!n) return;
        tickTimes.push(performance.now() - ts);
        claimed += n;
        if (performance.now() - progressAt > 15_000) {
          progressAt = performance.now();
          say(`  ... ${int(claimed)} entries in ${seconds(t0).toFixed(0)} s (${int(claimed / seconds(t0))} entries/s)`);
        }
        if (performance.now() > deadline) throw new Error(`the drain did not finish within ${DRAIN_TIMEOUT_S} s (BENCH_DRAIN_TIMEOUT)`);
      }
    }));
    const drainSeconds = seconds(t0);
    const drainCpu = await cpu();
    let profile: Drain['profile'];
    if (session) {
      const { profile: p } = await session.post('Profiler.stop');
      session.disconnect();
      const file = join(profileDir, `flow-engine-${loops}-loops-${Date.now()}.cpuprofile`);
      writeFileSync(file, JSON.stringify(p));
      profile = { file, top: selfTime(p as unknown as CpuProfile, 'function', 15) };
    }
    const [{ decisions } = { decisions: 0 }] = await sql<{ decisions: number }[]>`
      select coalesce(sum(cardinality(node_ids)), 0)::int as decisions from flow_decisions where workspace_id = ${throughputWs.workspaceId} and flow_id = ${flowId}`;
    const ends = await sql<{ state: string; exit_reason: string | null; n: number }[]>`
      select state, exit_reason, count(*)::int as n from flow_entries where workspace_id = ${throughputWs.workspaceId} and flow_id = ${flowId} group by 1, 2 order by 3 desc`;
    const [{ queued } = { queued: 0 }] = await sql<{ queued: number }[]>`
      select count(*)::int as queued from messages where workspace_id = ${throughputWs.workspaceId} and source_type = 'flow' and source_id = ${flowId} and status = 'queued'`;
    const completedEntries = ends.find((e) => e.state === 'done' && e.exit_reason === 'completed')?.n ?? 0;
    if (claimed !== CUSTOMERS || completedEntries !== CUSTOMERS || decisions !== CUSTOMERS * NODES_PASSED || queued !== CUSTOMERS) {
      failures.push({
        what: `engine, ${loops} loop(s)`,
        detail: `claimed ${claimed}, entries ${JSON.stringify(ends)}, ${decisions} decisions (expected ${CUSTOMERS * NODES_PASSED}), ${queued} emails queued (expected ${CUSTOMERS})`,
      });
    }
    const firstTicks = tickTimes.slice(0, 10);
    const lastTicks = tickTimes.slice(-10);
    const drain: Drain = {
      loops, seconds: drainSeconds, entries: claimed, decisions,
      customerStepsPerSecond: decisions / drainSeconds, entriesPerSecond: claimed / drainSeconds,
      ticks: tickTimes.length, tickMs: summary(tickTimes),
      firstTicksMs: round1(firstTicks.reduce((a, b) => a + b, 0) / (firstTicks.length || 1)),
      lastTicksMs: round1(lastTicks.reduce((a, b) => a + b, 0) / (lastTicks.length || 1)),
      cpu: drainCpu, profile,
    };
    drains.push(drain);
    say(
      `  ${int(drain.customerStepsPerSecond)} customer-steps/s = ${int(drain.entriesPerSecond)} entries/s x ${NODES_PASSED} (${drainSeconds.toFixed(1)} s, ${drain.ticks} ticks of ${DEFAULT_BATCH}: ` +
        `p50 ${ms(drain.tickMs.p50)}, p90 ${ms(drain.tickMs.p90)}; first 10 ${ms(drain.firstTicksMs)}, last 10 ${ms(drain.lastTicksMs)}); ${describeCpu(drainCpu)}`,
    );
    if (profile) {
      say(`  profile ${profile.file}; top self times:`);
      for (const f of profile.top.slice(0, 10)) say(`    ${percent(f.share).padStart(4)}  ${int(f.ms).padStart(7)} ms  ${f.name}`);
    }
  }

  // ---- the report -------------------------------------------------------------------------------
  const best = <T,>(list: T[], key: (t: T) => number): T => list.reduce((a, b) => (key(b) > key(a) ? b : a));
  const engineBest = best(drains, (d) => d.customerStepsPerSecond);
  const bossBest = best(bossRuns, (c) => c.perSecond);
  const rawBest = best(rawRuns, (c) => c.perSecond);
  const bossRatio = engineBest.customerStepsPerSecond / bossBest.perSecond;
  const rawRatio = engineBest.customerStepsPerSecond / rawBest.perSecond;
  const x = (n: number) => `${n.toFixed(2)}x`;

  say('');
  say(
    table([
      [`bench:flow (node ${process.version}, ${run.cores} cores, ${int(CUSTOMERS)} customers)`, 'figure', 'ceiling', '', 'ratio', '', 'target'],
      [`customer-steps/s (${engineBest.loops} loop${engineBest.loops > 1 ? 's' : ''})`, int(engineBest.customerStepsPerSecond), int(bossBest.perSecond), `jobs/s (pg-boss fetch+complete, ${bossBest.loops} loop${bossBest.loops > 1 ? 's' : ''})`, x(bossRatio), bossRatio >= TARGET_BOSS ? 'ok' : 'MISSED', `>= ${TARGET_BOSS}x`],
      [`customer-steps/s (${engineBest.loops} loop${engineBest.loops > 1 ? 's' : ''})`, int(engineBest.customerStepsPerSecond), int(rawBest.perSecond), `rows/s (raw SQL claim-and-advance, ${rawBest.loops} loop${rawBest.loops > 1 ? 's' : ''})`, ...verdict(rawRatio, TARGET_RAW).split(' '), `>= ${percent(TARGET_RAW)}`],
      [`event -> first step at ${EVENTS_PER_S} events/s`, `p50 ${ms(latency.p50)}`, `p99 ${ms(latency.p99)}`, '', '', '', '(no target)'],
    ], [0, 3]),
  );
  say('');
  say(
    table([
      ['loops', 'engine entries/s', 'customer-steps/s', 'pg-boss jobs/s', 'raw SQL rows/s', 'vs pg-boss', 'vs raw SQL'],
      ...LOOPS.map((loops, i) => [
        String(loops), int(drains[i]!.entriesPerSecond), int(drains[i]!.customerStepsPerSecond), int(bossRuns[i]!.perSecond), int(rawRuns[i]!.perSecond),
        x(drains[i]!.customerStepsPerSecond / bossRuns[i]!.perSecond), percent(drains[i]!.customerStepsPerSecond / rawRuns[i]!.perSecond),
      ]),
    ]),
  );
  say(`customer-steps = flow decisions (one per node passed: ${NODES_PASSED} per customer, the exit included); the channel: sendgrid pointing at the local mock (the engine only queues; sending is bench:send's)`);
  sayErrorTotals(failures.length > 0);

  writeReport('flow.json', { ...run, pgVersion }, {
    settings: {
      customers: CUSTOMERS, loops: LOOPS, engineBatch: DEFAULT_BATCH, bossBatch: BOSS_BATCH, rawBatch: RAW_BATCH, eventsPerSecond: EVENTS_PER_S,
      latencySeconds: LATENCY_SECONDS, latencyWarmupSeconds: LATENCY_WARMUP_SECONDS, pollMs: POLL_MS, nodesPassed: NODES_PASSED,
      channel: 'sendgrid (local mock); the engine queues the email in the outbox, the send workers do not run during the throughput phase',
      server: server ?? null,
      triggers,
      flow: benchFlowGraph('<config>', '<template>'),
    },
    throughput: {
      unit: 'customer-steps/s (flow decisions per second)',
      figure: Math.round(engineBest.customerStepsPerSecond),
      loops: engineBest.loops,
      entriesPerSecond: Math.round(engineBest.entriesPerSecond),
      pgboss: { name: `pg-boss fetch (batchSize ${BOSS_BATCH}) + complete(ids)`, unit: 'jobs/s', ceiling: Math.round(bossBest.perSecond), loops: bossBest.loops, ratio: round3(bossRatio), target: TARGET_BOSS, met: bossRatio >= TARGET_BOSS },
      raw: { name: `raw SQL claim (FOR UPDATE SKIP LOCKED, ${RAW_BATCH}) and advance, one statement`, unit: 'rows/s', ceiling: Math.round(rawBest.perSecond), loops: rawBest.loops, ratio: round3(rawRatio), target: TARGET_RAW, met: rawRatio >= TARGET_RAW },
      runs: LOOPS.map((loops, i) => ({
        loops,
        engine: { ...drains[i]!, seconds: round1(drains[i]!.seconds), customerStepsPerSecond: Math.round(drains[i]!.customerStepsPerSecond), entriesPerSecond: Math.round(drains[i]!.entriesPerSecond) },
        pgboss: { ...bossRuns[i]!, seconds: round1(bossRuns[i]!.seconds), perSecond: Math.round(bossRuns[i]!.perSecond) },
        raw: { ...rawRuns[i]!, seconds: round1(rawRuns[i]!.seconds), perSecond: Math.round(rawRuns[i]!.perSecond) },
      })),
    },
    latency: {
      what: 'POST /v1/events sent -> the flow\'s email visible in the outbox (polled every 20 ms), ms',
      eventsPerSecond: EVENTS_PER_S, achievedPerSecond: round1(sent / sendSeconds), maxBehindScheduleMs: round1(maxBehind), accepted: records.length,
      ...latency,
      lowerBound: latencyLowerBound,
      fromAnswer: latencyFromAnswer,
      engineClock,
      post: postLatency,
      pollMs: summary(pollTimes),
      overOneSecond: late,
      emails: Object.fromEntries(statuses.map((s) => [s.status, s.n])),
      heraldCores,
      cpu: latencyCpuUse,
    },
  });
  return failures.length ? 1 : 0;
}

const mode = process.argv[2];
if (mode === '--serve') await serveHerald({ HERALD_ROLE: 'all' });
else if (mode === '--mock') await mock();
else await runBench('bench:flow', main);
