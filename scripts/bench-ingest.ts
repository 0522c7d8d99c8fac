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
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { describeFailures, int, load, median, ms, percent, table, type LoadResult } from './bench-lib.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const BATCH_SIZE = 1000;
const BATCH_CONCURRENCY = 4;
const SINGLE_CONCURRENCY = 50;
const CUSTOMERS = 10_000;
const ROUNDS = positive(process.env.BENCH_ROUNDS, 3);
const SECONDS = positive(process.env.BENCH_SECONDS, 5);
const WARMUP_SECONDS = 2;
/** Pause after each measurement, so that requests cut off at its end do not overlap the next one. */
const DRAIN_MS = 300;
const TARGET_BATCH = 0.5;
const TARGET_SINGLE = 0.4;

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value && Number.isInteger(n) && n > 0 ? n : fallback;
}

type Ready = { ready: true; port: number };
const isReady = (m: unknown): m is Ready => typeof m === 'object' && m !== null && (m as Ready).ready === true;

// ---- child modes -------------------------------------------------------------------------------

/** Herald itself, started through the runtime API like server.ts does. */
async function serve(): Promise<void> {
  const { loadConfig } = await import('../src/config.ts');
  const { startRuntime } = await import('../src/runtime/runtime.ts');
  const env = process.env;
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: env.BENCH_DATABASE_URL,
    HERALD_DATA_DIR: env.BENCH_DATA_DIR,
    HERALD_ROOT_TOKEN: env.BENCH_ROOT_TOKEN,
    HERALD_SECRET: 'x'.repeat(40),
    LOG_LEVEL: 'warn',
    HERALD_RATE_LIMIT: '100000000',
    PORT: '0',
    HOST: '127.0.0.1',
  });
  // Logs at LOG_LEVEL=warn: silent on the happy path; the parent collects what a failure logs.
  const runtime = await startRuntime(config, { logger: true });
  await runtime.app.listen({ port: 0, host: '127.0.0.1' });
  await announce(runtime.app.server.address(), () => runtime.close());
}

