// npm run load — a mixed workload against one Herald for a fixed time (issue 7, point 4): single
// events, event batches, customer upserts, timeline reads and signed SendGrid Event Webhook
// batches, all at once, each kind with its own autocannon connections (scripts/load-workload.ts
// says what each request is). Reported: requests/s, p50 and p99 latency, non-2xx and connection
// errors per kind and in total; Herald's memory (RSS from /proc every second, heap and event-loop
// delay over IPC) over the run, and what it retains after a full GC (idle, at the start of the
// run, at its end: a leak shows there); the backlog the workers were
// left with and how long they took to clear it; and, as a ceiling, a Fastify hello world hit with
// the same connections before and after the run (measured alone, not during the mix).
//
// Herald runs in a child process (mode --serve, HERALD_ROLE=all: its workers run the seeded flow
// and the send worker), the hello world in another (--hello); this process only generates load.
// Before the run: a workspace, an API key, LOAD_CUSTOMERS customers, LOAD_MESSAGES SendGrid
// messages already sent (for the webhooks), a live flow that emails (sandbox) each customer who
// sends "checkout.completed"; one probe of each kind; a warm-up of the mix.
//
// Memory. V8 lets garbage pile up to a few times the live heap before a full collection, and
// raises that ceiling in steps as the load goes on: sampled RSS climbs for a minute or more under
// load (in steps of 30 to 50 MB, 460 to 550 MB in one run whose live heap grew 3 MB), so its growth
// over half a 60 s run says more about V8's heuristics than about leaks. What the run checks is
// RSS after a full collection (the inspector's HeapProfiler.collectGarbage: no flag needed), right
// after the warm-up and again after the run once the workers' backlog is cleared: what Herald
// retains. The sampled RSS must stay under a fixed ceiling; its start, middle, end, peak and
// growth over the second half are reported beside.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or, with neither
// set, on an embedded PostgreSQL started in a temporary directory; dropped at the end unless
// BENCH_KEEP_DATABASE=1.
// Settings (environment): LOAD_SECONDS (60), LOAD_CONNECTIONS (24, shared by the kinds in
// proportion to LOAD_WEIGHTS, at least 1 each), LOAD_WEIGHTS
// ("events=8,batch=2,customers=5,timeline=6,webhooks=3"; 0 leaves a kind out), LOAD_BATCH (100
// events per batch), LOAD_WEBHOOK_BATCH (50 events per webhook post), LOAD_CUSTOMERS (5000),
// LOAD_MESSAGES (5000), LOAD_WARMUP_SECONDS (10), LOAD_CEILING_SECONDS (5), LOAD_DRAIN_SECONDS
// (60, the most to wait for the workers' backlog), LOAD_MAX_GROWTH (0.2), LOAD_MAX_RSS_MB (1024),
// HERALD_DB_POOL (Herald's pool, 20). Herald's rate limit is set out of reach (HERALD_RATE_LIMIT
// 100,000,000 a minute, as in the benches): a 429 is reported apart and would not fail the run.
// Exit status: 1 when any request failed (a non-2xx other than 429, a connection error or a
// timeout), an answer was not what its request should get, a stored count falls short of what
// was acknowledged, RSS was unbounded (the RSS retained after a full GC grew more than
// LOAD_MAX_GROWTH over the run, or the sampled RSS peaked over LOAD_MAX_RSS_MB), the workers'
// backlog was not cleared within LOAD_DRAIN_SECONDS, or the setup failed; 0 otherwise. The
// 1024 MB ceiling is some 1.7 times the most seen in 60 s runs on a 2-core machine (about 600 MB,
// of which some 200 MB is retained after a full GC, 70 MB of it live heap).
import { performance, monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { int, median, ms as msOf, percent, round3, table } from './bench-lib.ts';
import {
  ask, begin, benchDatabase, cleanups, DRAIN_MS, failures, heraldApi, measure, positive, runBench, say, sayErrorTotals, serveHelloWorld, serveHerald, startChild, startHerald, tempDir, totals, writeReport,
} from './bench-harness.ts';
import { KINDS, newChecks, seedWorkload, workloadRequests, type Kind, type WorkloadSettings } from './load-workload.ts';
import { memoryVerdict, quantile, rssMbOf, runMix, sampleMemory, type KindRun, type MemoryAnswer } from './load-measure.ts';

const SCRIPT = fileURLToPath(import.meta.url);
/** Milliseconds; autocannon's own latencies (the ceiling's) are whole milliseconds, so 0 means under one. */
const ms = (n: number) => (n === 0 ? '< 1 ms' : msOf(n));
const SECONDS = positive(process.env.LOAD_SECONDS, 60);
const CONNECTIONS = positive(process.env.LOAD_CONNECTIONS, 24);
const WARMUP_SECONDS = positive(process.env.LOAD_WARMUP_SECONDS, 10);
const CEILING_SECONDS = positive(process.env.LOAD_CEILING_SECONDS, 5);
const DRAIN_SECONDS = positive(process.env.LOAD_DRAIN_SECONDS, 60);
const MAX_GROWTH = Number(process.env.LOAD_MAX_GROWTH ?? '') > 0 ? Number(process.env.LOAD_MAX_GROWTH) : 0.2;
const MAX_RSS_MB = positive(process.env.LOAD_MAX_RSS_MB, 1024);
const DB_POOL = positive(process.env.HERALD_DB_POOL, 20);
const WORKLOAD: WorkloadSettings = {
  customers: positive(process.env.LOAD_CUSTOMERS, 5000),
  messages: positive(process.env.LOAD_MESSAGES, 5000),
  batch: Math.min(positive(process.env.LOAD_BATCH, 100), 1000),
  webhookBatch: positive(process.env.LOAD_WEBHOOK_BATCH, 50),
};
const LABELS: Record<Kind, string> = {
  events: 'POST /v1/events (one event)',
  batch: `POST /v1/events (batch of ${WORKLOAD.batch})`,
  customers: 'POST /v1/customers (upsert)',
  timeline: 'GET /v1/customers/{id}/timeline',
  webhooks: `POST /webhooks/sendgrid (${WORKLOAD.webhookBatch} events, signed)`,
};

/** LOAD_WEIGHTS as kind -> weight (unknown kinds refused). */
function weights(): Record<Kind, number> {
  const result: Record<Kind, number> = { events: 8, batch: 2, customers: 5, timeline: 6, webhooks: 3 };
  for (const part of (process.env.LOAD_WEIGHTS ?? '').split(',').filter(Boolean)) {
    const [name, value] = part.split('=').map((s) => s.trim());
    if (!KINDS.includes(name as Kind) || !/^\d+$/.test(value ?? '')) throw new Error(`LOAD_WEIGHTS: "${part}" is not kind=integer with a kind among ${KINDS.join(', ')}`);
    result[name as Kind] = Number(value);
  }
  return result;
}

/** The connections of each kind with a weight: in proportion (largest remainders), at least one each. */
function shareConnections(w: Record<Kind, number>, total: number): Partial<Record<Kind, number>> {
  const kinds = KINDS.filter((k) => w[k] > 0);
  if (kinds.length === 0) throw new Error('LOAD_WEIGHTS leaves no kind');
  const sum = kinds.reduce((a, k) => a + w[k], 0);
  const spare = Math.max(0, total - kinds.length);
  const exact = kinds.map((k) => ({ k, x: (spare * w[k]) / sum }));
  const shares = new Map(exact.map(({ k, x }) => [k, 1 + Math.floor(x)]));
  let left = spare - exact.reduce((a, { x }) => a + Math.floor(x), 0);
  for (const { k } of [...exact].sort((a, b) => (b.x % 1) - (a.x % 1))) if (left-- > 0) shares.set(k, shares.get(k)! + 1);
  return Object.fromEntries(shares);
}

// ---- child modes -------------------------------------------------------------------------------

/** Herald with its workers, answering `memory` (process.memoryUsage and the loop's delay since the last answer). */
async function serve(): Promise<void> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const memory = (): MemoryAnswer => {
    const m = process.memoryUsage();
    const loopDelayMs = { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 };
    delay.reset();
    return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, loopDelayMs };
  };
  await serveHerald({ HERALD_ROLE: 'all', HERALD_DB_POOL: String(DB_POOL) }, {
    memory,
    /** A full garbage collection (through the inspector: no --expose-gc needed), then the memory: what is live. */
    async gc(): Promise<MemoryAnswer> {
      const { Session } = await import('node:inspector/promises');
      const session = new Session();
      session.connect();
      try {
        await session.post('HeapProfiler.collectGarbage');
      } finally {
        session.disconnect();
      }
      return memory();
    },
  });
}


