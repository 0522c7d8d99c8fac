// npm run bench:audience — the audience compiler on a workspace of 1,000,000 customers,
// 10,000,000 events and 5,000,000 action-template records (scripts/bench-audience-data.ts makes
// them in SQL), against the same questions written by hand in SQL, in the same run:
//   1. segments: the count of three representative segments through countAudience()
//      (src/audience/audience.service.ts, in this process, on the same one-connection pool as the
//      hand-written SQL), each beside its hand-written query: a custom-field filter, "2+ orders in
//      the last 30 days", "sent action X but not opened within 3 days". Both must give the same
//      count. A warm-up of each, then BENCH_RUNS (5) rounds, the two in alternating order;
//      medians. Targets: within 1.5x of the hand-written SQL, and under 1 s.
//   2. a triggered action's tick, through the REST API of a Herald child process on the same
//      database: an action whose audience is the BENCH_TICK_CUSTOMERS (10,000) customers with
//      custom.tier = "new", launched; its first run's duration (finishedAt - startedAt, as
//      Herald reports it), which must queue every one of them. Target: under 5 s.
// Also timed when Herald answers it: POST /v1/segments/preview (limit 0) for each segment, to see
// what HTTP and validation add (no target).
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL (or an embedded
// PostgreSQL), dropped at the end. BENCH_KEEP_DATA=1 keeps the data instead, in a database named
// after the scale (herald_bench_audience_c<customers>_e<events>_a<actions>_t<tick customers>), and reuses it when a
// later run finds it complete: generating the full scale takes minutes. The actions of an earlier
// run's tick are deleted first, and their messages still queued set aside.
// Settings (environment): BENCH_CUSTOMERS (1000000), BENCH_EVENTS (10000000), BENCH_ACTIONS
// (5000000), BENCH_TICK_CUSTOMERS (10000), BENCH_RUNS (5), BENCH_TICK_TIMEOUT (120 s),
// BENCH_KEEP_DATA=1, BENCH_KEEP_DATABASE=1 (keep the random database), BENCH_EXPLAIN=1 (print
// the EXPLAIN ANALYZE of every query; without it, only of the segments that miss a target).
// A quick run at a tenth of the scale: BENCH_CUSTOMERS=100000 BENCH_EVENTS=1000000 BENCH_ACTIONS=500000.
// Exit status: 0 when the runs were clean (even when a target is missed: this is a measurement),
// 1 when counts differ, the tick did not queue every customer, or the setup failed.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type postgres from 'postgres';
import { int, median, ms, round3, table } from './bench-lib.ts';
import { begin, benchDatabase, cleanups, failures, heraldApi, positive, runBench, say, sayErrorTotals, serveHerald, startHerald, tempDir, totals, writeReport } from './bench-harness.ts';
import { DATA_VERSION, generateAudienceData, readAudienceData, type AudienceData, type AudienceScale } from './bench-audience-data.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const SCALE: AudienceScale = {
  customers: positive(process.env.BENCH_CUSTOMERS, 1_000_000),
  events: positive(process.env.BENCH_EVENTS, 10_000_000),
  actions: positive(process.env.BENCH_ACTIONS, 5_000_000),
  tickCustomers: positive(process.env.BENCH_TICK_CUSTOMERS, 10_000),
};
const RUNS = positive(process.env.BENCH_RUNS, 5);
const HTTP_RUNS = 3;
const TICK_TIMEOUT_S = positive(process.env.BENCH_TICK_TIMEOUT, 120);
const KEEP_DATA = process.env.BENCH_KEEP_DATA === '1';
const EXPLAIN = process.env.BENCH_EXPLAIN === '1';
const TARGET_RATIO = 1.5;
const TARGET_SEGMENT_MS = 1000;
const TARGET_TICK_MS = 5000;

type Filter = import('../src/audience/filter.ts').Filter;
type CountAudience = (db: postgres.Sql, input: { workspaceId: string; filter: Filter; now: Date }) => Promise<number>;

interface Segment {
  name: string;
  filter: Filter;
  /** The same question in SQL, written by hand: $1 the workspace, $2 now. */
  sql: string;
  params: unknown[];
}

/** The three segments and their hand-written SQL. Events and customer_actions rows always belong to a
 * customer (foreign keys events -> customers and customer_actions -> messages -> customers, on delete
 * cascade), so the hand-written queries count distinct customer ids without visiting customers. */
