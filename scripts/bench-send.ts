// npm run bench:send — the send pipeline and the SendGrid Event Webhook, each against a ceiling
// measured in the same run on the same machine:
//   1. sending: BENCH_MESSAGES (100,000) personalised emails (Liquid merge tags, ~3 KB of HTML
//      with tracked links, a text part) enqueued with enqueueMessages() and sent by Herald's
//      pg-boss send worker to a local SendGrid mock (emails/s, from the first enqueue commit to
//      the last message recorded as sent; the mock's count over IPC tells the progress, so that
//      the table is counted often only at the end)  vs  the mock's own ceiling: autocannon at the
//      concurrency of the send worker, with a request body of the size Herald sends (req/s);
//   1b. the durable floor (bench-send-floor.ts): the same number of emails sent by a hand-written
//      loop that does only what no durable sender can skip (batched insert, claim under a lease,
//      a committed mark before each request, a committed outcome after it; no render, no content,
//      no action templates, no consent or caps), with the ceiling's body, at the send worker's
//      requests in flight and at twice as many; Herald's figure is also given against the better one;
//   2. webhooks: signed Event Webhook batches of 5,000 delivered/open/click events for the
//      messages just sent, at concurrency 2 (events/s)  vs  a raw multi-row INSERT of the same
//      rows into message_events (postgres.js, same batch size, same concurrency).
// Herald (HERALD_ROLE=all, so its send worker runs) and the SendGrid mock run in child processes
// of this script (modes --serve and --mock): none of Herald, the mock and the load generator
// shares an event loop with another. The mock ceiling is measured once before the send and
// twice after it; the webhook rounds are interleaved with their ceiling; medians are reported.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or, with neither
// set, on an embedded PostgreSQL started in a temporary directory; dropped at the end.
// Settings (environment): BENCH_MESSAGES (100000), BENCH_SECONDS (5, per ceiling round),
// BENCH_WEBHOOK_ROUNDS (5, of 4 batches each), BENCH_SEND_TIMEOUT (200 s: past it, the
// rate so far is reported, marked incomplete, and the messages still queued are set aside),
// BENCH_KEEP_DATABASE=1 keeps the database for a look afterwards, BENCH_PROFILE=1 profiles
// Herald during the send and during the webhook rounds only (V8 inspector,
// bench/profiles/*.cpuprofile) and prints the top self times; BENCH_PROFILE=full runs Herald
// with --cpu-prof for its whole life instead.
// The database is vacuumed and analyzed after the import and again before the webhook rounds,
// as autovacuum would leave it: the planner's choices depend on those statistics.
// Exit status: 0 when the runs were clean (even when a target is missed: this is a measurement),
// 1 when any message was not sent, any request or INSERT failed, a check failed or the setup failed.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { machineCpu, postgresCpu, procCpu, procMemory } from './bench-proc.ts';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { KeyObject } from 'node:crypto';
import { PRODUCTS, templateContent } from './bench-send-template.ts';
import type { SendGridEventKind } from '../test/mocks/sendgrid.ts';
import { PgBoss } from 'pg-boss';
import { int, median, ms, percent, round3, selfTime, table, verdict, type CpuProfile } from './bench-lib.ts';
import {
  announce, ask, begin, benchDatabase, cleanups, DRAIN_MS, failures, heraldApi, measure, positive, profilerAnswers, runBench, say, sayErrorTotals, serveHerald, startChild, startHerald, stopChild, tempDir, totals, writeReport,
} from './bench-harness.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const FLOOR_SCRIPT = fileURLToPath(new URL('./bench-send-floor.ts', import.meta.url));
const MESSAGES = positive(process.env.BENCH_MESSAGES, 100_000);
const ENQUEUE_BATCH = 10_000;
const SECONDS = positive(process.env.BENCH_SECONDS, 5);
const WARMUP_SECONDS = 2;
const CEILING_ROUNDS_AFTER = 2;
const WEBHOOK_BATCH = 5000;
const WEBHOOK_CONCURRENCY = 2;
const WEBHOOK_ROUNDS = positive(process.env.BENCH_WEBHOOK_ROUNDS, 5);
const BATCHES_PER_ROUND = 4;
const SEND_TIMEOUT_S = positive(process.env.BENCH_SEND_TIMEOUT, 200);
const POLL_MS = 250;
const TARGET_SEND = 0.3;
const TARGET_WEBHOOK = 0.4;
const PROFILE = process.env.BENCH_PROFILE === 'full' ? 'full' : process.env.BENCH_PROFILE === '1' ? 'phases' : 'off';
const SENT_STATUSES = ['sent', 'delivered', 'opened', 'clicked'];
/** A constant of the send worker, read from its source so that the bench follows it. */
function workerConstant(name: string, fallback: number): number {
  try {
    const source = readFileSync(new URL('../src/modules/messages/send.worker.ts', import.meta.url), 'utf8');
    return Number(new RegExp(`^const ${name} = (\\d+);`, 'm').exec(source)?.[1] ?? fallback);
  } catch {
    return fallback;
  }
}
/** The send worker's provider-call concurrency per claim loop (the ceiling's connections follow it). */
const SEND_CONCURRENCY = workerConstant('CONCURRENCY', 16);
/** Its claim loops, for the durable floor. */
const SEND_LOOPS = workerConstant('LOOPS', 3);

// ---- child modes -------------------------------------------------------------------------------

/** Herald itself with its workers (HERALD_ROLE=all), started through the runtime API like server.ts does (see serveHerald). */
async function serve(): Promise<void> {
  // BENCH_PROFILE=1: the parent brackets each phase with profileStart / profileStop.
  // Tracking links as long as a real deployment's.
  await serveHerald({ HERALD_ROLE: 'all', HERALD_PUBLIC_URL: 'https://herald.bench.example.com' }, profilerAnswers());
}

