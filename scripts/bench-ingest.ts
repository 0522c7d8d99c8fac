// npm run bench:ingest — event ingestion through POST /v1/events against two ceilings measured
// in the same run on the same machine:
//   1. batches of 1000 events (events/s)  vs  ceiling A: a multi-row INSERT of the same rows
//      straight into PostgreSQL (postgres.js, same batch size, same concurrency);
//   2. one event per request at concurrency 50 (req/s)  vs  ceiling B: a plain Fastify
//      hello-world process hit with autocannon at the same concurrency and duration.
// Herald and the hello-world server run in child processes of this script (modes --serve and
// --hello), so the load generator never shares an event loop with a server. Rounds of the four
// measurements are interleaved, so that the growing events table and the machine's drift weigh
// on the figures and their ceilings alike; medians of the rounds are reported.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or, with neither
// set, on an embedded PostgreSQL started in a temporary directory; dropped at the end.
// Settings (environment): BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_PROFILE=1 runs Herald with
// --cpu-prof and keeps the profile in bench/profiles/.
// Exit status: 0 when the runs were clean (even when a target is missed: this is a measurement),
// 1 when any request failed (non-2xx, connection error, timeout) or the setup failed.
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { int, median, ms, percent, round3, table, verdict } from './bench-lib.ts';
import {
  begin, benchDatabase, cleanups, DRAIN_MS, failures, heraldApi, measure, positive, runBench, say, sayErrorTotals, serveHelloWorld, serveHerald, startChild, startHerald, tempDir, totals, writeReport,
} from './bench-harness.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const BATCH_SIZE = 1000;
const BATCH_CONCURRENCY = 4;
const SINGLE_CONCURRENCY = 50;
const CUSTOMERS = 10_000;
const ROUNDS = positive(process.env.BENCH_ROUNDS, 3);
const SECONDS = positive(process.env.BENCH_SECONDS, 5);
const WARMUP_SECONDS = 2;
const TARGET_BATCH = 0.5;
const TARGET_SINGLE = 0.4;

// ---- child modes -------------------------------------------------------------------------------

// Herald itself: serveHerald (bench-harness.ts).


// ---- the bench ---------------------------------------------------------------------------------

interface EventTemplate {
  externalId: string;
  type: string;
  properties: { total: number; sku: string };
}