function segments(data: AudienceData): Segment[] {
  const ws = data.workspaceId;
  const now = data.now;
  const source = data.sourceIds[0]!;
  return [
    {
      name: 'custom.plan = "gold"',
      filter: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' },
      // (Faster here than custom @> '{"plan": "gold"}', which only a GIN index would serve.)
      sql: `select count(*) from customers where workspace_id = $1 and custom ->> 'plan' = 'gold'`,
      params: [ws],
    },
    {
      name: '2+ order.placed in the last 30 days',
      filter: { type: 'event', name: 'order.placed', count: { op: 'gte', value: 2 }, within: { amount: 30, unit: 'days' } },
      sql: `select count(*) from (
              select customer_id from events
              where workspace_id = $1 and type = 'order.placed' and occurred_at >= $2::timestamptz - interval '30 days'
              group by customer_id having count(*) >= 2) x`,
      params: [ws, now],
    },
    {
      name: 'sent action X, not opened within 3 days',
      filter: { type: 'action', sourceType: 'action', sourceId: source, kind: 'sent', without: { kind: 'opened', within: { amount: 3, unit: 'days' } } },
      sql: `select count(distinct s.customer_id) from customer_actions s
            where s.workspace_id = $1
              and s.action_template_id = (select id from action_templates where workspace_id = $1 and source_type = 'action' and source_id = $3 and kind = 'sent')
              and s.occurred_at <= $2::timestamptz - interval '3 days'
              and not exists (
                select 1 from customer_actions o
                where o.workspace_id = $1
                  and o.action_template_id = (select id from action_templates where workspace_id = $1 and source_type = 'action' and source_id = $3 and kind = 'opened')
                  and o.message_id = s.message_id and o.occurred_at <= s.occurred_at + interval '3 days')`,
      params: [ws, now, source],
    },
  ];
}

interface SegmentResult {
  name: string;
  filter: Filter;
  count: number;
  handCount: number;
  compilerMs: number[];
  handMs: number[];
  compilerMedian: number;
  handMedian: number;
  ratio: number;
  withinRatio: boolean;
  underSecond: boolean;
  httpMs?: number[] | undefined;
  httpMedian?: number | undefined;
  compilerSql?: string | undefined;
  plans?: { compiler: string; hand: string } | undefined;
}