/** The SendGrid mock, counting only (record: false), and the bytes of the bodies it was sent. */
async function mock(): Promise<void> {
  const { startSendGridMock } = await import('../test/mocks/sendgrid.ts');
  const sendgrid = await startSendGridMock({ apiKey: process.env.BENCH_SENDGRID_KEY!, record: false });
  const bodies = { requests: 0, bytes: 0 };
  sendgrid.server.on('request', (req: { headers: Record<string, unknown> }) => {
    bodies.requests++;
    bodies.bytes += Number(req.headers['content-length'] ?? 0);
  });
  await announce(sendgrid.server.address(), () => sendgrid.close(), {
    stats: () => ({ ...sendgrid.counts, ...bodies }),
  });
}

// ---- the bench ---------------------------------------------------------------------------------

interface MockStats {
  received: number;
  accepted: number;
  rejected: number;
  faulted: number;
  requests: number;
  bytes: number;
}

// ---- the content: a template with merge tags, customers with custom fields -----------------------

const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Katherine', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Dennis', 'Radia'];
const TIERS = ['free', 'pro', 'gold'];
const CITIES = ['Lyon', 'Porto', 'Leeds', 'Gdańsk', 'Bologna', 'Ghent', 'Tartu', 'Malmö'];

function customersCsv(n: number): string {
  const lines = ['externalId,email,first_name,tier,city'];
  for (let i = 0; i < n; i++) lines.push(`c${i},c${i}@bench.example.com,${FIRST_NAMES[i % FIRST_NAMES.length]},${TIERS[i % TIERS.length]},${CITIES[i % CITIES.length]}`);
  return `${lines.join('\n')}\n`;
}


/** CPU use over a phase: cores busy per process (1.0 = one core all the time) and the machine's busy share. */
function cpuMeter(pids: { herald: number; mock: number }) {
  const start = { at: performance.now(), herald: procCpu(pids.herald), mock: procCpu(pids.mock), postgres: postgresCpu(), machine: machineCpu() };
  return () => {
    const seconds = (performance.now() - start.at) / 1000;
    const machine = machineCpu();
    return {
      heraldCores: round2((procCpu(pids.herald) - start.herald) / seconds),
      mockCores: round2((procCpu(pids.mock) - start.mock) / seconds),
      postgresCores: round2((postgresCpu() - start.postgres) / seconds),
      machineBusy: round3((machine.busy - start.machine.busy) / (machine.total - start.machine.total)),
    };
  };
}