async function main(): Promise<number> {
  const run = begin('bench:ingest', `${ROUNDS} rounds of ${SECONDS} s per measurement, interleaved, after a ${WARMUP_SECONDS} s warm-up of each`);
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp);

  // The two servers.
  const profileDir = resolve('bench', 'profiles');
  const profile = process.env.BENCH_PROFILE === '1';
  if (profile) mkdirSync(profileDir, { recursive: true });
  const cpuProfileDir = profile ? profileDir : undefined;
  const [herald, helloServer] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, cpuProfileDir, noun: 'server process' }),
    startChild(SCRIPT, 'hello world', ['--hello'], { noun: 'server process' }),
  ]);
  const { rootToken, url: heraldUrl } = herald;
  const helloUrl = `http://127.0.0.1:${helloServer.port}`;

  // A workspace, a key and the customers, through the API.
  const api = heraldApi(heraldUrl);
  const call = (path: string, token: string, body: unknown) => api('POST', path, token, body);
  const workspace = await call('/v1/workspaces', rootToken, { name: 'bench' });
  const workspaceId = String(workspace.id);
  const key = await call(`/v1/workspaces/${workspaceId}/api-keys`, rootToken, { name: 'bench', scopes: ['read', 'write'] });
  const apiKey = String(key.token);
  let setupEvents = 0;
  for (let from = 0; from < CUSTOMERS; from += BATCH_SIZE) {
    const events = Array.from({ length: Math.min(BATCH_SIZE, CUSTOMERS - from) }, (_, i) => ({ externalId: `c${from + i}`, type: 'customer.seen' }));
    const answer = await call('/v1/events', apiKey, { events });
    if (answer.accepted !== events.length) throw new Error(`setup: expected ${events.length} accepted events, got ${JSON.stringify(answer).slice(0, 300)}`);
    setupEvents += events.length;
  }
  say(`setup: workspace ${workspaceId}, ${int(CUSTOMERS)} customers (database ${dbName}, PostgreSQL ${pgVersion})`);

  const sql = postgres(benchUrl, { max: BATCH_CONCURRENCY, onnotice: () => {} });
  cleanups.push(() => sql.end({ timeout: 5 }));
  const customerIds = new Map<string, string>();
  for (const row of await sql<{ id: string; external_id: string }[]>`select id, external_id from customers where workspace_id = ${workspaceId}`) customerIds.set(row.external_id, row.id);
  if (customerIds.size !== CUSTOMERS) throw new Error(`setup: expected ${CUSTOMERS} customers, found ${customerIds.size}`);

  // The events: the same templates feed the HTTP batches and the raw INSERTs.
  const randomEvent = (): EventTemplate => ({
    externalId: `c${Math.floor(Math.random() * CUSTOMERS)}`,
    type: 'order.placed',
    properties: { total: Math.round(Math.random() * 50_000) / 100, sku: `SKU-${Math.floor(Math.random() * 1_000_000).toString(36).toUpperCase()}` },
  });
  const batches = Array.from({ length: 32 }, () => Array.from({ length: BATCH_SIZE }, randomEvent));
  const batchBodies = batches.map((events) => Buffer.from(JSON.stringify({ events })));
  const singleBodies = Array.from({ length: 20_000 }, () => Buffer.from(JSON.stringify(randomEvent())));
  const rowTemplates = batches.map((events) => events.map((e) => ({ customer_id: customerIds.get(e.externalId)!, type: e.type, properties: e.properties })));
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };

  // One request of each kind, checked in full, before anything is timed.
  const probe = async (body: Buffer, expected: number) => {
    const response = await fetch(`${heraldUrl}/v1/events`, { method: 'POST', headers, body });
    const answer = (await response.json()) as { accepted?: number; duplicates?: number };
    if (response.status !== 200 || answer.accepted !== expected || answer.duplicates !== 0) {
      throw new Error(`probe: expected 200 with ${expected} accepted, got ${response.status} ${JSON.stringify(answer).slice(0, 300)}`);
    }
  };
  await probe(batchBodies[0]!, BATCH_SIZE);
  await probe(singleBodies[0]!, 1);
  let acknowledged = setupEvents + BATCH_SIZE + 1;

  let batchCursor = 0;
  let singleCursor = 0;
  const httpBatches = async (seconds: number, what: string) => {
    const { result } = await measure({
      url: heraldUrl,
      connections: BATCH_CONCURRENCY,
      duration: seconds,
      timeout: 30,
      headers,
      requests: [{ method: 'POST', path: '/v1/events', setupRequest: (request) => ({ ...request, body: batchBodies[batchCursor++ % batchBodies.length]! }) }],
    }, what);
    acknowledged += result['2xx'] * BATCH_SIZE;
    return { perSecond: (result['2xx'] * BATCH_SIZE) / result.duration, result };
  };
  const httpSingles = async (seconds: number, what: string) => {
    const single = await measure({
      url: heraldUrl,
      connections: SINGLE_CONCURRENCY,
      duration: seconds,
      headers,
      requests: [{ method: 'POST', path: '/v1/events', setupRequest: (request) => ({ ...request, body: singleBodies[singleCursor++ % singleBodies.length]! }) }],
    }, what);
    acknowledged += single.result['2xx'];
    return single;
  };
  const helloWorld = (seconds: number, what: string) => measure({ url: helloUrl, connections: SINGLE_CONCURRENCY, duration: seconds }, what);
  // Ceiling A: BATCH_CONCURRENCY loops, each inserting batches of BATCH_SIZE rows. Like autocannon,
  // only the batches finished within the duration count.
  let rowCursor = 0;
  const rawInserts = async (seconds: number, what: string) => {
    const startedAt = performance.now();
    const deadline = startedAt + seconds * 1000;
    let inserted = 0;
    let errors = 0;
    let firstError: unknown;
    const loop = async () => {
      while (performance.now() < deadline) {
        const now = new Date();
        const template = rowTemplates[rowCursor++ % rowTemplates.length]!;
        const rows = template.map((t) => ({ workspace_id: workspaceId, id: randomUUID(), customer_id: t.customer_id, type: t.type, properties: t.properties, occurred_at: now, received_at: now, client_id: null }));
        try {
          await sql`insert into events ${sql(rows, 'workspace_id', 'id', 'customer_id', 'type', 'properties', 'occurred_at', 'received_at', 'client_id')}`;
          acknowledged += rows.length;
          if (performance.now() <= deadline) inserted += rows.length;
        } catch (error) {
          errors++;
          firstError ??= error;
        }
      }
    };
    await Promise.all(Array.from({ length: BATCH_CONCURRENCY }, loop));
    totals.failedInserts += errors;
    if (errors) failures.push({ what, detail: `${errors} failed INSERTs, first: ${firstError instanceof Error ? firstError.message : String(firstError)}` });
    await sleep(DRAIN_MS);
    return { perSecond: inserted / seconds };
  };

  say('warming up...');
  await httpBatches(WARMUP_SECONDS, 'warm-up: batches');
  await rawInserts(WARMUP_SECONDS, 'warm-up: raw INSERT');
  await httpSingles(WARMUP_SECONDS, 'warm-up: single events');
  await helloWorld(WARMUP_SECONDS, 'warm-up: hello world');

  const rounds = { batch: [] as number[], rawInsert: [] as number[], single: [] as number[], singleP50: [] as number[], singleP99: [] as number[], hello: [] as number[], helloP50: [] as number[], helloP99: [] as number[] };
  for (let round = 1; round <= ROUNDS; round++) {
    const batch = await httpBatches(SECONDS, `round ${round}: batches`);
    const raw = await rawInserts(SECONDS, `round ${round}: raw INSERT`);
    const single = await httpSingles(SECONDS, `round ${round}: single events`);
    const hw = await helloWorld(SECONDS, `round ${round}: hello world`);
    rounds.batch.push(batch.perSecond);
    rounds.rawInsert.push(raw.perSecond);
    rounds.single.push(single.perSecond);
    rounds.singleP50.push(single.p50);
    rounds.singleP99.push(single.p99);
    rounds.hello.push(hw.perSecond);
    rounds.helloP50.push(hw.p50);
    rounds.helloP99.push(hw.p99);
    say(
      `round ${round}/${ROUNDS}: batches ${int(batch.perSecond)} events/s, raw INSERT ${int(raw.perSecond)} rows/s, ` +
        `single ${int(single.perSecond)} req/s (p50 ${ms(single.p50)}, p99 ${ms(single.p99)}), hello world ${int(hw.perSecond)} req/s`,
    );
  }

  // Every acknowledged event must be stored (requests cut off at the end of a run may add a few more).
  const [{ stored } = { stored: 0 }] = await sql<{ stored: number }[]>`select count(*)::int as stored from events where workspace_id = ${workspaceId}`;
  if (stored < acknowledged) failures.push({ what: 'storage check', detail: `${acknowledged} events acknowledged but only ${stored} stored` });

  const batchMedian = median(rounds.batch);
  const rawMedian = median(rounds.rawInsert);
  const singleMedian = median(rounds.single);
  const helloMedian = median(rounds.hello);
  const batchRatio = batchMedian / rawMedian;
  const singleRatio = singleMedian / helloMedian;
  // Each round's figure over the ceiling measured next to it: less exposed to drift of the machine.
  const batchRoundRatios = rounds.batch.map((v, i) => v / rounds.rawInsert[i]!);
  const singleRoundRatios = rounds.single.map((v, i) => v / rounds.hello[i]!);

  say('');
  say(
    table([
      [`bench:ingest (node ${process.version}, ${run.cores} cores)`, 'median', 'ceiling', '', 'ratio', 'target'],
      [`events, batches of ${BATCH_SIZE}, concurrency ${BATCH_CONCURRENCY} (events/s)`, int(batchMedian), int(rawMedian), '(raw INSERT)', verdict(batchRatio, TARGET_BATCH), `>= ${percent(TARGET_BATCH)}`],
      [`single events, concurrency ${SINGLE_CONCURRENCY} (req/s)`, int(singleMedian), int(helloMedian), '(hello world)', verdict(singleRatio, TARGET_SINGLE), `>= ${percent(TARGET_SINGLE)}`],
    ], [0, 3]),
  );
  say('');
  say(`single events latency (median of rounds): p50 ${ms(median(rounds.singleP50))}, p99 ${ms(median(rounds.singleP99))}; hello world: p50 ${ms(median(rounds.helloP50))}, p99 ${ms(median(rounds.helloP99))}`);
  say(`rounds: batches ${rounds.batch.map(int).join(' / ')}; raw INSERT ${rounds.rawInsert.map(int).join(' / ')}; single ${rounds.single.map(int).join(' / ')}; hello world ${rounds.hello.map(int).join(' / ')}`);
  say(`ratios within each round: batches ${batchRoundRatios.map(percent).join(' / ')}; single ${singleRoundRatios.map(percent).join(' / ')}`);
  say(`storage check: ${int(stored)} events stored, ${int(acknowledged)} acknowledged (the difference: requests cut off at the end of a run)`);
  sayErrorTotals();

  writeReport('ingest.json', { ...run, pgVersion, cpuProfileDir }, {
    settings: { rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, batchSize: BATCH_SIZE, batchConcurrency: BATCH_CONCURRENCY, singleConcurrency: SINGLE_CONCURRENCY, customers: CUSTOMERS },
    batch: {
      unit: 'events/s',
      median: Math.round(batchMedian),
      rounds: rounds.batch.map(Math.round),
      ceiling: { name: `raw multi-row INSERT of ${BATCH_SIZE} rows (postgres.js)`, median: Math.round(rawMedian), rounds: rounds.rawInsert.map(Math.round) },
      ratio: round3(batchRatio),
      roundRatios: batchRoundRatios.map(round3),
      target: TARGET_BATCH,
      met: batchRatio >= TARGET_BATCH,
    },
    single: {
      unit: 'req/s',
      median: Math.round(singleMedian),
      rounds: rounds.single.map(Math.round),
      latencyMs: { p50: median(rounds.singleP50), p99: median(rounds.singleP99) },
      ceiling: { name: 'Fastify hello world', median: Math.round(helloMedian), rounds: rounds.hello.map(Math.round), latencyMs: { p50: median(rounds.helloP50), p99: median(rounds.helloP99) } },
      ratio: round3(singleRatio),
      roundRatios: singleRoundRatios.map(round3),
      target: TARGET_SINGLE,
      met: singleRatio >= TARGET_SINGLE,
    },
    storage: { stored, acknowledged },
  });
  return failures.length ? 1 : 0;
}

const mode = process.argv[2];
if (mode === '--serve') await serveHerald();
else if (mode === '--hello') await serveHelloWorld();
else await runBench('bench:ingest', main);