// ---- the bench ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  const run = begin(
    'bench:audience',
    `${int(SCALE.customers)} customers, ${int(SCALE.events)} events, ${int(SCALE.actions)} action-template records; ` +
      `3 segments, warm-up + ${RUNS} rounds each, compiler vs hand-written SQL; a triggered action's tick over ${int(SCALE.tickCustomers)} new customers` +
      (KEEP_DATA ? '; BENCH_KEEP_DATA=1: the data is cached' : ''),
  );
  const tmp = await tempDir();
  const fixedName = KEEP_DATA ? `herald_bench_audience_c${SCALE.customers}_e${SCALE.events}_a${SCALE.actions}_t${SCALE.tickCustomers}` : undefined;
  const { dbName, benchUrl, pgVersion, existed } = await benchDatabase(tmp, process.env.BENCH_KEEP_DATABASE === '1', fixedName);

  // One connection for the compiler and the hand-written SQL alike, set up as Herald's own (src/db/client.ts).
  const { createDatabase } = await import('../src/db/client.ts');
  const { runMigrations } = await import('../src/db/migrate.ts');
  const database = createDatabase(benchUrl, { max: 1, applicationName: 'herald-bench-audience' });
  cleanups.push(() => database.close());
  const sql = database.sql;

  // ---- the data: generated, or the cached one -------------------------------------------------
  let data = existed ? await readAudienceData(sql).catch(() => undefined) : undefined;
  const reusable = data && data.version === DATA_VERSION && (Object.keys(SCALE) as (keyof AudienceScale)[]).every((k) => data!.scale[k] === SCALE[k]);
  let reused = false;
  let why = 'is incomplete or of another version';
  if (data && reusable) {
    // The migrations that landed since; a database that cannot take them (a migration rewritten) is made again.
    reused = await runMigrations(benchUrl).then(
      () => true,
      (error: unknown) => ((why = `does not take the current migrations (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`), false),
    );
  }
  if (data && reused) {
    await removeEarlierTicks(sql, data);
    say(`data: reusing ${dbName}, generated ${data.generatedAt} in ${data.seconds.total} s (${describeRows(data)})`);
  } else {
    if (existed) {
      say(`data: ${dbName} ${why}: regenerating it`);
      await resetDatabase(sql);
    }
    await runMigrations(benchUrl);
    say(`data: generating into ${dbName} (PostgreSQL ${pgVersion})...`);
    data = await generateAudienceData(sql, SCALE, say);
    say(`data: generated in ${data.seconds.total} s (${describeRows(data)})`);
  }
  // A settled database: what autovacuum would have done by now (quick when nothing changed).
  await sql`vacuum (analyze)`;

  // ---- 1. segments --------------------------------------------------------------------------
  let countAudience: CountAudience;
  try {
    ({ countAudience } = (await import('../src/audience/audience.service.ts')) as unknown as { countAudience: CountAudience });
  } catch (error) {
    throw new Error(`the audience compiler is not available (src/audience/audience.service.ts): ${error instanceof Error ? error.message : String(error)}`);
  }
  const now = new Date(data.now);
  const results: SegmentResult[] = [];
  for (const segment of segments(data)) {
    const compiler = () => countAudience(sql, { workspaceId: data.workspaceId, filter: segment.filter, now });
    const hand = async () => Number((await sql.unsafe<{ count: string }[]>(segment.sql, segment.params as never[]))[0]!.count);
    const timed = async (fn: () => Promise<number>) => {
      const t0 = performance.now();
      const n = await fn();
      return { n, ms: performance.now() - t0 };
    };
    say(`segment "${segment.name}": warming up, then ${RUNS} rounds...`);
    const [warmCompiler, warmHand] = [await timed(compiler), await timed(hand)];
    const compilerMs: number[] = [];
    const handMs: number[] = [];
    let counts = new Set([warmCompiler.n]);
    let handCounts = new Set([warmHand.n]);
    for (let round = 0; round < RUNS; round++) {
      // Alternating order, so that neither always runs on the caches the other warmed.
      const pair = round % 2 === 0 ? [await timed(compiler), await timed(hand)] : [await timed(hand), await timed(compiler)].reverse();
      compilerMs.push(pair[0]!.ms);
      handMs.push(pair[1]!.ms);
      counts.add(pair[0]!.n);
      handCounts.add(pair[1]!.n);
    }
    const count = warmCompiler.n;
    if (counts.size !== 1 || handCounts.size !== 1 || count !== warmHand.n) {
      failures.push({ what: `segment "${segment.name}"`, detail: `the compiler counted ${[...counts].join('/')}, the hand-written SQL ${[...handCounts].join('/')}` });
    }
    const compilerMedian = median(compilerMs);
    const handMedian = median(handMs);
    const ratio = compilerMedian / handMedian;
    const result: SegmentResult = {
      name: segment.name, filter: segment.filter, count, handCount: warmHand.n, compilerMs, handMs, compilerMedian, handMedian, ratio,
      withinRatio: ratio <= TARGET_RATIO, underSecond: compilerMedian < TARGET_SEGMENT_MS,
    };
    // The compiler's SQL, as it reached PostgreSQL, and both plans.
    const captured = await captureSql(sql, compiler);
    result.compilerSql = captured?.query;
    if (captured) {
      const explain = async (query: string, params: unknown[]) =>
        (await sql.unsafe<{ 'QUERY PLAN': string }[]>(`explain (analyze, buffers) ${query}`, params as never[])).map((r) => r['QUERY PLAN']).join('\n');
      result.plans = { compiler: await explain(captured.query, captured.params), hand: await explain(segment.sql, segment.params) };
    }
    results.push(result);
    say(`  ${int(count)} customers; compiler ${ms(compilerMedian)} (${compilerMs.map((v) => v.toFixed(1)).join(' / ')}), hand-written ${ms(handMedian)} (${handMs.map((v) => v.toFixed(1)).join(' / ')}): ${ratio.toFixed(2)}x`);
  }

  // ---- 2. Herald: previews over HTTP, and the triggered action's tick ----------------------------
  const herald = await startHerald(SCRIPT, { benchUrl, tmp, noun: 'server process' });
  const api = heraldApi(herald.url);
  const apiKey = String((await api('POST', `/v1/workspaces/${data.workspaceId}/api-keys`, herald.rootToken, { name: 'bench', scopes: ['read', 'write'] })).token);
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${herald.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    totals.requests++;
    const text = await response.text();
    if (!response.ok && response.status !== 404) totals.non2xx++;
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // not JSON
    }
    return { status: response.status, json, text };
  };

  let previewNote = '';
  for (const result of results) {
    // Herald counts as of its own clock, not the data's: the compiler's count just before and just after brackets its answer.
    const before = await countAudience(sql, { workspaceId: data.workspaceId, filter: result.filter, now: new Date() });
    const first = await call('POST', '/v1/segments/preview', { filter: result.filter, limit: 0 });
    const after = await countAudience(sql, { workspaceId: data.workspaceId, filter: result.filter, now: new Date() });
    if (first.status === 404) {
      previewNote = 'POST /v1/segments/preview is not available yet';
      break;
    }
    const count = Number(first.json.count);
    if (first.status !== 200 || !(count >= Math.min(before, after) && count <= Math.max(before, after))) {
      failures.push({ what: `preview "${result.name}"`, detail: `answered ${first.status} with count ${String(first.json.count)} (the compiler in this process: ${before} before, ${after} after): ${first.text.slice(0, 300)}` });
      continue;
    }
    const times: number[] = [];
    for (let i = 0; i < HTTP_RUNS; i++) {
      const t0 = performance.now();
      const r = await call('POST', '/v1/segments/preview', { filter: result.filter, limit: 0 });
      times.push(performance.now() - t0);
      if (r.status !== 200) failures.push({ what: `preview "${result.name}"`, detail: `answered ${r.status}` });
    }
    result.httpMs = times;
    result.httpMedian = median(times);
  }
  if (previewNote) say(previewNote);

  const tick = await measureTick(call, data, sql);

  // ---- report --------------------------------------------------------------------------------
  say('');
  const verdictRatio = (r: SegmentResult) => `${r.ratio.toFixed(2)}x ${r.withinRatio ? 'ok' : 'MISSED'}`;
  const verdictSecond = (r: SegmentResult) => (r.underSecond ? 'ok' : 'MISSED');
  const rows = [
    [`bench:audience (node ${process.version}, ${run.cores} cores, PostgreSQL ${pgVersion.split(" ")[0]})`, 'customers', 'compiler', 'hand SQL', 'ratio (<= 1.5x)', 'under 1 s', 'HTTP preview'],
    ...results.map((r, i) => [
      `${i + 1}. ${r.name}`, int(r.count), ms(r.compilerMedian), ms(r.handMedian), verdictRatio(r), verdictSecond(r), r.httpMedian === undefined ? '-' : ms(r.httpMedian),
    ]),
  ];
  say(table(rows));
  say('');
  if (tick.available) {
    say(table([
      ['triggered action tick (its first run, at launch)', 'matched', 'queued', 'finishedAt - startedAt', 'target', 'verdict'],
      [`custom.tier = "new" (${int(SCALE.tickCustomers)} new customers)`, int(tick.matched ?? Number.NaN), int(tick.queued ?? Number.NaN), ms(tick.durationMs ?? Number.NaN), `< ${int(TARGET_TICK_MS)} ms`, tick.met ? 'ok' : 'MISSED'],
    ]));
    say(
      `  Herald's own durationMs ${ms(tick.serverDurationMs ?? Number.NaN)}; from the launch request to the run seen finished (job pickup and polling included): ${ms(tick.wallMs ?? Number.NaN)}; ` +
        `messages in the outbox for the action: ${int(tick.messages ?? Number.NaN)}`,
    );
  } else {
    say(`triggered action tick: ${tick.reason}`);
  }
  say(`data: ${describeRows(data)}; ${reused ? `reused (generated in ${data.seconds.total} s)` : `generated in ${data.seconds.total} s`} (${stepsOf(data)})`);
  for (const r of results) {
    if (!r.plans || !(EXPLAIN || !r.withinRatio || !r.underSecond)) continue;
    say('');
    say(`segment "${r.name}": the compiler's SQL`);
    say(indent(r.compilerSql ?? ''));
    say('its plan:');
    say(indent(r.plans.compiler));
    say('the hand-written SQL\'s plan:');
    say(indent(r.plans.hand));
  }
  sayErrorTotals(failures.length > 0);

  writeReport('audience.json', { ...run, pgVersion }, {
    settings: { scale: SCALE, runs: RUNS, httpRuns: HTTP_RUNS, targets: { ratio: TARGET_RATIO, segmentMs: TARGET_SEGMENT_MS, tickMs: TARGET_TICK_MS } },
    data: { database: dbName, reused, version: data.version, now: data.now, generatedAt: data.generatedAt, rows: data.rows, generationSeconds: data.seconds },
    segments: results.map((r) => ({
      name: r.name,
      filter: r.filter,
      count: r.count,
      compiler: { medianMs: round3(r.compilerMedian), runsMs: r.compilerMs.map(round3) },
      handWritten: { medianMs: round3(r.handMedian), runsMs: r.handMs.map(round3) },
      ratio: round3(r.ratio),
      withinRatio: r.withinRatio,
      underSecond: r.underSecond,
      httpPreview: r.httpMedian === undefined ? null : { medianMs: round3(r.httpMedian), runsMs: r.httpMs!.map(round3) },
      compilerSql: r.compilerSql ?? null,
      plans: r.plans ?? null,
    })),
    httpPreviewNote: previewNote || null,
    tick,
  });
  return failures.length ? 1 : 0;
}