/** Ceiling B: the smallest Fastify application there is, in a process of its own. */
async function hello(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  app.get('/', async () => ({ hello: 'world' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  await announce(app.server.address(), () => app.close());
}

/** Tells the parent the port, then stops on its word or when it goes away. */
async function announce(address: unknown, close: () => Promise<unknown>): Promise<void> {
  const port = typeof address === 'object' && address !== null ? (address as { port: number }).port : 0;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await close().catch((error: unknown) => process.stderr.write(`bench child: close failed: ${String(error)}\n`));
    process.exit(0); // exits normally, so that --cpu-prof writes its profile
  };
  process.on('message', (m) => (m === 'stop' ? void stop() : undefined));
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => {}); // a ^C reaches the whole group: the parent decides
  process.send!({ ready: true, port } satisfies Ready);
}

// ---- the bench ---------------------------------------------------------------------------------

interface EventTemplate {
  externalId: string;
  type: string;
  properties: { total: number; sku: string };
}

interface RunFailures {
  what: string;
  detail: string;
}

const failures: RunFailures[] = [];
/** Over every run, warm-ups included. */
const totals = { requests: 0, non2xx: 0, connectionErrors: 0, timeouts: 0, failedInserts: 0 };
/** What Herald logged at warn level or above (the first few lines, and how many). */
const serverLog = { lines: 0, first: [] as string[] };
const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      await step().catch((error: unknown) => process.stderr.write(`cleanup: ${error instanceof Error ? error.message : String(error)}\n`));
    }
  })());
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<number> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const started = performance.now();
  const cores = availableParallelism();
  say(`bench:ingest: node ${process.version}, ${cores} cores (${cpus()[0]?.model.trim() ?? 'unknown cpu'})`);
  say(`${ROUNDS} rounds of ${SECONDS} s per measurement, interleaved, after a ${WARMUP_SECONDS} s warm-up of each`);
  const loadAtStart = loadavg()[0] ?? 0;
  if (loadAtStart > cores / 4) say(`note: the machine is already busy (load average ${loadAtStart.toFixed(2)}): figures and ceilings will be noisier`);

  const tmp = await mkdtemp(join(tmpdir(), 'herald-bench-'));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));

  // The database server: the given one, or an embedded one for this run.
  let adminUrl = process.env.DATABASE_URL || process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    say('DATABASE_URL and TEST_DATABASE_URL are unset: starting an embedded PostgreSQL');
    const { startEmbeddedPostgres } = await import('../src/runtime/embedded-postgres.ts');
    const quiet = { info: () => {}, warn: (m: string) => process.stderr.write(`${m}\n`), debug: () => {} };
    // Run as root, embedded-postgres runs initdb as a "postgres" user, who must reach the directory.
    await chmod(tmp, 0o755);
    const pg = await startEmbeddedPostgres(join(tmp, 'pg-data'), quiet, 'postgres');
    cleanups.push(() => pg.stop());
    adminUrl = pg.url;
  }
  const dbName = `herald_bench_${randomBytes(5).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  cleanups.push(() => admin.end({ timeout: 5 }));
  await admin.unsafe(`create database "${dbName}"`);
  cleanups.push(() => admin.unsafe(`drop database if exists "${dbName}" with (force)`));
  const benchUrlObject = new URL(adminUrl);
  benchUrlObject.pathname = `/${dbName}`;
  const benchUrl = benchUrlObject.toString();
  const [{ version: pgVersion } = { version: '?' }] = await admin<{ version: string }[]>`select current_setting('server_version') as version`;

  // The two servers.
  const rootToken = `hr_bench_${randomBytes(24).toString('base64url')}`;
  const profileDir = resolve('bench', 'profiles');
  const profile = process.env.BENCH_PROFILE === '1';
  if (profile) mkdirSync(profileDir, { recursive: true });
  const [herald, helloServer] = await Promise.all([
    startChild('herald', ['--serve'], { BENCH_DATABASE_URL: benchUrl, BENCH_DATA_DIR: join(tmp, 'herald-data'), BENCH_ROOT_TOKEN: rootToken }, profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
    startChild('hello world', ['--hello'], {}, []),
  ]);
  const heraldUrl = `http://127.0.0.1:${herald.port}`;
  const helloUrl = `http://127.0.0.1:${helloServer.port}`;

  // A workspace, a key and the customers, through the API.
  const call = async (path: string, token: string, body: unknown) => {
    const response = await fetch(`${heraldUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await response.text();
    if (!response.ok) throw new Error(`setup: POST ${path} answered ${response.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
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
    const result = await load({
      url: heraldUrl,
      connections: BATCH_CONCURRENCY,
      duration: seconds,
      timeout: 30,
      headers,
      requests: [{ method: 'POST', path: '/v1/events', setupRequest: (request) => ({ ...request, body: batchBodies[batchCursor++ % batchBodies.length]! }) }],
    });
    check(result, what);
    await sleep(DRAIN_MS);
    acknowledged += result['2xx'] * BATCH_SIZE;
    return { perSecond: (result['2xx'] * BATCH_SIZE) / result.duration, result };
  };
  const httpSingles = async (seconds: number, what: string) => {
    const result = await load({
      url: heraldUrl,
      connections: SINGLE_CONCURRENCY,
      duration: seconds,
      headers,
      requests: [{ method: 'POST', path: '/v1/events', setupRequest: (request) => ({ ...request, body: singleBodies[singleCursor++ % singleBodies.length]! }) }],
    });
    check(result, what);
    await sleep(DRAIN_MS);
    acknowledged += result['2xx'];
    return { perSecond: result['2xx'] / result.duration, p50: result.latency.p50, p99: result.latency.p99, result };
  };
  const helloWorld = async (seconds: number, what: string) => {
    const result = await load({ url: helloUrl, connections: SINGLE_CONCURRENCY, duration: seconds });
    check(result, what);
    await sleep(DRAIN_MS);
    return { perSecond: result['2xx'] / result.duration, p50: result.latency.p50, p99: result.latency.p99, result };
  };
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
  function check(result: LoadResult, what: string): void {
    totals.requests += result.requests.total;
    totals.non2xx += result.non2xx;
    totals.connectionErrors += result.errors;
    totals.timeouts += result.timeouts;
    const failed = describeFailures(result);
    if (failed) failures.push({ what, detail: failed });
    if (result['2xx'] === 0) failures.push({ what, detail: 'no successful response at all' });
  }

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
  const verdict = (ratio: number, target: number) => `${percent(ratio)} ${ratio >= target ? 'ok' : 'MISSED'}`;

  say('');
  say(
    table([
      [`bench:ingest (node ${process.version}, ${cores} cores)`, 'median', 'ceiling', '', 'ratio', 'target'],
      [`events, batches of ${BATCH_SIZE}, concurrency ${BATCH_CONCURRENCY} (events/s)`, int(batchMedian), int(rawMedian), '(raw INSERT)', verdict(batchRatio, TARGET_BATCH), `>= ${percent(TARGET_BATCH)}`],
      [`single events, concurrency ${SINGLE_CONCURRENCY} (req/s)`, int(singleMedian), int(helloMedian), '(hello world)', verdict(singleRatio, TARGET_SINGLE), `>= ${percent(TARGET_SINGLE)}`],
    ], [0, 3]),
  );
  say('');
  say(`single events latency (median of rounds): p50 ${ms(median(rounds.singleP50))}, p99 ${ms(median(rounds.singleP99))}; hello world: p50 ${ms(median(rounds.helloP50))}, p99 ${ms(median(rounds.helloP99))}`);
  say(`rounds: batches ${rounds.batch.map(int).join(' / ')}; raw INSERT ${rounds.rawInsert.map(int).join(' / ')}; single ${rounds.single.map(int).join(' / ')}; hello world ${rounds.hello.map(int).join(' / ')}`);
  say(`ratios within each round: batches ${batchRoundRatios.map(percent).join(' / ')}; single ${singleRoundRatios.map(percent).join(' / ')}`);
  say(`storage check: ${int(stored)} events stored, ${int(acknowledged)} acknowledged (the difference: requests cut off at the end of a run)`);
  const errorCount = totals.non2xx + totals.connectionErrors + totals.failedInserts;
  say(
    `errors: ${errorCount ? 'YES' : 'none'} — ${int(totals.requests)} HTTP requests, ${int(totals.non2xx)} non-2xx, ` +
      `${int(totals.connectionErrors)} connection errors (${int(totals.timeouts)} timeouts), ${int(totals.failedInserts)} failed raw INSERTs`,
  );

  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cores,
    cpu: cpus()[0]?.model.trim() ?? null,
    postgres: pgVersion,
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
    errors: totals,
    failures,
    loadAverageAtStart: Math.round(loadAtStart * 100) / 100,
    seconds: Math.round((performance.now() - started) / 1000),
  };
  mkdirSync('bench', { recursive: true });
  writeFileSync(join('bench', 'ingest.json'), `${JSON.stringify(report, null, 2)}\n`);
  say(`written to bench/ingest.json${profile ? `; Herald's CPU profile goes to ${profileDir}` : ''} (${report.seconds} s)`);
  return failures.length ? 1 : 0;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** A line a server logged (pino JSON at warn level or above): kept short, for the end of a failed run. */
function noteServerLine(name: string, line: string): void {
  serverLog.lines++;
  if (serverLog.first.length >= 5) return;
  let text = line;
  try {
    const entry = JSON.parse(line) as { msg?: string; err?: { type?: string; message?: string; stack?: string } };
    const at = entry.err?.stack?.split('\n').find((l) => l.includes('/src/') && !l.includes('node_modules'))?.trim();
    text = [entry.msg, entry.err && `${entry.err.type ?? 'Error'}: ${entry.err.message ?? ''}`, at].filter(Boolean).join(' — ');
  } catch {
    // not JSON: keep the line as it is
  }
  serverLog.first.push(`${name}: ${text.slice(0, 600)}`);
}

/** Forks this script in a server mode and waits for its port; registers its stop as a cleanup. */
async function startChild(name: string, args: string[], env: Record<string, string>, execArgv: string[]): Promise<{ port: number; child: ChildProcess }> {
  const child = fork(SCRIPT, args, { env: { ...process.env, ...env }, execArgv, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) noteServerLine(name, line);
  });
  let exited = false;
  const exit = new Promise<void>((ok) => child.once('exit', () => ((exited = true), ok())));
  cleanups.push(async () => {
    if (exited) return;
    if (child.connected) child.send('stop');
    const stopped = await Promise.race([exit.then(() => true), sleep(25_000).then(() => false)]);
    if (!stopped) {
      process.stderr.write(`${name} did not stop in time: killing it\n`);
      child.kill('SIGKILL');
      await exit;
    }
  });
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start within 60 s`)), 60_000);
    child.on('message', (m) => {
      if (isReady(m)) {
        clearTimeout(timer);
        ok(m.port);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited (${signal ?? code}) before it was ready`));
    });
  });
  child.once('exit', (code, signal) => {
    if (!cleaning) failures.push({ what: name, detail: `the server process exited during the bench (${signal ?? code})` });
  });
  return { port, child };
}

const mode = process.argv[2];
if (mode === '--serve') await serve();
else if (mode === '--hello') await hello();
else {
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    process.stderr.write(`\nbench:ingest FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  } finally {
    await cleanup();
  }
  if (failures.length) {
    process.stderr.write(`\n!!! bench:ingest: ERRORS IN THE RUNS — the figures above are not to be trusted !!!\n`);
    for (const f of failures) process.stderr.write(`!!!   ${f.what}: ${f.detail}\n`);
    code = 1;
  }
  if (serverLog.lines) {
    process.stderr.write(`\nthe servers logged ${serverLog.lines} line(s) at warn level or above; the first:\n`);
    for (const line of serverLog.first) process.stderr.write(`  ${line}\n`);
  }
  process.exit(code);
}