// ---- main ------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const run = begin(
    'bench:send',
    `${int(MESSAGES)} emails at send concurrency ${SEND_CONCURRENCY}; mock ceiling: ${1 + CEILING_ROUNDS_AFTER} rounds of ${SECONDS} s; ` +
      `webhooks: ${WEBHOOK_ROUNDS} rounds of ${BATCHES_PER_ROUND} batches of ${int(WEBHOOK_BATCH)} at concurrency ${WEBHOOK_CONCURRENCY}, interleaved with the raw INSERT`,
  );
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp, process.env.BENCH_KEEP_DATABASE === '1');

  // The two servers.
  const sendgridKey = `SG.${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
  const profileDir = resolve('bench', 'profiles');
  if (PROFILE !== 'off') mkdirSync(profileDir, { recursive: true });
  const cpuProfileDir = PROFILE === 'full' ? profileDir : undefined;
  const [herald, sendgrid] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, cpuProfileDir }),
    startChild(SCRIPT, 'sendgrid mock', ['--mock'], { env: { BENCH_SENDGRID_KEY: sendgridKey } }),
  ]);
  const { rootToken, url: heraldUrl } = herald;
  const mockUrl = `http://127.0.0.1:${sendgrid.port}`;
  const mockStats = () => ask<MockStats>(sendgrid.child, 'stats');

  // The workspace, its key, the channel config, the template and the customers, through the API.
  const api = heraldApi(heraldUrl);
  const setupStarted = performance.now();
  const workspace = await api('POST', '/v1/workspaces', rootToken, { name: 'bench' });
  const workspaceId = String(workspace.id);
  // The mock listens on 127.0.0.1, which the SSRF guard refuses unless the workspace allows it.
  await api('PATCH', `/v1/workspaces/${workspaceId}`, rootToken, { settings: { allowPrivateNetworkTargets: true } });
  const apiKey = String((await api('POST', `/v1/workspaces/${workspaceId}/api-keys`, rootToken, { name: 'bench', scopes: ['read', 'write'] })).token);
  const { generateEventWebhookKeys, eventWebhookHeaders, sendgridEvent } = await import('../test/mocks/sendgrid.ts');
  const webhookKeys = generateEventWebhookKeys();
  const config = await api('POST', '/v1/channel-configs', apiKey, {
    name: 'SendGrid (bench mock)',
    provider: 'sendgrid',
    settings: { fromEmail: 'picks@shop.example.com', fromName: 'Example Shop', apiBaseUrl: mockUrl, eventWebhookPublicKey: webhookKeys.publicKey },
    secrets: { apiKey: sendgridKey },
  });
  const configId = String(config.id);
  const content = templateContent();
  const template = await api('POST', '/v1/templates', apiKey, { name: 'Weekly picks', channel: 'email', content });
  const templateId = String(template.id);
  const templateVersion = Number(template.currentVersion ?? template.version ?? 1);
  const importStarted = performance.now();
  const upload = await api('POST', '/v1/customers/import', apiKey, customersCsv(MESSAGES), 'text/csv');
  let imported: Record<string, unknown> = upload;
  for (const deadline = Date.now() + 300_000; imported.status !== 'completed'; await sleep(500)) {
    if (imported.status === 'failed' || Date.now() > deadline) throw new Error(`setup: the import did not complete: ${JSON.stringify(imported).slice(0, 500)}`);
    imported = await api('GET', `/v1/imports/${String(upload.id)}`, apiKey);
  }
  if (imported.createdRows !== MESSAGES || imported.failedRows !== 0) throw new Error(`setup: expected ${MESSAGES} created rows, got ${JSON.stringify(imported).slice(0, 500)}`);
  const importSeconds = (performance.now() - importStarted) / 1000;

  // Herald's own client setup (JSON sent as text, as enqueueMessages expects).
  const { createDatabase } = await import('../src/db/client.ts');
  const database = createDatabase(benchUrl, { max: 4, applicationName: 'herald-bench' });
  const sql = database.sql;
  cleanups.push(() => database.close());
  const { BOSS_SCHEMA } = await import('../src/jobs/queue.ts');
  const { enqueueMessages } = await import('../src/modules/messages/outbox.ts');
  const { newId } = await import('../src/ids.ts');
  const boss = new PgBoss({ connectionString: benchUrl, schema: BOSS_SCHEMA, max: 2, supervise: false, schedule: false, migrate: false, application_name: 'herald-bench-enqueue' });
  boss.on('error', (error) => failures.push({ what: 'bench pg-boss client', detail: error instanceof Error ? error.message : String(error) }));
  await boss.start();
  cleanups.push(() => boss.stop({ graceful: false, close: true }));
  const customerIds = (await sql<{ id: string }[]>`select id from customers where workspace_id = ${workspaceId} order by id`).map((r) => r.id);
  if (customerIds.length !== MESSAGES) throw new Error(`setup: expected ${MESSAGES} customers, found ${customerIds.length}`);
  say(
    `setup: workspace ${workspaceId}, ${int(MESSAGES)} customers imported in ${(importSeconds).toFixed(1)} s, template of ${int(Buffer.byteLength(content.html))} B of HTML ` +
      `(${PRODUCTS.length} tracked links) and ${int(Buffer.byteLength(content.text))} B of text (database ${dbName}, PostgreSQL ${pgVersion}; ${((performance.now() - setupStarted) / 1000).toFixed(1)} s)`,
  );

  // A settled database, as in production: the imported customers vacuumed and analyzed.
  await sql`vacuum (analyze)`;

  const message = (customerId: string, sourceId: string) => ({
    workspaceId, customerId, channel: 'email', channelConfigId: configId, templateId, templateVersion, sourceType: 'action', sourceId, event: { type: 'bench', total: MESSAGES },
  });

  // A probe: one message through the whole pipeline before anything is timed. It fails fast on a
  // broken setup and tells the size of Herald's requests, which the ceiling's body copies.
  const probeSource = `bench-probe-${randomBytes(4).toString('hex')}`;
  const [probeId] = await sql.begin((tx) => enqueueMessages(tx, boss, [message(customerIds[0]!, probeSource)], new Date()));
  let probe: { status: string; reason: string | null; to_address: string | null; rendered: Record<string, unknown> | null } | undefined;
  for (const deadline = Date.now() + 60_000; ; await sleep(100)) {
    [probe] = await sql<NonNullable<typeof probe>[]>`select status, reason, to_address, rendered from messages where workspace_id = ${workspaceId} and id = ${probeId!}`;
    if (probe && !['queued', 'sending'].includes(probe.status)) break;
    if (Date.now() > deadline) throw new Error(`probe: message still ${probe?.status ?? 'missing'} after 60 s${probe?.reason ? ` (${probe.reason})` : ''}`);
  }
  if (probe.status !== 'sent') throw new Error(`probe: the message ended ${probe.status}: ${probe.reason ?? 'no reason'}`);
  // As sent ("view"): the stored row holds the html's merge-tag values, not the html (as-sent.ts).
  probe.rendered = (await api('GET', `/v1/messages/${probeId}`, apiKey)).rendered as Record<string, unknown>;
  const afterProbe = await mockStats();
  if (afterProbe.accepted !== 1 || afterProbe.requests !== 1) throw new Error(`probe: the mock saw ${JSON.stringify(afterProbe)}`);
  const heraldBodyBytes = afterProbe.bytes;
  const ceilingBody = mailBody(probe, probeId!, workspaceId, heraldBodyBytes);
  const ceilingHeaders = { authorization: `Bearer ${sendgridKey}`, 'content-type': 'application/json' };
  const check = await fetch(`${mockUrl}/v3/mail/send`, { method: 'POST', headers: ceilingHeaders, body: ceilingBody });
  if (check.status !== 202) throw new Error(`probe: the mock answered the ceiling's body with ${check.status}: ${(await check.text()).slice(0, 300)}`);
  say(`probe: sent; Herald's request body is ${int(heraldBodyBytes)} B; the ceiling's body ${int(ceilingBody.length)} B`);

  const mockCeiling = async (seconds: number, what: string) => {
    const { perSecond, p50, p99 } = await measure({ url: `${mockUrl}/v3/mail/send`, connections: SEND_CONCURRENCY, duration: seconds, method: 'POST', headers: ceilingHeaders, body: ceilingBody }, what);
    return { perSecond, p50, p99 };
  };

  // ---- 1. sending ----------------------------------------------------------------------------
  say('mock ceiling: warming up, then round 1...');
  await mockCeiling(WARMUP_SECONDS, 'warm-up: mock ceiling');
  const ceilingRounds = [await mockCeiling(SECONDS, 'mock ceiling, round 1 (before the send)')];

  say(`sending ${int(MESSAGES)} emails...`);
  const sourceId = `bench-${randomBytes(4).toString('hex')}`;
  const beforeSend = await mockStats();
  const heraldPid = herald.child.pid!;
  const cpu = cpuMeter({ herald: heraldPid, mock: sendgrid.child.pid! });
  if (PROFILE === 'phases') await ask(herald.child, 'profileStart');
  let rssPeak = procMemory(heraldPid).rss;
  let firstCommit: number | undefined;
  let enqueued = 0;
  const enqueue = (async () => {
    for (let from = 0; from < MESSAGES; from += ENQUEUE_BATCH) {
      const rows = customerIds.slice(from, from + ENQUEUE_BATCH).map((id) => message(id, sourceId));
      const ids = await sql.begin((tx) => enqueueMessages(tx, boss, rows, new Date()));
      firstCommit ??= performance.now();
      if (ids.length !== rows.length) throw new Error(`enqueue: ${rows.length} rows gave ${ids.length} messages`);
      enqueued += ids.length;
    }
    return performance.now();
  })();
  const enqueueFailed = enqueue.then(() => new Promise<never>(() => {}));
  // The clock starts at the first commit (or the enqueue's failure ends the wait).
  while (firstCommit === undefined) await Promise.race([sleep(5), enqueueFailed]);
  const clockStart = firstCommit;
  let statuses: { status: string; reason: string; n: number }[] = [];
  let sent = 0;
  let lastProgress = clockStart;
  let lastSent = 0;
  let lastChange = clockStart;
  const pollTimes: number[] = [];
  let clockStop = Number.NaN;
  let incomplete: string | undefined;
  // Counting the statuses of 100,000 messages is a scan of the table (~100 ms of PostgreSQL at
  // 100,000 rows): done every POLL_MS only once the mock has accepted every message, and every 5 s
  // before that (to see failures early). Progress in between is the mock's count, over IPC.
  let accepted = 0;
  let pending = MESSAGES;
  let lastCount = Number.NEGATIVE_INFINITY;
  for (;;) {
    accepted = (await mockStats()).accepted - beforeSend.accepted;
    rssPeak = Math.max(rssPeak, procMemory(heraldPid).rss);
    let now = performance.now();
    if (accepted !== lastSent) [lastSent, lastChange] = [accepted, now];
    if (accepted >= MESSAGES || now - lastCount >= 5000) {
      statuses = await sql<{ status: string; reason: string; n: number }[]>`
        select status, coalesce(reason, '') as reason, count(*)::int as n from messages
        where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} group by 1, 2`;
      pollTimes.push(performance.now() - now);
      now = lastCount = performance.now();
      sent = statuses.filter((s) => SENT_STATUSES.includes(s.status)).reduce((a, s) => a + s.n, 0);
      pending = MESSAGES - statuses.filter((s) => s.status !== 'queued' && s.status !== 'sending').reduce((a, s) => a + s.n, 0);
    }
    if (sent >= MESSAGES) {
      clockStop = now;
      break;
    }
    if (enqueued === MESSAGES && pending === 0) {
      // Everything ended, not everything was sent (the statuses say why, below).
      clockStop = now;
      break;
    }
    if (now - clockStart > SEND_TIMEOUT_S * 1000 || now - lastChange > 120_000) {
      incomplete = now - lastChange > 120_000 ? `no progress for 120 s` : `timed out after ${SEND_TIMEOUT_S} s (BENCH_SEND_TIMEOUT)`;
      const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`
        select count(*)::int as n from messages
        where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} and status in ${sql(SENT_STATUSES)}`;
      sent = n;
      failures.push({ what: 'sending', detail: `${incomplete} with ${sent} of ${MESSAGES} sent: the figure is the rate so far` });
      clockStop = now;
      break;
    }
    if (now - lastProgress >= 5000) {
      lastProgress = now;
      say(`  ${((now - clockStart) / 1000).toFixed(0).padStart(4)} s: ${int(accepted)} accepted by the mock (${int(accepted / ((now - clockStart) / 1000))}/s), ${int(sent)} recorded as sent, Herald RSS ${mib(procMemory(heraldPid).rss)}`);
    }
    await Promise.race([sleep(POLL_MS), enqueueFailed]);
  }
  const enqueueDone = await enqueue;
  const sendCpu = cpu();
  const sentAtStop = sent;
  if (incomplete) {
    // Set the rest aside so that Herald stops sending before the next measurements, and let the batch in flight finish.
    const setAside = await sql`
      update messages set status = 'not_sent', reason = 'bench: set aside after the timeout', updated_at = now()
      where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} and status = 'queued' returning 1`;
    say(`sending ${incomplete}: ${int(sent)} sent; ${int(setAside.length)} queued messages set aside, waiting for the batch in flight...`);
    for (const deadline = Date.now() + 180_000; Date.now() < deadline; await sleep(500)) {
      const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`
        select count(*)::int as n from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} and status = 'sending'`;
      if (n === 0) break;
    }
    statuses = await sql<{ status: string; reason: string; n: number }[]>`
      select status, coalesce(reason, '') as reason, count(*)::int as n from messages
      where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} group by 1, 2`;
    sent = statuses.filter((s) => SENT_STATUSES.includes(s.status)).reduce((a, s) => a + s.n, 0);
  }
  let sendProfile: string | undefined;
  if (PROFILE === 'phases') sendProfile = await ask<string>(herald.child, 'profileStop', { path: join(profileDir, `send-${stamp()}.cpuprofile`) });
  const sendSeconds = (clockStop - clockStart) / 1000;
  const emailsPerSecond = sentAtStop / sendSeconds;
  const afterSend = await mockStats();
  const mockDelta = {
    received: afterSend.received - beforeSend.received,
    accepted: afterSend.accepted - beforeSend.accepted,
    rejected: afterSend.rejected - beforeSend.rejected,
    faulted: afterSend.faulted - beforeSend.faulted,
    meanBodyBytes: Math.round((afterSend.bytes - beforeSend.bytes) / Math.max(1, afterSend.requests - beforeSend.requests)),
  };
  const notSent = statuses.filter((s) => !SENT_STATUSES.includes(s.status) && !s.reason.startsWith('bench: '));
  if (notSent.length) failures.push({ what: 'sending', detail: `messages not sent: ${notSent.map((s) => `${s.status}${s.reason ? ` (${s.reason})` : ''} x${s.n}`).join(', ')}` });
  // Exactly once: one accepted request per message recorded as sent, no more, no less.
  if (mockDelta.accepted !== sent || mockDelta.received !== sent || (!incomplete && sent !== MESSAGES)) {
    failures.push({ what: 'sending', detail: `the mock accepted ${mockDelta.accepted} and received ${mockDelta.received} requests for ${sent} messages sent of ${MESSAGES} (expected exactly one each)` });
  }
  const heraldMemory = procMemory(heraldPid);
  say(
    `sent ${int(sentAtStop)} in ${sendSeconds.toFixed(1)} s: ${int(emailsPerSecond)} emails/s${incomplete ? ' (INCOMPLETE)' : ''} (enqueue of ${int(MESSAGES)} took ${((enqueueDone - clockStart) / 1000).toFixed(1)} s after the first commit); ` +
      `Herald RSS peak ${mib(rssPeak)} during the send (VmHWM ${mib(heraldMemory.hwm)}); mock: ${int(mockDelta.accepted)} accepted, ${int(mockDelta.received)} received, mean body ${int(mockDelta.meanBodyBytes)} B`,
  );

  say(`mock ceiling: ${CEILING_ROUNDS_AFTER} more rounds...`);
  for (let round = 2; round <= 1 + CEILING_ROUNDS_AFTER; round++) ceilingRounds.push(await mockCeiling(SECONDS, `mock ceiling, round ${round} (after the send)`));
  say(`mock ceiling rounds: ${ceilingRounds.map((r) => `${int(r.perSecond)} req/s (p50 ${ms(r.p50)})`).join(' / ')}`);

  // ---- 1b. the durable floor (bench-send-floor.ts): the same emails with a hand-written claim,
  // mark and outcome around each request, in a process of its own while Herald idles; at the send
  // worker's calls in flight, then at twice as many (the floor waits on its commits, not on CPU).
  const floors: Array<{ inFlight: number; perSecond: number; seconds: number; cpu: ReturnType<ReturnType<typeof cpuMeter>> }> = [];
  for (const factor of [1, 2]) {
    const inFlight = SEND_LOOPS * SEND_CONCURRENCY * factor;
    say(`durable floor: ${int(MESSAGES)} emails, ${inFlight} requests in flight, a committed mark before and outcome after each...`);
    const floorChild = await startChild(FLOOR_SCRIPT, 'durable floor', []);
    const meter = cpuMeter({ herald: floorChild.child.pid!, mock: sendgrid.child.pid! });
    const beforeFloor = await mockStats();
    const floor = await ask<{ seconds: number; sent: number; failed: number }>(floorChild.child, 'run', {
      url: benchUrl, mockUrl, apiKey: sendgridKey, body: ceilingBody.toString('utf8'), messages: MESSAGES, insertBatch: ENQUEUE_BATCH,
      loops: SEND_LOOPS, concurrency: SEND_CONCURRENCY * factor, claimBatch: 500 * factor,
    }, SEND_TIMEOUT_S * 1000);
    const use = meter();
    await stopChild(floorChild.child, 'durable floor');
    const afterFloor = await mockStats();
    if (floor.failed || floor.sent !== MESSAGES || afterFloor.accepted - beforeFloor.accepted !== MESSAGES) {
      failures.push({ what: 'durable floor', detail: `${floor.sent} sent, ${floor.failed} failed, the mock accepted ${afterFloor.accepted - beforeFloor.accepted} of ${MESSAGES}` });
    }
    floors.push({ inFlight, perSecond: floor.sent / floor.seconds, seconds: floor.seconds, cpu: use });
    say(`durable floor: ${int(floor.sent)} in ${floor.seconds.toFixed(1)} s: ${int(floor.sent / floor.seconds)} emails/s; CPU (cores): floor ${use.heraldCores}, mock ${use.mockCores}, PostgreSQL ${use.postgresCores}; machine ${percent(use.machineBusy)} busy`);
  }
  const floorPerSecond = Math.max(...floors.map((f) => f.perSecond));

  // ---- 2. webhooks ---------------------------------------------------------------------------
  const sentMessages = await sql<{ id: string; provider_message_id: string | null; to_address: string | null }[]>`
    select id, provider_message_id, to_address from messages
    where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} and status in ${sql(SENT_STATUSES)} order by id`;
  if (sentMessages.length === 0) throw new Error('webhooks: no messages to post events for');
  // Each message delivered, every second one opened, every fourth one clicked; round and round.
  let eventCursor = 0;
  const nextEvents = (count: number) => {
    const events: Record<string, unknown>[] = [];
    while (events.length < count) {
      const j = eventCursor++;
      const m = sentMessages[j % sentMessages.length]!;
      const kinds: SendGridEventKind[] = ['delivered', ...(j % 2 === 0 ? ['open' as const] : []), ...(j % 4 === 0 ? ['click' as const] : [])];
      for (const kind of kinds) {
        if (events.length === count) break;
        events.push(sendgridEvent(kind, m.provider_message_id ?? m.id, { email: m.to_address ?? 'to@example.com', customArgs: { herald_message_id: m.id, herald_workspace_id: workspaceId } }));
      }
    }
    return events;
  };
  // The rows Herald stores for an event (see receiveSendgridEvents), for the raw INSERT.
  const KINDS: Record<string, string> = { delivered: 'delivered', open: 'opened', click: 'clicked' };
  const rawRows = (events: Record<string, unknown>[]) =>
    events.map((e) => {
      const data: Record<string, unknown> = { provider: 'sendgrid', event: e.event };
      for (const f of ['url', 'useragent', 'ip', 'reason', 'type', 'status', 'response', 'attempt']) if (e[f] !== undefined) data[f === 'useragent' ? 'userAgent' : f] = e[f];
      return {
        workspace_id: workspaceId, id: newId(), message_id: String(e.herald_message_id), kind: KINDS[String(e.event)]!,
        occurred_at: new Date(Number(e.timestamp) * 1000), provider_event_id: `raw:${String(e.sg_event_id)}`, data: JSON.stringify(data),
      };
    });
  const webhookUrl = `${heraldUrl}/webhooks/sendgrid/${configId}`;
  let posted = 0;
  const receiptProblems: string[] = [];
  const post = async (payload: string, headers: Record<string, string>) => {
    const response = await fetch(webhookUrl, { method: 'POST', headers, body: payload });
    const text = await response.text();
    totals.requests++;
    if (response.status !== 200) {
      totals.non2xx++;
      throw new Error(`webhook batch answered ${response.status}: ${text.slice(0, 300)}`);
    }
    return JSON.parse(text) as { stored: number; duplicates: number; unknownMessages: number; ignored: number };
  };
  const sign = (batches: Record<string, unknown>[][]) =>
    batches.map((events) => {
      const payload = JSON.stringify(events);
      return { events, payload, headers: eventWebhookHeaders(webhookKeys.privateKey as KeyObject, payload) };
    });
  /** Posts the batches at WEBHOOK_CONCURRENCY; events/s over the whole round. */
  const httpRound = async (batches: ReturnType<typeof sign>, what: string) => {
    const latencies: number[] = [];
    const startedAt = performance.now();
    await pool(batches, WEBHOOK_CONCURRENCY, async (batch) => {
      const sentAt = performance.now();
      try {
        const receipt = await post(batch.payload, batch.headers);
        latencies.push(performance.now() - sentAt);
        posted += receipt.stored;
        if (receipt.stored !== batch.events.length || receipt.duplicates || receipt.unknownMessages || receipt.ignored) receiptProblems.push(`${what}: ${JSON.stringify(receipt)}`);
      } catch (error) {
        failures.push({ what, detail: error instanceof Error ? error.message : String(error) });
      }
    });
    const seconds = (performance.now() - startedAt) / 1000;
    await sleep(DRAIN_MS);
    return { perSecond: batches.reduce((a, b) => a + b.events.length, 0) / seconds, latency: median(latencies) };
  };
  const rawRound = async (batches: ReturnType<typeof rawRows>[], what: string) => {
    const startedAt = performance.now();
    await pool(batches, WEBHOOK_CONCURRENCY, async (rows) => {
      try {
        await sql`insert into message_events ${sql(rows, 'workspace_id', 'id', 'message_id', 'kind', 'occurred_at', 'provider_event_id', 'data')}`;
      } catch (error) {
        totals.failedInserts++;
        failures.push({ what, detail: error instanceof Error ? error.message : String(error) });
      }
    });
    const seconds = (performance.now() - startedAt) / 1000;
    await sleep(DRAIN_MS);
    return { perSecond: batches.reduce((a, b) => a + b.length, 0) / seconds };
  };
  // The send left 100,000 updated rows behind: vacuumed and analyzed now, as autovacuum would soon
  // do, rather than in the middle of the rounds (the planner's choices depend on these statistics).
  await sql`vacuum (analyze) messages, customer_actions, message_events`;
  const [{ n: eventsBefore } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from message_events where workspace_id = ${workspaceId}`;

  say('webhooks: warming up...');
  const warmup = sign([nextEvents(WEBHOOK_BATCH)]);
  await httpRound(warmup, 'warm-up: webhook batch');
  await rawRound([rawRows(warmup[0]!.events)], 'warm-up: raw INSERT');
  const webhookRounds = { http: [] as number[], latency: [] as number[], raw: [] as number[] };
  if (PROFILE === 'phases') await ask(herald.child, 'profileStart');
  for (let round = 1; round <= WEBHOOK_ROUNDS; round++) {
    // Signed just before posting (the signature carries a timestamp Herald checks); the same events feed the raw INSERT.
    const batches = sign(Array.from({ length: BATCHES_PER_ROUND }, () => nextEvents(WEBHOOK_BATCH)));
    const rows = batches.map((b) => rawRows(b.events));
    const http = await httpRound(batches, `webhooks, round ${round}`);
    const raw = await rawRound(rows, `raw INSERT, round ${round}`);
    webhookRounds.http.push(http.perSecond);
    webhookRounds.latency.push(http.latency);
    webhookRounds.raw.push(raw.perSecond);
    say(`round ${round}/${WEBHOOK_ROUNDS}: webhooks ${int(http.perSecond)} events/s (batch p50 ${ms(http.latency)}), raw INSERT ${int(raw.perSecond)} rows/s`);
  }
  let webhookProfile: string | undefined;
  if (PROFILE === 'phases') webhookProfile = await ask<string>(herald.child, 'profileStop', { path: join(profileDir, `webhooks-${stamp()}.cpuprofile`) });
  for (const problem of receiptProblems.slice(0, 5)) failures.push({ what: 'webhook receipt', detail: problem });

  // A replayed batch (re-signed: a retry from SendGrid is signed afresh) stores nothing.
  const replayed = sign([warmup[0]!.events])[0]!;
  const replay = await post(replayed.payload, replayed.headers).catch((error: unknown) => {
    failures.push({ what: 'webhook replay', detail: error instanceof Error ? error.message : String(error) });
    return undefined;
  });
  if (!replay || replay.stored !== 0 || replay.duplicates !== WEBHOOK_BATCH) failures.push({ what: 'webhook replay', detail: `expected 0 stored and ${WEBHOOK_BATCH} duplicates, got ${JSON.stringify(replay)}` });
  const [stored = { herald: 0, raw: 0 }] = await sql<{ herald: number; raw: number }[]>`
    select count(*) filter (where provider_event_id like 'sendgrid:%')::int as herald, count(*) filter (where provider_event_id like 'raw:%')::int as raw
    from message_events where workspace_id = ${workspaceId}`;
  const expectedStored = (1 + WEBHOOK_ROUNDS * BATCHES_PER_ROUND) * WEBHOOK_BATCH;
  if (stored.herald !== expectedStored || posted !== expectedStored) {
    failures.push({ what: 'webhook storage', detail: `${expectedStored} events posted, ${posted} acknowledged as stored, ${stored.herald} in message_events (${eventsBefore} before)` });
  }
  const finalStatuses = await sql<{ status: string; n: number }[]>`
    select status, count(*)::int as n from messages where workspace_id = ${workspaceId} and source_type = 'action' and source_id = ${sourceId} group by 1 order by 2 desc`;

  // ---- report --------------------------------------------------------------------------------
  const ceilingMedian = median(ceilingRounds.map((r) => r.perSecond));
  const sendRatio = emailsPerSecond / ceilingMedian;
  const webhookMedian = median(webhookRounds.http);
  const rawMedian = median(webhookRounds.raw);
  const webhookRatio = webhookMedian / rawMedian;
  const webhookRoundRatios = webhookRounds.http.map((v, i) => v / webhookRounds.raw[i]!);

  say('');
  say(
    table([
      [`bench:send (node ${process.version}, ${run.cores} cores)`, 'figure', 'ceiling', '', 'ratio', 'target'],
      [`emails sent, ${incomplete ? `INCOMPLETE: ${int(sentAtStop)} of ` : ''}${int(MESSAGES)} at concurrency ${SEND_CONCURRENCY} (emails/s)`, int(emailsPerSecond), int(ceilingMedian), `(mock SendGrid, autocannon c${SEND_CONCURRENCY}, ${int(ceilingBody.length)} B bodies)`, verdict(sendRatio, TARGET_SEND), `>= ${percent(TARGET_SEND)}`],
      ...floors.map((f) => [`durable floor, ${f.inFlight} in flight: hand-written claim, mark, request, outcome (emails/s)`, int(f.perSecond), int(ceilingMedian), '(mock SendGrid, as above)', percent(f.perSecond / ceilingMedian), '']),
      ['Herald against the better durable floor (emails/s)', int(emailsPerSecond), int(floorPerSecond), '(durable floor)', percent(emailsPerSecond / floorPerSecond), ''],
      [`webhook events, batches of ${int(WEBHOOK_BATCH)}, concurrency ${WEBHOOK_CONCURRENCY} (events/s)`, int(webhookMedian), int(rawMedian), '(raw INSERT)', verdict(webhookRatio, TARGET_WEBHOOK), `>= ${percent(TARGET_WEBHOOK)}`],
    ], [0, 3]),
  );
  say('');
  say(`sending: ${int(sentAtStop)} of ${int(MESSAGES)} emails in ${sendSeconds.toFixed(2)} s${incomplete ? ` (${incomplete})` : ''}; mock ceiling rounds ${ceilingRounds.map((r) => int(r.perSecond)).join(' / ')} req/s (1 before the send, ${CEILING_ROUNDS_AFTER} after)`);
  say(
    `  CPU during the send (cores): Herald ${sendCpu.heraldCores}, mock ${sendCpu.mockCores}, PostgreSQL ${sendCpu.postgresCores}; machine ${percent(sendCpu.machineBusy)} busy; ` +
      `Herald RSS peak ${mib(rssPeak)} (sampled every ${POLL_MS} ms), VmHWM ${mib(heraldMemory.hwm)} (whole life, import included)`,
  );
  say(`  statuses at the end of the send: ${statuses.map((s) => `${s.status}${s.reason ? ` (${s.reason})` : ''} ${int(s.n)}`).join(', ')}; status count query median ${ms(median(pollTimes))} (${pollTimes.length} of them)`);
  say(`  mock: ${int(mockDelta.accepted)} accepted / ${int(mockDelta.received)} received / ${int(mockDelta.rejected)} rejected for ${int(MESSAGES)} messages; mean body ${int(mockDelta.meanBodyBytes)} B`);
  say(`webhooks: rounds ${webhookRounds.http.map(int).join(' / ')} events/s; raw INSERT ${webhookRounds.raw.map(int).join(' / ')} rows/s; ratios within each round ${webhookRoundRatios.map(percent).join(' / ')}; batch p50 ${ms(median(webhookRounds.latency))}`);
  say(`  stored: ${int(stored.herald)} of ${int(expectedStored)} posted events; replayed batch: ${replay ? `${replay.stored} stored, ${int(replay.duplicates)} duplicates` : 'failed'}; statuses after: ${finalStatuses.map((s) => `${s.status} ${int(s.n)}`).join(', ')}`);
  sayErrorTotals(failures.length > 0);
  const profiles: Record<string, unknown> = {};
  for (const [phase, path] of [['send', sendProfile], ['webhooks', webhookProfile]] as const) {
    if (!path) continue;
    const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    const top = { functions: selfTime(profile, 'function', 25), packages: selfTime(profile, 'package', 15) };
    profiles[phase] = { path, ...top };
    say('');
    say(`Herald's CPU profile, ${phase} phase (${path}): self time by function`);
    say(table([['function', 'ms', 'share'], ...top.functions.map((t) => [t.name, int(t.ms), percent(t.share)])]));
    say(`by package or file: ${top.packages.map((t) => `${t.name} ${percent(t.share)}`).join(', ')}`);
  }

  writeReport('send.json', { ...run, pgVersion, cpuProfileDir }, {
    settings: {
      messages: MESSAGES, enqueueBatch: ENQUEUE_BATCH, sendConcurrency: SEND_CONCURRENCY, ceilingSeconds: SECONDS, ceilingRounds: 1 + CEILING_ROUNDS_AFTER, warmupSeconds: WARMUP_SECONDS,
      webhookBatch: WEBHOOK_BATCH, webhookConcurrency: WEBHOOK_CONCURRENCY, webhookRounds: WEBHOOK_ROUNDS, batchesPerRound: BATCHES_PER_ROUND, htmlBytes: Buffer.byteLength(content.html), trackedLinks: PRODUCTS.length,
    },
    sending: {
      unit: 'emails/s',
      figure: Math.round(emailsPerSecond),
      complete: !incomplete,
      incomplete: incomplete ?? null,
      sentAtStop,
      seconds: round3(sendSeconds),
      enqueueSeconds: round3((enqueueDone - clockStart) / 1000),
      ceiling: {
        name: `SendGrid mock (own process, record: false), autocannon at ${SEND_CONCURRENCY} connections`,
        bodyBytes: ceilingBody.length,
        heraldBodyBytes: heraldBodyBytes,
        median: Math.round(ceilingMedian),
        rounds: ceilingRounds.map((r) => Math.round(r.perSecond)),
        latencyMs: { p50: median(ceilingRounds.map((r) => r.p50)), p99: median(ceilingRounds.map((r) => r.p99)) },
      },
      ratio: round3(sendRatio),
      floor: {
        name: 'hand-written durable send loop (bench-send-floor.ts): batched insert, claim under a lease, committed mark, request, committed outcome; no render, no content, no action templates',
        figure: Math.round(floorPerSecond), ratioToCeiling: round3(floorPerSecond / ceilingMedian), heraldRatio: round3(emailsPerSecond / floorPerSecond),
        runs: floors.map((f) => ({ inFlight: f.inFlight, figure: Math.round(f.perSecond), seconds: round3(f.seconds), ratioToCeiling: round3(f.perSecond / ceilingMedian), cpu: f.cpu })),
      },
      target: TARGET_SEND,
      met: sendRatio >= TARGET_SEND,
      statuses,
      mock: mockDelta,
      cpu: sendCpu,
      heraldRss: { peakDuringSendBytes: rssPeak, hwmBytes: heraldMemory.hwm },
      pollQueryMs: round3(median(pollTimes)),
    },
    webhooks: {
      unit: 'events/s',
      median: Math.round(webhookMedian),
      rounds: webhookRounds.http.map(Math.round),
      batchLatencyMs: round3(median(webhookRounds.latency)),
      ceiling: { name: `raw multi-row INSERT of ${WEBHOOK_BATCH} rows into message_events (postgres.js)`, median: Math.round(rawMedian), rounds: webhookRounds.raw.map(Math.round) },
      ratio: round3(webhookRatio),
      roundRatios: webhookRoundRatios.map(round3),
      target: TARGET_WEBHOOK,
      met: webhookRatio >= TARGET_WEBHOOK,
      stored: stored.herald,
      expected: expectedStored,
      replay: replay ?? null,
      statusesAfter: finalStatuses,
    },
    profiles,
  });
  return failures.length ? 1 : 0;
}