// ---- the tick ------------------------------------------------------------------------------------

interface TickResult {
  available: boolean;
  reason?: string;
  actionId?: string;
  matched?: number | null;
  queued?: number | null;
  durationMs?: number;
  /** The run's own duration_ms (performance.now() around its transaction). */
  serverDurationMs?: number | null;
  wallMs?: number;
  messages?: number;
  targetMs: number;
  met?: boolean;
  run?: Record<string, unknown>;
}

type Call = (method: string, path: string, body?: unknown) => Promise<{ status: number; json: Record<string, unknown>; text: string }>;

async function measureTick(call: Call, data: AudienceData, sql: postgres.Sql): Promise<TickResult> {
  const config = await call('POST', '/v1/channel-configs', { name: 'bench', provider: 'sandbox', channel: 'email' });
  if (config.status !== 201 && config.status !== 200) throw new Error(`setup: POST /v1/channel-configs answered ${config.status}: ${config.text.slice(0, 300)}`);
  const template = await call('POST', '/v1/templates', {
    name: 'bench tick',
    channel: 'email',
    content: { subject: 'Welcome, {{ customer.first_name | default: "there" }}', html: '<p>Hi {{ customer.first_name }}, welcome to the {{ customer.plan }} plan.</p>', text: 'Hi {{ customer.first_name }}, welcome.' },
  });
  if (template.status !== 201 && template.status !== 200) throw new Error(`setup: POST /v1/templates answered ${template.status}: ${template.text.slice(0, 300)}`);
  const created = await call('POST', '/v1/actions', {
    name: 'bench tick',
    kind: 'triggered',
    channel: 'email',
    channelConfigId: config.json.id,
    templateId: template.json.id,
    audience: { type: 'field', field: 'custom.tier', op: 'eq', value: 'new' },
  });
  if (created.status === 404) return { available: false, reason: 'actions API not available yet (POST /v1/actions answered 404)', targetMs: TARGET_TICK_MS };
  if (created.status !== 201 && created.status !== 200) throw new Error(`tick: POST /v1/actions answered ${created.status}: ${created.text.slice(0, 500)}`);
  const actionId = String(created.json.id);
  say(`tick: action ${actionId} created; launching...`);
  const launchedAt = performance.now();
  const launch = await call('POST', `/v1/actions/${actionId}/launch`);
  if (launch.status >= 300) throw new Error(`tick: POST /v1/actions/${actionId}/launch answered ${launch.status}: ${launch.text.slice(0, 500)}`);
  let run: Record<string, unknown> | undefined;
  for (const deadline = Date.now() + TICK_TIMEOUT_S * 1000; ; await sleep(50)) {
    const report = await call('GET', `/v1/actions/${actionId}/report`);
    if (report.status !== 200) throw new Error(`tick: GET /v1/actions/${actionId}/report answered ${report.status}: ${report.text.slice(0, 500)}`);
    const runs = (report.json.runs ?? []) as Record<string, unknown>[];
    run = runs[0];
    if (run?.finishedAt) break;
    if (run?.status === 'failed' || run?.error) break;
    if (Date.now() > deadline) {
      failures.push({ what: 'tick', detail: `no finished run after ${TICK_TIMEOUT_S} s: ${JSON.stringify(run ?? report.json).slice(0, 300)}` });
      break;
    }
  }
  const wallMs = performance.now() - launchedAt;
  // Pause it, so that it ticks no more while Herald stays up (a later run removes it anyway).
  await call('POST', `/v1/actions/${actionId}/pause`).catch(() => undefined);
  const [{ n: messages } = { n: 0 }] = await sql<{ n: number }[]>`
    select count(*)::int as n from messages where workspace_id = ${data.workspaceId} and source_type = 'action' and source_id = ${actionId}`;
  const durationMs = run?.startedAt && run.finishedAt ? Date.parse(String(run.finishedAt)) - Date.parse(String(run.startedAt)) : Number.NaN;
  const matched = typeof run?.matched === 'number' ? run.matched : null;
  const queued = typeof run?.queued === 'number' ? run.queued : null;
  if (run?.error || run?.status === 'failed') failures.push({ what: 'tick', detail: `the run failed: ${JSON.stringify(run).slice(0, 300)}` });
  const expected = Math.min(SCALE.tickCustomers, Math.floor(SCALE.customers / 2));
  if (queued !== expected) failures.push({ what: 'tick', detail: `the run queued ${String(queued)} messages for ${expected} new customers (matched ${String(matched)})` });
  if (messages !== expected) failures.push({ what: 'tick', detail: `${messages} messages in the outbox for ${expected} new customers` });
  const serverDurationMs = typeof run?.durationMs === 'number' ? run.durationMs : null;
  return { available: true, actionId, matched, queued, durationMs, serverDurationMs, wallMs: round3(wallMs), messages, targetMs: TARGET_TICK_MS, met: durationMs < TARGET_TICK_MS, ...(run ? { run } : {}) };
}