// ---- CPU ---------------------------------------------------------------------------------------

const TICK_MS = 10;
const cpuMsOf = (pid: number) => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
};
const machineTicks = () => {
  const t = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = t.reduce((a, b) => a + b, 0);
  return { busy: total - t[3]! - (t[4] ?? 0), total };
};

/** Cores used by Herald, the PostgreSQL backends of the bench database and this process, and the machine's busy share, from now to the call of the result. */
async function cpuMeter(sql: postgres.Sql, dbName: string, heraldPid: number) {
  const backends = async () => (await sql<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${dbName}`).map((r) => r.pid);
  const before = new Map((await backends()).map((pid) => [pid, cpuMsOf(pid)]));
  const start = { at: performance.now(), herald: cpuMsOf(heraldPid), self: process.cpuUsage(), machine: machineTicks() };
  return async () => {
    const wall = performance.now() - start.at;
    const self = process.cpuUsage(start.self);
    const machine = machineTicks();
    let pg = 0;
    for (const pid of new Set([...before.keys(), ...(await backends())])) pg += cpuMsOf(pid) - (before.get(pid) ?? 0);
    const r2 = (n: number) => Math.round(n * 100) / 100;
    return {
      herald: r2((cpuMsOf(heraldPid) - start.herald) / wall), postgres: r2(pg / wall), loadGenerator: r2((self.user + self.system) / 1000 / wall),
      machineBusy: r2((machine.busy - start.machine.busy) / Math.max(1, machine.total - start.machine.total)),
    };
  };
}

// ---- the run -----------------------------------------------------------------------------------

/** Error accounting of one mix: the harness totals, and a failure per kind for anything but 2xx (429 apart). */
function account(runs: KindRun[], what: string): void {
  for (const { kind, result } of runs) {
    const rateLimited = result.statusCodeStats['429']?.count ?? 0;
    totals.requests += result.requests.total;
    totals.non2xx += result.non2xx - rateLimited;
    totals.connectionErrors += result.errors;
    totals.timeouts += result.timeouts;
    const bad = Object.entries(result.statusCodeStats).filter(([code]) => !code.startsWith('2') && code !== '429').map(([code, { count }]) => `${code} x${count}`);
    if (result.errors) bad.push(`${result.errors} connection errors${result.timeouts ? ` (${result.timeouts} timeouts)` : ''}`);
    if (bad.length) failures.push({ what: `${what}: ${kind}`, detail: bad.join(', ') });
    if (result['2xx'] === 0) failures.push({ what: `${what}: ${kind}`, detail: 'no successful response at all' });
  }
}

async function main(): Promise<number> {
  const w = weights();
  const shares = shareConnections(w, CONNECTIONS);
  const kinds = KINDS.filter((k) => shares[k]);
  const run = begin(
    'load',
    `${SECONDS} s of a mixed workload after a ${WARMUP_SECONDS} s warm-up; ${kinds.map((k) => `${k} ${shares[k]}`).join(', ')} connections (LOAD_WEIGHTS ${kinds.map((k) => `${k}=${w[k]}`).join(',')}); ` +
      `Herald role all, pool ${DB_POOL}; RSS limits: retained after a full GC grows <= ${percent(MAX_GROWTH)} over the run, peak <= ${MAX_RSS_MB} MB`,
  );
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp, process.env.BENCH_KEEP_DATABASE === '1');
  const [herald, helloServer] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, noun: 'server process' }),
    startChild(SCRIPT, 'hello world', ['--hello'], { noun: 'server process' }),
  ]);
  const heraldPid = herald.child.pid!;
  const MB = 1024 * 1024;
  const mb = (n: number) => Math.round((n / MB) * 10) / 10;
  const live = async () => {
    const m = await ask<MemoryAnswer>(herald.child, 'gc');
    return { rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), externalMb: mb(m.external) };
  };
  const idle = await live();
  const sql = postgres(benchUrl, { max: 4, onnotice: () => {} });
  cleanups.push(() => sql.end({ timeout: 5 }));

  const setupStarted = performance.now();
  const seeded = await seedWorkload(heraldApi(herald.url), herald.rootToken, sql, WORKLOAD);
  say(`setup: workspace ${seeded.workspaceId}, ${int(WORKLOAD.customers)} customers, ${int(WORKLOAD.messages)} sent SendGrid messages, a live flow ${seeded.flowId} (${((performance.now() - setupStarted) / 1000).toFixed(1)} s; database ${dbName}, PostgreSQL ${pgVersion})`);

  const headers = { authorization: `Bearer ${seeded.apiKey}` };
  // One request of each kind, checked, before anything is timed.
  const probeChecks = newChecks();
  const probeRequests = await workloadRequests(seeded, WORKLOAD, probeChecks);
  for (const kind of KINDS) {
    const r = probeRequests[kind];
    const built = r.setupRequest!({ method: r.method, path: r.path, headers: { ...headers, ...r.headers } }, {});
    const response = await fetch(`${herald.url}${built.path}`, { method: built.method, headers: built.headers, ...(built.body ? { body: built.body } : {}) });
    const body = await response.text();
    r.onResponse?.(response.status, body);
    if (!response.ok || probeChecks.unexpected[kind]) throw new Error(`probe ${kind}: ${response.status} ${body.slice(0, 300)}`);
  }
  say(`probe: one request of each kind answered as expected`);

  const checks = newChecks();
  const requests = await workloadRequests(seeded, WORKLOAD, checks);
  const mix = (seconds: number) => runMix(herald.url, headers, kinds.map((k) => ({ kind: k, connections: shares[k]!, request: requests[k] })), seconds);
  const helloWorld = (what: string) => measure({ url: `http://127.0.0.1:${helloServer.port}`, connections: CONNECTIONS, duration: CEILING_SECONDS }, what);

  say('ceiling (hello world, alone), then a warm-up of the mix...');
  const helloBefore = await helloWorld('ceiling before the run: hello world');
  account(await mix(WARMUP_SECONDS), 'warm-up');
  const startOfRun = await live();
  await sleep(DRAIN_MS);

  say(`the run: ${SECONDS} s...`);
  const counted = { ...checks, unexpected: { ...checks.unexpected } };
  const cpu = await cpuMeter(sql, dbName, heraldPid);
  const sampler = sampleMemory(herald.child);
  const runs = await mix(SECONDS);
  const samples = await sampler.stop();
  const cores = await cpu();
  account(runs, 'the run');
  const inRun = <K extends 'eventsAccepted' | 'webhookStored' | 'webhookDuplicates' | 'webhookUnknown' | 'customersCreated' | 'customersUpdated'>(k: K) => checks[k] - counted[k];
  // Answers checked over the warm-up and the run.
  for (const kind of KINDS) {
    const wrong = checks.unexpected[kind];
    if (wrong) failures.push({ what: `warm-up and run: ${kind}`, detail: `${wrong} 2xx answers were not what the request should get; the first: ${checks.firstUnexpected}` });
  }
  if (checks.webhookDuplicates || checks.webhookUnknown) failures.push({ what: 'warm-up and run: webhooks', detail: `${checks.webhookDuplicates} events reported as duplicates, ${checks.webhookUnknown} for unknown messages` });
  await sleep(DRAIN_MS);
  const helloAfter = await helloWorld('ceiling after the run: hello world');

  // The workers' backlog at the end of the run, and how long they take to clear it.
  const backlog = async () => {
    const [row] = await sql<{ queued: number; inFlight: number; sent: number; notSent: number; jobs: number }[]>`select
      (select count(*)::int from messages where workspace_id = ${seeded.workspaceId} and status in ('queued', 'sending')) as "queued",
      (select count(*)::int from flow_entries where workspace_id = ${seeded.workspaceId} and exited_at is null) as "inFlight",
      (select count(*)::int from messages where workspace_id = ${seeded.workspaceId} and source_type = 'flow' and status = 'sent') as "sent",
      (select count(*)::int from messages where workspace_id = ${seeded.workspaceId} and source_type = 'flow' and status not in ('queued', 'sending', 'sent')) as "notSent",
      (select count(*)::int from pgboss.job where state in ('created', 'retry', 'active') and start_after <= now()) as "jobs"`;
    const jobs = await sql<{ name: string; n: number }[]>`select name, count(*)::int as n from pgboss.job where state in ('created', 'retry', 'active') and start_after <= now() group by name order by 2 desc`;
    return { ...row!, jobsByQueue: Object.fromEntries(jobs.map((j) => [j.name, j.n])) };
  };
  const atEnd = await backlog();
  const drainStarted = performance.now();
  let drained = atEnd;
  while ((drained.queued || drained.inFlight) && performance.now() - drainStarted < DRAIN_SECONDS * 1000) {
    await sleep(500);
    drained = await backlog();
  }
  const drainSeconds = drained.queued || drained.inFlight ? null : Math.round((performance.now() - drainStarted) / 100) / 10;
  if (drainSeconds === null) failures.push({ what: 'workers', detail: `still ${drained.queued} messages queued and ${drained.inFlight} flow entries in flight ${DRAIN_SECONDS} s after the run` });
  const rssAfterDrain = rssMbOf(heraldPid);
  const endOfRun = await live();

  // What was acknowledged must be stored.
  const [stored] = await sql<{ events: number; messageEvents: number; customerActions: number; customers: number }[]>`select
    (select count(*)::int from events where workspace_id = ${seeded.workspaceId}) as "events",
    (select count(*)::int from message_events where workspace_id = ${seeded.workspaceId}) as "messageEvents",
    (select count(*)::int from customer_actions where workspace_id = ${seeded.workspaceId}) as "customerActions",
    (select count(*)::int from customers where workspace_id = ${seeded.workspaceId}) as "customers"`;
  const probesAndWarmup = { events: probeChecks.eventsAccepted + counted.eventsAccepted, webhooks: probeChecks.webhookStored + counted.webhookStored };
  if (stored!.events < checks.eventsAccepted + probeChecks.eventsAccepted) failures.push({ what: 'storage check', detail: `${checks.eventsAccepted + probeChecks.eventsAccepted} events acknowledged, ${stored!.events} stored` });
  if (stored!.messageEvents < checks.webhookStored + probeChecks.webhookStored) failures.push({ what: 'storage check', detail: `${checks.webhookStored + probeChecks.webhookStored} webhook events acknowledged, ${stored!.messageEvents} stored` });

  // The figures.
  const memory = memoryVerdict(samples, SECONDS, { startOfRun, endOfRun }, { maxGrowth: MAX_GROWTH, maxRssMb: MAX_RSS_MB });
  if (!memory.bounded) failures.push({ what: 'memory', detail: memory.reasons.join('; ') });
  const per = runs.map((r) => {
    const rateLimited = r.result.statusCodeStats['429']?.count ?? 0;
    const unit = r.kind === 'batch' ? WORKLOAD.batch : r.kind === 'webhooks' ? WORKLOAD.webhookBatch : 1;
    return {
      kind: r.kind as Kind, connections: r.connections, requests: r.result.requests.total, ok: r.result['2xx'], perSecond: r.result['2xx'] / r.result.duration,
      itemsPerSecond: unit > 1 ? (r.result['2xx'] * unit) / r.result.duration : null,
      p50: quantile(r.latencies, 0.5), p90: quantile(r.latencies, 0.9), p99: quantile(r.latencies, 0.99), max: quantile(r.latencies, 1),
      non2xx: r.result.non2xx - rateLimited, rateLimited, errors: r.result.errors, timeouts: r.result.timeouts,
    };
  });
  const all = runs.flatMap((r) => r.latencies);
  const duration = runs[0]!.result.duration;
  const total = {
    connections: CONNECTIONS, requests: per.reduce((a, p) => a + p.requests, 0), ok: per.reduce((a, p) => a + p.ok, 0),
    perSecond: per.reduce((a, p) => a + p.ok, 0) / duration, p50: quantile(all, 0.5), p90: quantile(all, 0.9), p99: quantile(all, 0.99), max: quantile(all, 1),
    non2xx: per.reduce((a, p) => a + p.non2xx, 0), rateLimited: per.reduce((a, p) => a + p.rateLimited, 0), errors: per.reduce((a, p) => a + p.errors, 0), timeouts: per.reduce((a, p) => a + p.timeouts, 0),
  };
  const errorRate = total.requests ? (total.non2xx + total.errors) / total.requests : 0;
  const helloMedian = median([helloBefore.perSecond, helloAfter.perSecond]);
  const perSecondTotal = Array.from({ length: SECONDS }, (_, s) => runs.reduce((a, r) => a + (r.perSecond[s] ?? 0), 0));

  say('');
  say(
    table([
      [`load (node ${process.version}, ${run.cores} cores, ${SECONDS} s)`, 'conn.', 'req/s', 'items/s', 'p50', 'p99', 'max', 'non-2xx', '429', 'errors'],
      ...per.map((p) => [LABELS[p.kind], String(p.connections), int(p.perSecond), p.itemsPerSecond === null ? '' : int(p.itemsPerSecond), ms(p.p50), ms(p.p99), ms(p.max), int(p.non2xx), int(p.rateLimited), int(p.errors)]),
      ['total', String(total.connections), int(total.perSecond), '', ms(total.p50), ms(total.p99), ms(total.max), int(total.non2xx), int(total.rateLimited), int(total.errors)],
      [`ceiling: Fastify hello world, ${CONNECTIONS} connections, alone`, String(CONNECTIONS), int(helloMedian), '', ms(median([helloBefore.p50, helloAfter.p50])), ms(median([helloBefore.p99, helloAfter.p99])), '', '', '', ''],
    ]),
  );
  say(`Herald's mix / hello world: ${percent(total.perSecond / helloMedian)} (hello world before the run ${int(helloBefore.perSecond)} req/s, after ${int(helloAfter.perSecond)})`);
  say(`error rate: ${(errorRate * 100).toFixed(3)}% (${int(total.non2xx)} non-2xx other than 429, ${int(total.errors)} connection errors, ${int(total.timeouts)} timeouts; ${int(total.rateLimited)} rate-limited)`);
  const signed = (n: number) => `${n >= 0 ? '+' : ''}${(n * 100).toFixed(1)}%`;
  say(
    `memory: ${memory.bounded ? 'bounded' : `UNBOUNDED: ${memory.reasons.join('; ')}`} — retained after a full GC: RSS ${startOfRun.rssMb} MB at the start of the run, ${endOfRun.rssMb} MB at its end ` +
      `(${signed(memory.retained.rssGrowth)}, limit +${percent(MAX_GROWTH)}), heap ${startOfRun.heapUsedMb} to ${endOfRun.heapUsedMb} MB (${signed(memory.retained.heapGrowth)}); idle after start: RSS ${idle.rssMb} MB, heap ${idle.heapUsedMb} MB`,
  );
  say(
    `  RSS sampled every second: start ${memory.startMb} MB, middle ${memory.midMb} MB, end ${memory.endMb} MB, peak ${memory.peakMb} MB (limit ${MAX_RSS_MB} MB); ` +
      `second half ${signed(memory.secondHalfGrowth)} (${memory.secondHalfSlopeMbPerMinute} MB/min; not checked: V8's heap sizing); after the backlog ${rssAfterDrain} MB`,
  );
  say(
    `  heap used sampled: start ${memory.heapUsed.startMb} MB, middle ${memory.heapUsed.midMb} MB, end ${memory.heapUsed.endMb} MB, peak ${memory.heapUsed.peakMb} MB; ` +
      `event-loop delay p99, worst second: ${memory.loopDelayP99MaxMs} ms`,
  );
  say(`cores used during the run: Herald ${cores.herald}, PostgreSQL ${cores.postgres}, load generator ${cores.loadGenerator}; machine ${percent(cores.machineBusy)} busy (load average now ${loadavg()[0]!.toFixed(2)}, ${cpus().length} cores)`);
  say(
    `work done in the run: ${int(inRun('eventsAccepted'))} events accepted, ${int(inRun('customersCreated'))} customers created and ${int(inRun('customersUpdated'))} updated, ` +
      `${int(inRun('webhookStored'))} webhook events stored; the flow sent ${int(drained.sent)} sandbox emails (${int(drained.notSent)} not sent)`,
  );
  say(
    `workers at the end of the run: ${int(atEnd.queued)} messages queued, ${int(atEnd.inFlight)} flow entries in flight, ${int(atEnd.jobs)} jobs due (${Object.entries(atEnd.jobsByQueue).map(([q, n]) => `${q} ${n}`).join(', ') || 'none'}); ` +
      `${drainSeconds === null ? `NOT cleared within ${DRAIN_SECONDS} s` : `cleared in ${drainSeconds} s`}`,
  );
  const everyFive = samples.filter((s, i) => Math.round(s.t) % 5 === 0 && s.t > 0 && i < samples.length - 1);
  say(table([['every 5 s', 'req/s', 'RSS MB', 'heap MB', 'loop p99'], ...everyFive.map((s) => {
    const from = Math.max(0, Math.round(s.t) - 5);
    const rate = perSecondTotal.slice(from, Math.round(s.t)).reduce((a, b) => a + b, 0) / Math.max(1, Math.round(s.t) - from);
    return [`${Math.round(s.t)} s`, int(rate), String(s.rssMb), String(s.heapUsedMb ?? 'n/a'), s.loopDelayP99Ms === null ? 'n/a' : ms(s.loopDelayP99Ms)];
  })]));
  say(`storage: ${int(stored!.events)} events (${int(checks.eventsAccepted + probeChecks.eventsAccepted)} acknowledged), ${int(stored!.messageEvents)} webhook events (${int(checks.webhookStored + probeChecks.webhookStored)} acknowledged), ${int(stored!.customerActions)} action templates assigned, ${int(stored!.customers)} customers`);
  say('note: the machine may be shared with other work; the ceiling is measured alone, before and after the run, to show what it could do then');
  sayErrorTotals(failures.length > 0);

  const r3 = (n: number) => round3(n);
  writeReport('load.json', { ...run, pgVersion }, {
    settings: {
      seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, ceilingSeconds: CEILING_SECONDS, connections: CONNECTIONS, weights: w, connectionsByKind: shares,
      heraldRole: 'all', heraldDbPool: DB_POOL, heraldRateLimit: 100_000_000, ...WORKLOAD, maxGrowth: MAX_GROWTH, maxRssMb: MAX_RSS_MB, drainSeconds: DRAIN_SECONDS,
    },
    kinds: Object.fromEntries(per.map((p) => [p.kind, {
      name: LABELS[p.kind], connections: p.connections, requests: p.requests, ok: p.ok, perSecond: Math.round(p.perSecond), itemsPerSecond: p.itemsPerSecond === null ? null : Math.round(p.itemsPerSecond),
      latencyMs: { p50: r3(p.p50), p90: r3(p.p90), p99: r3(p.p99), max: r3(p.max) }, non2xx: p.non2xx, rateLimited: p.rateLimited, errors: p.errors, timeouts: p.timeouts,
    }])),
    total: {
      requests: total.requests, ok: total.ok, perSecond: Math.round(total.perSecond), latencyMs: { p50: r3(total.p50), p90: r3(total.p90), p99: r3(total.p99), max: r3(total.max) },
      non2xx: total.non2xx, rateLimited: total.rateLimited, errors: total.errors, timeouts: total.timeouts, errorRate: errorRate,
      ceiling: { name: `Fastify hello world, ${CONNECTIONS} connections, alone before and after the run`, median: Math.round(helloMedian), rounds: [Math.round(helloBefore.perSecond), Math.round(helloAfter.perSecond)] },
      ratio: r3(total.perSecond / helloMedian),
    },
    memory: { ...memory, afterBacklogMb: rssAfterDrain, idleAfterFullGc: idle, samples },
    perSecond: perSecondTotal,
    cpuCores: cores,
    workers: { atEnd, afterDrain: drained, drainSeconds },
    work: {
      eventsAccepted: inRun('eventsAccepted'), customersCreated: inRun('customersCreated'), customersUpdated: inRun('customersUpdated'), webhookEventsStored: inRun('webhookStored'),
      probesAndWarmup, stored,
    },
  });
  return failures.length ? 1 : 0;
}

const mode = process.argv[2];
if (mode === '--serve') await serve();
else if (mode === '--hello') await serveHelloWorld();
else await runBench('load', main);