/** A SendGrid v3 request like the one @sendgrid/mail makes for the probe message, padded or cut to `bytes`. */
function mailBody(probe: { to_address: string | null; rendered: Record<string, unknown> | null }, messageId: string, workspaceId: string, bytes: number): Buffer {
  const r = probe.rendered ?? {};
  const html = String(r.html ?? '');
  const unsubscribe = /Unsubscribe: (\S+)/.exec(String(r.text ?? ''))?.[1] ?? `https://herald.bench.example.com/t/u/${'x'.repeat(160)}`;
  const build = (h: string) =>
    Buffer.from(
      JSON.stringify({
        from: r.from,
        subject: r.subject,
        personalizations: [{ to: [{ email: probe.to_address }] }],
        content: [
          { type: 'text/plain', value: String(r.text ?? '') },
          { type: 'text/html', value: h },
        ],
        headers: { 'List-Unsubscribe': `<${unsubscribe}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
        custom_args: { herald_message_id: messageId, herald_workspace_id: workspaceId },
      }),
    );
  // Cut a little more than the excess (escaped characters count double), then pad with spaces (one byte each).
  let base = html;
  let body = build(base);
  if (body.length > bytes) body = build((base = html.slice(0, Math.max(0, html.length - (body.length - bytes) - 64))));
  if (body.length < bytes) body = build(base + ' '.repeat(bytes - body.length));
  return body;
}

/** Runs fn over items with at most `concurrency` at a time. */
async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const mib = (bytes: number) => (Number.isFinite(bytes) ? `${Math.round(bytes / 1024 / 1024)} MiB` : 'n/a');
const stamp = () => new Date().toISOString().replace(/[:.]/g, '-');

const mode = process.argv[2];
if (mode === '--serve') await serve();
else if (mode === '--mock') await mock();
else await runBench('bench:send', main);