// ---- helpers -------------------------------------------------------------------------------------

/** Runs `fn` with postgres.js's debug hook on and returns the last `select count(*)` it sent. */
async function captureSql(sql: postgres.Sql, fn: () => Promise<unknown>): Promise<{ query: string; params: unknown[] } | undefined> {
  const options = sql.options as unknown as { debug: unknown };
  let captured: { query: string; params: unknown[] } | undefined;
  options.debug = (_connection: number, query: string, params: unknown[]) => {
    if (/^\s*select count\(\*\)/i.test(query)) captured = { query, params: [...params] };
  };
  try {
    await fn();
  } finally {
    options.debug = false;
  }
  return captured;
}

/**
 * A cached database's leftovers of an earlier run's tick: its actions deleted (they run no more) and
 * whatever of their messages was still queued set aside (no send worker picks it up during this run).
 * Their sent messages stay: deleting messages is slow here (nothing indexes customer_actions by
 * message alone, so each cascaded delete scans the table), and they are on no segment's path.
 */
async function removeEarlierTicks(sql: postgres.Sql, data: AudienceData): Promise<void> {
  const ws = data.workspaceId;
  const [exists] = await sql<{ t: string | null }[]>`select to_regclass('actions') as t`;
  if (exists?.t) await sql`update actions set status = 'paused', deleted_at = coalesce(deleted_at, now()), next_run_at = null where workspace_id = ${ws}`;
  await sql`
    update messages set status = 'not_sent', reason = 'bench: set aside by a later run', updated_at = now()
    where workspace_id = ${ws} and status = 'queued' and not (source_type = 'action' and source_id = any(${data.sourceIds}::text[]))`;
}

/** Empties a database for a fresh generation: every schema of its own dropped, public made again. */
async function resetDatabase(sql: postgres.Sql): Promise<void> {
  const schemas = await sql<{ name: string }[]>`
    select nspname as name from pg_namespace where nspname not like 'pg\\_%' and nspname <> 'information_schema'`;
  for (const { name } of schemas) await sql.unsafe(`drop schema "${name}" cascade`);
  await sql`create schema public`;
}

function describeRows(data: AudienceData): string {
  const r = data.rows;
  return `${int(r.customers ?? 0)} customers, ${int(r.events ?? 0)} events, ${int(r.messages ?? 0)} messages, ${int(r.customer_actions ?? 0)} action-template records, ${int(r.action_templates ?? 0)} action templates`;
}

/** The generation's steps in their order (the stored JSON keeps its keys in its own order). */
function stepsOf(data: AudienceData): string {
  const order = ['dropKeys', 'customers', 'events', 'actionTemplates', 'messages', 'customerActions', 'restoreKeys', 'vacuum'];
  const rank = (k: string) => (order.includes(k) ? order.indexOf(k) : order.length);
  return Object.entries(data.seconds).filter(([k]) => k !== 'total').sort(([a], [b]) => rank(a) - rank(b)).map(([k, v]) => `${k} ${v} s`).join(', ');
}

const indent = (text: string) => text.split('\n').map((l) => `    ${l}`).join('\n');

const mode = process.argv[2];
if (mode === '--serve') await serveHerald();
else await runBench('bench:audience', main);
