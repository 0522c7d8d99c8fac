// npm run bench:graphql — the first page of a busy customer's timeline through GraphQL, against
// the same page read with one hand-written SQL query through the same pool, in the same run:
//   figure:  POST /graphql `customer(id) { timeline(first: 50) { edges { cursor node { id kind at
//            data } } pageInfo { hasNextPage endCursor } } }` with autocannon at concurrency 20,
//            every answer compared with the probe's (50 edges, no errors): req/s, p50, p99;
//   ceiling: one UNION ALL of the four kinds (each branch ordered and cut at 51), run at the same
//            concurrency for the same time inside Herald's process through its own pool
//            (deps.database.sql: postgres.js, HERALD_DB_POOL connections), so that HTTP and
//            GraphQL are the only difference: queries/s, p50, p99.
// Also measured: a Fastify process answering the same bytes to the same POST (the HTTP ceiling);
// the cores Herald, the PostgreSQL backends of its pool, the load generator and the machine use
// during each measurement (/proc), hence CPU per request; and, as diagnostics of where the time
// goes, the SQL a GraphQL request runs, each through the same pool at the same concurrency, as it
// is (timelines(), getCustomer()) and as it could be (prepared; the customer row alone), the
// statements per request, parsing and validation (which mercurius redoes for every request with
// `cache: false`), and graphql-js executing and serialising the page with no I/O.
// Rounds of the figure and its ceilings are interleaved; medians of the rounds are reported.
//
// The data: one workspace, one customer with BENCH_ENTRIES timeline entries over the last year,
// mixed as they would be: half events (through POST /v1/events, batches of 1000), a fifth
// messages of a flow, the rest action templates of those messages (delivered, opened, clicked)
// and the flow's decisions (SQL, multi-row INSERTs); then VACUUM ANALYZE.
//
// Database: a fresh herald_bench_<random> on DATABASE_URL or TEST_DATABASE_URL, or, with neither
// set, on an embedded PostgreSQL started in a temporary directory; dropped at the end unless
// BENCH_KEEP_DATABASE=1.
// Settings (environment): BENCH_ENTRIES (10000), BENCH_SECONDS (10, per measurement),
// BENCH_ROUNDS (3), BENCH_CONNECTIONS (20), HERALD_DB_POOL (Herald's pool, 20);
// BENCH_PROFILE=1 profiles Herald (V8 inspector) during one extra GraphQL run after the rounds
// and prints where its time goes, by library and by function (bench/profiles/graphql-*.cpuprofile).
// Exit status: 0 when the runs were clean (even when the target is missed: this is a measurement),
// 1 when any request failed or answered another page, a query failed, or the setup failed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { v7 as uuidv7 } from 'uuid';
import type { Runtime } from '../src/runtime/runtime.ts';
import { int, median, ms as msOf, percent, round3, selfTime, table, verdict, type CpuProfile, type LoadOptions } from './bench-lib.ts';
import {
  announce, ask, begin, type Answers, benchDatabase, cleanups, DRAIN_MS, failures, heraldApi, measure, positive, profilerAnswers, runBench, say, sayErrorTotals, serveHerald, startChild, startHerald, tempDir, totals, writeReport,
} from './bench-harness.ts';

const SCRIPT = fileURLToPath(import.meta.url);
/** Milliseconds; autocannon's latencies are whole milliseconds, so 0 means under one. */
const ms = (n: number) => (n === 0 ? '< 1 ms' : msOf(n));
const ENTRIES = Math.max(positive(process.env.BENCH_ENTRIES, 10_000), 200);
const SECONDS = positive(process.env.BENCH_SECONDS, 10);
const ROUNDS = positive(process.env.BENCH_ROUNDS, 3);
const CONNECTIONS = positive(process.env.BENCH_CONNECTIONS, 20);
const DB_POOL = positive(process.env.HERALD_DB_POOL, 20);
const PROFILE = process.env.BENCH_PROFILE === '1';
const KEEP_DATABASE = process.env.BENCH_KEEP_DATABASE === '1';
const WARMUP_SECONDS = 3;
const DIAGNOSTIC_SECONDS = Math.max(2, Math.ceil(SECONDS / 2));
const PAGE = 50;
const TARGET = 0.5;
const EVENT_BATCH = 1000;
const INSERT_CHUNK = 1000;
const DAY_MS = 86_400_000;
/** Whether mercurius parses and validates every request again (`cache: false` in the plugin), read from its source. */
const MERCURIUS_CACHE_OFF = (() => {
  try {
    return /^\s*cache:\s*false\b/m.test(readFileSync(new URL('../src/graphql/plugin.ts', import.meta.url), 'utf8'));
  } catch {
    return false;
  }
})();

const QUERY = `query Timeline($id: ID!) {
  customer(id: $id) {
    timeline(first: ${PAGE}) {
      edges { cursor node { id kind at data } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

/**
 * Ways of reading (part of) the page inside Herald's process, through its pool: raw is the ceiling;
 * the others are diagnostics of the SQL a GraphQL request runs, as it is and as it could be.
 */
type Variant = 'raw' | 'rawUnprepared' | 'timelines' | 'timelinesPrepared' | 'getCustomer' | 'customerRow';

interface LoopResult {
  completed: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
  firstError: string | null;
  /** Queries that answered something else than the expected page. */
  wrongPages: number;
}

// ---- the hand-written query --------------------------------------------------------------------

/** The page in one statement: the newest 51 of each kind, merged, cut at 51 (the 51st says whether there is a next page). */
const RAW_SQL = `select kind, id, at, data from (
  (select 'event' as kind, id, occurred_at as at, jsonb_build_object('type', type, 'properties', properties) as data
     from events where workspace_id = $1 and customer_id = $2 order by occurred_at desc, id desc limit ${PAGE + 1})
  union all
  (select 'message', id, created_at, jsonb_build_object('channel', channel, 'status', status, 'reason', reason, 'templateId', template_id, 'templateVersion', template_version,
       'toAddress', to_address, 'sentAt', sent_at, 'source', jsonb_build_object('type', source_type, 'id', source_id, 'stepId', step_id, 'entryId', entry_id))
     from messages where workspace_id = $1 and customer_id = $2 order by created_at desc, id desc limit ${PAGE + 1})
  union all
  (select 'action', x.id, x.occurred_at, jsonb_build_object('kind', t.kind, 'actionTemplateId', t.id, 'messageId', x.message_id, 'sourceType', t.source_type, 'sourceId', t.source_id, 'touchpoint', x.touchpoint)
     from customer_actions x join action_templates t on t.workspace_id = x.workspace_id and t.id = x.action_template_id
     where x.workspace_id = $1 and x.customer_id = $2 order by x.occurred_at desc, x.id desc limit ${PAGE + 1})
  union all
  (select 'flow', overlay(d.id::text placing lpad(to_hex(u.n::int), 4, '0') from 33 for 4)::uuid, d.at,
       jsonb_build_object('flowId', d.flow_id, 'version', d.version, 'entryId', d.entry_id, 'nodeId', u.node_id, 'nodeType', u.node_type, 'branch', u.branch, 'reason', d.reasons -> (u.n::int - 1))
     from (select * from flow_decisions where workspace_id = $1 and customer_id = $2 order by at desc, id desc limit ${PAGE + 1}) d
     cross join lateral unnest(d.node_ids, d.node_types, d.branches) with ordinality as u(node_id, node_type, branch, n) order by 3 desc, 2 desc limit ${PAGE + 1})
) page order by at desc, id desc limit ${PAGE + 1}`;

// ---- child modes -------------------------------------------------------------------------------

/** Herald (API role: what serves reads in a deployment), answering the bench's questions from inside its process. */
async function serve(): Promise<void> {
  await serveHerald({ HERALD_ROLE: 'api', HERALD_DB_POOL: String(DB_POOL) }, (runtime) => heraldAnswers(runtime));
}

function heraldAnswers(runtime: Runtime): Answers {
  const { sql } = runtime.deps.database;
  let statements = 0;
  const texts = new Map<string, number>();
  const options = sql.options as unknown as { debug: unknown };
  const debugBefore = options.debug;
  return {
    /** Timed loops of one way of reading the page through Herald's own pool (see Variant). */
    async loop(q): Promise<LoopResult> {
      const variant = String(q.variant) as Variant;
      const workspaceId = String(q.workspaceId);
      const customerId = String(q.customerId);
      const expected = (q.expected as string[] | undefined) ?? [];
      const { timelines } = await import('../src/modules/messages/timeline.ts');
      const { getCustomer } = await import('../src/modules/customers/customers.service.ts');
      // The same pool, every unsafe() query prepared (what `prepare: true` in timeline.ts would do).
      const preparing = new Proxy(sql, {
        get: (target, key) => (key === 'unsafe' ? (query: string, params: never[]) => target.unsafe(query, params, { prepare: true }) : Reflect.get(target, key)),
      });
      const ids = (rows: { id: string }[]) => rows.slice(0, PAGE).map((r) => r.id);
      const ways: Record<Variant, () => Promise<string[] | null>> = {
        raw: async () => ids(await sql.unsafe<{ id: string }[]>(RAW_SQL, [workspaceId, customerId], { prepare: true })),
        rawUnprepared: async () => ids(await sql.unsafe<{ id: string }[]>(RAW_SQL, [workspaceId, customerId])),
        timelines: async () => ids((await timelines(sql, workspaceId, [customerId], { first: PAGE })).get(customerId)!.entries),
        timelinesPrepared: async () => ids((await timelines(preparing, workspaceId, [customerId], { first: PAGE })).get(customerId)!.entries),
        // What the `customer` resolver runs before the timeline: the REST detail (row, consents, consent history, push subscriptions).
        getCustomer: async () => ((await getCustomer(runtime.deps, workspaceId, customerId)).id === customerId ? null : ['another customer']),
        // What it needs: the row, one prepared statement.
        customerRow: async () => ((await sql`select * from customers where workspace_id = ${workspaceId} and id = ${customerId}`).length === 1 ? null : ['no customer']),
      };
      const once = ways[variant];
      if (!once) throw new Error(`unknown variant ${variant}`);
      return timedLoops(once, Number(q.seconds), Number(q.concurrency), expected);
    },
    /** Counts the SQL statements Herald runs between countStart and countStop (postgres.js reads its debug option per query). */
    countStart() {
      statements = 0;
      texts.clear();
      options.debug = (_connection: unknown, query: string) => {
        statements++;
        const text = query.replace(/\s+/g, ' ').trim().slice(0, 120);
        texts.set(text, (texts.get(text) ?? 0) + 1);
      };
      return true;
    },
    countStop() {
      options.debug = debugBefore;
      return { statements, texts: [...texts.entries()].map(([text, n]) => ({ n, text })) };
    },
    /** What parsing and validating the bench's query costs, as mercurius does it (µs; per request with `cache: false`). */
    async parseValidate(q) {
      const { buildSchema, parse, validate, specifiedRules } = await import('graphql');
      const { validationRules } = await import('../src/graphql/limits.ts');
      const { schema: sdl } = await import('../src/graphql/plugin.ts');
      const schema = buildSchema(sdl); // the same types as mercurius's (resolvers play no part in validation)
      const iterations = Number(q.iterations) || 2000;
      const variables = (q.variables ?? {}) as Record<string, unknown>;
      const time = (fn: () => void) => {
        for (let i = 0; i < 200; i++) fn();
        const started = performance.now();
        for (let i = 0; i < iterations; i++) fn();
        return Math.round(((performance.now() - started) / iterations) * 1000 * 10) / 10;
      };
      const document = parse(QUERY);
      const custom = validationRules(variables, runtime.deps.config.graphqlIntrospection);
      return {
        parseUs: time(() => parse(QUERY)),
        validateStandardUs: time(() => validate(schema, document, specifiedRules)),
        validateCustomUs: time(() => validate(schema, document, custom)),
        validateAllUs: time(() => validate(schema, document, [...specifiedRules, ...custom])),
      };
    },
    /**
     * What graphql-js costs for this answer with no I/O at all: the page read once, then executed
     * (resolvers return it synchronously, the same scalars) and serialised, µs per request.
     */
    async executeCost(q) {
      const { buildSchema, execute, parse } = await import('graphql');
      const { schema: sdl } = await import('../src/graphql/plugin.ts');
      const { timelines } = await import('../src/modules/messages/timeline.ts');
      const workspaceId = String(q.workspaceId);
      const customerId = String(q.customerId);
      const iterations = Number(q.iterations) || 1000;
      const page = (await timelines(sql, workspaceId, [customerId], { first: PAGE })).get(customerId)!;
      const schema = buildSchema(sdl);
      const fields = (type: string) => (schema.getType(type) as import('graphql').GraphQLObjectType).getFields();
      fields('Query').customer!.resolve = () => ({ id: customerId });
      fields('Customer').timeline!.resolve = () => ({ edges: page.entries.map((e) => ({ cursor: e.cursor, node: e })), pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.nextCursor } });
      Object.assign(schema.getType('DateTime') as import('graphql').GraphQLScalarType, { serialize: (v: unknown) => (v instanceof Date ? v.toISOString() : v) });
      Object.assign(schema.getType('JSON') as import('graphql').GraphQLScalarType, { serialize: (v: unknown) => v });
      const document = parse(QUERY);
      const variableValues = { id: customerId };
      let bytes = 0;
      const time = (fn: () => void) => {
        for (let i = 0; i < 100; i++) fn();
        const started = performance.now();
        for (let i = 0; i < iterations; i++) fn();
        return Math.round(((performance.now() - started) / iterations) * 1000 * 10) / 10;
      };
      const result = execute({ schema, document, variableValues }) as import('graphql').ExecutionResult;
      if (result.errors?.length) throw new Error(`executeCost: ${result.errors[0]!.message}`);
      return {
        executeUs: time(() => void execute({ schema, document, variableValues })),
        stringifyUs: time(() => void (bytes = JSON.stringify(result).length)),
        bytes,
      };
    },
    ...profilerAnswers(),
  };
}

/** `concurrency` loops of `once` for `seconds`; like autocannon, only the calls finished within the duration count. */
async function timedLoops(once: () => Promise<string[] | null>, seconds: number, concurrency: number, expected: string[]): Promise<LoopResult> {
  const startedAt = performance.now();
  const deadline = startedAt + seconds * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let wrongPages = 0;
  let firstError: string | null = null;
  const loop = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        const ids = await once();
        const t1 = performance.now();
        if (ids && (ids.length !== expected.length || ids.some((id, i) => id !== expected[i]))) wrongPages++;
        if (t1 <= deadline) latencies.push(t1 - t0);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  latencies.sort((a, b) => a - b);
  const at = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! : Number.NaN);
  return { completed: latencies.length, perSecond: latencies.length / seconds, p50: at(0.5), p99: at(0.99), errors, firstError, wrongPages };
}

/** The HTTP ceiling: Fastify taking the same POST (body parsed) and answering the same bytes, in a process of its own. */
async function hello(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  let answer = '{}';
  app.post('/graphql', async (request, reply) => {
    if (!(request.body as { query?: unknown } | null)?.query) return reply.code(400).send({ error: 'no query' });
    return reply.type('application/json; charset=utf-8').send(answer);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  await announce(app.server.address(), () => app.close(), {
    answer: (q) => ((answer = String(q.body)), Buffer.byteLength(answer)),
  });
}

/** The commit measured, and whether src/ or migrations/ had uncommitted changes (null outside a git checkout). */
function codeVersion(): { commit: string; uncommittedChanges: boolean } | null {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return { commit: git('rev-parse', '--short', 'HEAD'), uncommittedChanges: git('status', '--porcelain', '--', 'src', 'migrations') !== '' };
  } catch {
    return null;
  }
}

// ---- CPU accounting ------------------------------------------------------------------------------

const TICK_MS = 10; // CLK_TCK 100 on Linux
/** CPU time (ms) of a process so far, from /proc, and of it in the kernel (0 when it is gone or unreadable). */
function cpuTimesOf(pid: number): { total: number; system: number } {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { total: (Number(fields[11]) + Number(fields[12])) * TICK_MS, system: Number(fields[12]) * TICK_MS }; // utime, stime
  } catch {
    return { total: 0, system: 0 };
  }
}
const cpuMsOf = (pid: number) => cpuTimesOf(pid).total;
function machineTicks(): { busy: number; total: number } {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.reduce((a, b) => a + b, 0);
    return { busy: total - cpu[3]! - (cpu[4] ?? 0), total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

interface CpuShare {
  /** Cores used, on average, during the measurement. */
  herald: number;
  /** Of Herald's, in the kernel (system calls: sockets). */
  heraldSystem: number;
  postgres: number;
  loadGenerator: number;
  /** Share of the machine's cores busy (everything, other users included). */
  machine: number;
}

/**
 * Runs `fn` and tells the cores it took from Herald, from the PostgreSQL backends of Herald's pool
 * (application_name herald-api on the bench database) and from this process (the load generator).
 */
async function cpuDuring<T>(sql: postgres.Sql, dbName: string, heraldPid: number, activeSeconds: number, fn: () => Promise<T>): Promise<{ value: T; cpu: CpuShare }> {
  const backends = async () => (await sql<{ pid: number }[]>`select pid from pg_stat_activity where datname = ${dbName} and application_name = 'herald-api'`).map((r) => r.pid);
  const before = new Map((await backends()).map((pid) => [pid, cpuMsOf(pid)]));
  const heraldBefore = cpuTimesOf(heraldPid);
  const selfBefore = process.cpuUsage();
  const machineBefore = machineTicks();
  const value = await fn();
  const wall = activeSeconds * 1000; // the drain after a measurement is left out: its CPU counts, its time does not
  const machineAfter = machineTicks();
  const self = process.cpuUsage(selfBefore);
  const heraldAfter = cpuTimesOf(heraldPid);
  const heraldMs = heraldAfter.total - heraldBefore.total;
  let postgresMs = 0;
  for (const pid of new Set([...before.keys(), ...(await backends())])) postgresMs += cpuMsOf(pid) - (before.get(pid) ?? 0);
  const r2 = (n: number) => Math.round(n * 100) / 100;
  return {
    value,
    cpu: {
      herald: r2(heraldMs / wall),
      heraldSystem: r2((heraldAfter.system - heraldBefore.system) / wall),
      postgres: r2(postgresMs / wall),
      loadGenerator: r2((self.user + self.system) / 1000 / wall),
      machine: r2((machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)),
    },
  };
}

/** Where Herald's CPU time goes: each sample charged to the first library (or src/ file) found walking up from the leaf. */
function categories(profile: CpuProfile): { name: string; ms: number; share: number }[] {
  const parent = new Map<number, number>();
  const nodes = new Map<number, CpuProfile['nodes'][number] & { children?: number[] }>();
  for (const node of profile.nodes as (CpuProfile['nodes'][number] & { children?: number[] })[]) {
    nodes.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const GROUPS: [RegExp, string][] = [
    [/node_modules\/(postgres|drizzle-orm)\//, 'SQL client (postgres.js, drizzle)'],
    [/node_modules\/graphql\//, 'graphql-js (validation, execution)'],
    [/node_modules\/mercurius\//, 'mercurius'],
    [/node_modules\/(fastify|@fastify\/[^/]+|find-my-way|avvio|light-my-request|pino|secure-json-parse|fast-json-stringify|safe-stable-stringify|prom-client)\//, 'Fastify, its plugins, logs and metrics'],
    [/\/src\//, 'Herald (src/)'],
  ];
  // Node core and native frames are charged to the first library above them (a socket write to
  // PostgreSQL to the SQL client); to "Node core" when none is (the HTTP server's own work).
  const groupOf = new Map<number, string | null>();
  const group = (id: number): string | null => {
    if (groupOf.has(id)) return groupOf.get(id)!;
    const { functionName, url } = nodes.get(id)!.callFrame;
    const special = ['(garbage collector)', '(idle)', '(program)'].includes(functionName) ? functionName : undefined;
    const p = parent.get(id);
    const result = special ?? GROUPS.find(([pattern]) => pattern.test(url))?.[1] ?? (p === undefined || functionName === '(root)' ? null : group(p));
    groupOf.set(id, result);
    return result;
  };
  const totals = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let busy = 0;
  for (let i = 0; i < samples.length; i++) {
    const name = group(samples[i]!) ?? 'Node core and native (HTTP server, sockets, timers)';
    if (name === '(idle)') continue;
    const spent = (deltas[i + 1] ?? 0) / 1000;
    busy += spent;
    totals.set(name, (totals.get(name) ?? 0) + spent);
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([name, spent]) => ({ name, ms: Math.round(spent), share: busy ? round3(spent / busy) : 0 }));
}

// ---- the data ----------------------------------------------------------------------------------

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const EVENT_TYPES = ['page.viewed', 'product.viewed', 'cart.updated', 'checkout.started', 'order.placed'] as const;
const NODES = [
  { id: 'start', type: 'event_trigger', branch: null },
  { id: 'wait', type: 'wait', branch: null },
  { id: 'split', type: 'condition', branch: 'yes' },
  { id: 'split', type: 'condition', branch: 'no' },
  { id: 'email', type: 'send', branch: null },
  { id: 'end', type: 'exit', branch: null },
] as const;

/** The kinds' shares of the timeline. */
function mix(entries: number) {
  const events = Math.round(entries * 0.5);
  const messages = Math.round(entries * 0.2);
  const actions = Math.min(Math.round(entries * 0.15), messages * 3);
  return { events, messages, actions, decisions: entries - events - messages - actions };
}

async function seed(url: string, sql: postgres.Sql, apiKey: string, workspaceId: string, customerId: string) {
  const api = heraldApi(url);
  const counts = mix(ENTRIES);
  const now = Date.now();
  const randomAt = () => new Date(now - Math.random() * 365 * DAY_MS - 60_000);

  // Events, through the API, as a client would send them.
  let posted = 0;
  while (posted < counts.events) {
    const n = Math.min(EVENT_BATCH, counts.events - posted);
    const events = Array.from({ length: n }, () => {
      const type = pick(EVENT_TYPES);
      const sku = `SKU-${Math.floor(Math.random() * 100_000).toString(36).toUpperCase()}`;
      const properties: Record<string, unknown> =
        type === 'order.placed' ? { total: Math.round(Math.random() * 50_000) / 100, currency: 'EUR', items: [{ sku, quantity: 1 + Math.floor(Math.random() * 3) }] }
          : type === 'page.viewed' ? { url: `https://shop.example.com/p/${sku.toLowerCase()}`, referrer: 'https://www.google.com/' }
            : { sku, price: Math.round(Math.random() * 20_000) / 100 };
      return { customerId, type, properties, occurredAt: randomAt().toISOString() };
    });
    const answer = await api('POST', '/v1/events', apiKey, { events });
    if (answer.accepted !== n) throw new Error(`setup: expected ${n} accepted events, got ${JSON.stringify(answer).slice(0, 300)}`);
    posted += n;
  }

  // A flow that sends an email, its messages, what the customer did with them, and its decisions.
  const config = await api('POST', '/v1/channel-configs', apiKey, { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'shop@acme.example' } });
  const template = await api('POST', '/v1/templates', apiKey, { name: 'Back in stock', channel: 'email', content: { subject: 'Back in stock, {{ customer.email }}', html: '<p>It is back.</p>' } });
  const flow = await api('POST', '/v1/flows', apiKey, { name: 'Back in stock', graph: { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'product.viewed' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] } });
  const flowId = String(flow.id);
  const entryIds = Array.from({ length: Math.max(1, counts.messages) }, () => uuidv7());
  const messages = entryIds.slice(0, counts.messages).map((entryId) => {
    const createdAt = randomAt();
    return {
      workspace_id: workspaceId, id: uuidv7(), customer_id: customerId, channel: 'email', channel_config_id: String(config.id), template_id: String(template.id), template_version: 1,
      source_type: 'flow', source_id: flowId, step_id: 'email', entry_id: entryId, status: pick(['delivered', 'delivered', 'opened', 'clicked', 'sent']), reason: null,
      to_address: 'bench@shop.example.com', rendered: { subject: 'Back in stock, bench@shop.example.com', html: '<p>It is back.</p>' }, provider_message_id: `sg-${uuidv7()}`,
      attempts: 1, next_attempt_at: createdAt, created_at: createdAt, sent_at: createdAt, updated_at: createdAt,
    };
  });
  const kinds = ['delivered', 'opened', 'clicked'] as const;
  const templates = ['sent', ...kinds].map((kind) => ({ workspace_id: workspaceId, id: uuidv7(), source_type: 'flow', source_id: flowId, kind, channel: 'email' }));
  const actions = Array.from({ length: counts.actions }, (_, i) => {
    const message = messages[i % messages.length]!;
    const kind = kinds[Math.floor(i / messages.length)]!;
    return {
      workspace_id: workspaceId, id: uuidv7(), action_template_id: templates.find((t) => t.kind === kind)!.id, customer_id: customerId, message_id: message.id,
      occurred_at: new Date(message.created_at.getTime() + 60_000 + Math.random() * 3 * 3_600_000),
      touchpoint: kind === 'clicked' ? { channel: 'email', url: 'https://shop.example.com/back-in-stock', userAgent: 'Mozilla/5.0', ip: '203.0.113.7' } : { channel: 'email' },
    };
  });
  // Decisions are stored a tick's worth per row: one to three per row here.
  const decisions: Record<string, unknown>[] = [];
  for (let left = counts.decisions; left > 0;) {
    const nodes = Array.from({ length: Math.min(left, 1 + Math.floor(Math.random() * 3)) }, () => pick(NODES));
    left -= nodes.length;
    decisions.push({
      workspace_id: workspaceId, id: uuidv7(), flow_id: flowId, version: 1, entry_id: pick(entryIds), customer_id: customerId,
      node_ids: nodes.map((n) => n.id), node_types: nodes.map((n) => n.type), branches: nodes.map((n) => n.branch),
      reasons: nodes.map((n) => (n.type === 'exit' ? { exit: 'completed' } : n.type === 'condition' ? { matched: n.branch === 'yes' } : {})), at: randomAt(),
    });
  }
  const insert = async (name: string, rows: Record<string, unknown>[]) => {
    for (let i = 0; i < rows.length; i += INSERT_CHUNK) await sql`insert into ${sql(name)} ${sql(rows.slice(i, i + INSERT_CHUNK) as never)}`;
  };
  await insert('action_templates', templates);
  await insert('messages', messages);
  await insert('customer_actions', actions);
  await insert('flow_decisions', decisions);
  await sql`vacuum (analyze) customers, events, messages, action_templates, customer_actions, flow_decisions`;
  return counts;
}

// ---- the bench ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  const run = begin(
    'bench:graphql',
    `${int(ENTRIES)} timeline entries, first page of ${PAGE} at concurrency ${CONNECTIONS}; ${ROUNDS} rounds of ${SECONDS} s per measurement, interleaved, after a ${WARMUP_SECONDS} s warm-up of each; Herald's pool ${DB_POOL}`,
  );
  const tmp = await tempDir();
  const { dbName, benchUrl, pgVersion } = await benchDatabase(tmp, KEEP_DATABASE);
  const profileDir = resolve('bench', 'profiles');
  if (PROFILE) mkdirSync(profileDir, { recursive: true });

  const [herald, helloServer] = await Promise.all([
    startHerald(SCRIPT, { benchUrl, tmp, noun: 'server process' }),
    startChild(SCRIPT, 'hello world', ['--hello'], { noun: 'server process' }),
  ]);
  const { rootToken, url: heraldUrl } = herald;
  const helloUrl = `http://127.0.0.1:${helloServer.port}`;

  // A workspace, a key, the customer and the timeline.
  const api = heraldApi(heraldUrl);
  const workspace = await api('POST', '/v1/workspaces', rootToken, { name: 'bench' });
  const workspaceId = String(workspace.id);
  const apiKey = String((await api('POST', `/v1/workspaces/${workspaceId}/api-keys`, rootToken, { name: 'bench', scopes: ['read', 'write'] })).token);
  const customer = await api('POST', '/v1/customers', apiKey, { externalId: 'bench-busy', email: 'bench@shop.example.com', locale: 'en-GB', timeZone: 'Europe/London', custom: { plan: 'gold', ltv: 1234.5 } });
  const customerId = String(customer.id);
  const sql = postgres(benchUrl, { max: 4, onnotice: () => {} });
  cleanups.push(() => sql.end({ timeout: 5 }));
  const seedStarted = performance.now();
  const counts = await seed(heraldUrl, sql, apiKey, workspaceId, customerId);
  const [stored] = await sql<{ events: number; messages: number; actions: number; decisions: number }[]>`select
    (select count(*)::int from events where workspace_id = ${workspaceId} and customer_id = ${customerId}) as events,
    (select count(*)::int from messages where workspace_id = ${workspaceId} and customer_id = ${customerId}) as messages,
    (select count(*)::int from customer_actions where workspace_id = ${workspaceId} and customer_id = ${customerId}) as actions,
    (select coalesce(sum(cardinality(node_ids)), 0)::int from flow_decisions where workspace_id = ${workspaceId} and customer_id = ${customerId}) as decisions`;
  const storedTotal = stored!.events + stored!.messages + stored!.actions + stored!.decisions;
  if (storedTotal !== ENTRIES) throw new Error(`setup: expected ${ENTRIES} timeline entries, found ${storedTotal} (${JSON.stringify(stored)})`);
  say(
    `setup: workspace ${workspaceId}, customer ${customerId} with ${int(storedTotal)} timeline entries (${int(counts.events)} events through the API, ${int(counts.messages)} messages, ` +
      `${int(counts.actions)} action templates, ${int(counts.decisions)} flow decisions) in ${((performance.now() - seedStarted) / 1000).toFixed(1)} s (database ${dbName}, PostgreSQL ${pgVersion})`,
  );

  // The probe: the page through GraphQL, checked in full; every later answer must be these bytes.
  const body = JSON.stringify({ query: QUERY, variables: { id: customerId } });
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const probeResponse = await fetch(`${heraldUrl}/graphql`, { method: 'POST', headers, body });
  const expectedBody = await probeResponse.text();
  const probe = JSON.parse(expectedBody) as {
    data?: { customer?: { timeline?: { edges: { cursor: string; node: { id: string; kind: string; at: string; data: unknown } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } };
    errors?: unknown[];
  };
  const page = probe.data?.customer?.timeline;
  if (probeResponse.status !== 200 || probe.errors || !page || page.edges.length !== PAGE || !page.pageInfo.hasNextPage || page.pageInfo.endCursor !== page.edges.at(-1)?.cursor) {
    throw new Error(`probe: expected 200 with ${PAGE} edges and a next page, got ${probeResponse.status} ${expectedBody.slice(0, 500)}`);
  }
  const pageIds = page.edges.map((e) => e.node.id);
  const kindsOnPage: Record<string, number> = {};
  for (const e of page.edges) kindsOnPage[e.node.kind] = (kindsOnPage[e.node.kind] ?? 0) + 1;
  // The hand-written query must read the same page (same entries, same order, same data).
  const rawRows = await sql.unsafe<{ kind: string; id: string; at: Date; data: unknown }[]>(RAW_SQL, [workspaceId, customerId]);
  const rawPage = rawRows.slice(0, PAGE).map((r) => ({ id: r.id, kind: r.kind, at: r.at.toISOString(), data: r.data }));
  if (rawRows.length !== PAGE + 1 || JSON.stringify(rawPage) !== JSON.stringify(page.edges.map((e) => e.node))) {
    throw new Error(`probe: the hand-written query reads another page than GraphQL (${rawRows.length} rows)`);
  }
  say(`probe: ${PAGE} edges, ${int(Buffer.byteLength(expectedBody))} B answer, kinds on the page: ${Object.entries(kindsOnPage).map(([k, n]) => `${k} ${n}`).join(', ')}; the hand-written query reads the same page`);
  const helloBytes = await ask<number>(helloServer.child, 'answer', { body: expectedBody });

  let firstMismatch: string | null = null;
  let mismatches = 0;
  const graphqlOptions: LoadOptions & { verifyBody: (body: string) => boolean } = {
    url: `${heraldUrl}/graphql`, connections: CONNECTIONS, duration: SECONDS, method: 'POST', headers, body,
    verifyBody: (answer) => answer === expectedBody || ((firstMismatch ??= answer), false),
  };
  const graphql = async (seconds: number, what: string) => {
    const m = await measure({ ...graphqlOptions, duration: seconds }, what);
    const wrong = (m.result as { mismatches?: number }).mismatches ?? 0;
    if (wrong) {
      mismatches += wrong;
      failures.push({ what, detail: `${wrong} answers differ from the probe's page; the first: ${String(firstMismatch).slice(0, 300)}` });
    }
    return { ...m, perSecond: (m.result['2xx'] - wrong) / m.result.duration };
  };
  const helloWorld = (seconds: number, what: string) => measure({ url: `${helloUrl}/graphql`, connections: CONNECTIONS, duration: seconds, method: 'POST', headers, body }, what);
  const loop = async (variant: Variant, seconds: number, what: string) => {
    const r = await ask<LoopResult>(herald.child, 'loop', { variant, seconds, concurrency: CONNECTIONS, workspaceId, customerId, expected: pageIds }, (seconds + 60) * 1000);
    if (r.errors) failures.push({ what, detail: `${r.errors} failed queries, first: ${r.firstError}` });
    if (r.wrongPages) failures.push({ what, detail: `${r.wrongPages} queries read another page` });
    if (!r.completed) failures.push({ what, detail: 'no query finished' });
    await sleep(DRAIN_MS);
    return r;
  };

  say('warming up...');
  await graphql(WARMUP_SECONDS, 'warm-up: GraphQL');
  await loop('raw', WARMUP_SECONDS, 'warm-up: hand-written SQL');
  await helloWorld(WARMUP_SECONDS, 'warm-up: HTTP ceiling');

  const rounds = { graphql: [] as number[], gP50: [] as number[], gP99: [] as number[], raw: [] as number[], rP50: [] as number[], rP99: [] as number[], hello: [] as number[], hP50: [] as number[], hP99: [] as number[] };
  const cpu = { graphql: [] as CpuShare[], raw: [] as CpuShare[] };
  const during = <T>(seconds: number, fn: () => Promise<T>) => cpuDuring(sql, dbName, herald.child.pid!, seconds, fn);
  for (let round = 1; round <= ROUNDS; round++) {
    const { value: g, cpu: gCpu } = await during(SECONDS, () => graphql(SECONDS, `round ${round}: GraphQL`));
    const { value: r, cpu: rCpu } = await during(SECONDS, () => loop('raw', SECONDS, `round ${round}: hand-written SQL`));
    cpu.graphql.push(gCpu);
    cpu.raw.push(rCpu);
    const h = await helloWorld(SECONDS, `round ${round}: HTTP ceiling`);
    rounds.graphql.push(g.perSecond); rounds.gP50.push(g.p50); rounds.gP99.push(g.p99);
    rounds.raw.push(r.perSecond); rounds.rP50.push(r.p50); rounds.rP99.push(r.p99);
    rounds.hello.push(h.perSecond); rounds.hP50.push(h.p50); rounds.hP99.push(h.p99);
    say(
      `round ${round}/${ROUNDS}: GraphQL ${int(g.perSecond)} req/s (p50 ${ms(g.p50)}, p99 ${ms(g.p99)}); hand-written SQL ${int(r.perSecond)} queries/s (p50 ${ms(r.p50)}, p99 ${ms(r.p99)}); ` +
        `HTTP ceiling ${int(h.perSecond)} req/s (p50 ${ms(h.p50)}); ratio ${percent(g.perSecond / r.perSecond)}`,
    );
    say(`  cores used: GraphQL — Herald ${gCpu.herald}, PostgreSQL ${gCpu.postgres}, load generator ${gCpu.loadGenerator}, machine ${percent(gCpu.machine)} busy; SQL — Herald ${rCpu.herald}, PostgreSQL ${rCpu.postgres}, machine ${percent(rCpu.machine)} busy`);
  }
  const cpuMedian = (shares: CpuShare[]) => ({
    herald: median(shares.map((c) => c.herald)), heraldSystem: median(shares.map((c) => c.heraldSystem)), postgres: median(shares.map((c) => c.postgres)), loadGenerator: median(shares.map((c) => c.loadGenerator)), machine: median(shares.map((c) => c.machine)),
  });
  const gCpu = cpuMedian(cpu.graphql);
  const rCpu = cpuMedian(cpu.raw);

  // Diagnostics, each through Herald's pool for DIAGNOSTIC_SECONDS at the same concurrency: the SQL
  // a GraphQL request runs, as it is and as it could be; then statements and time per request one
  // at a time, and what parsing and validating the query costs.
  say('diagnostics...');
  const DIAGNOSTICS: [Variant, string][] = [
    ['timelines', "Herald's timelines() (the timeline loader's SQL, unprepared)"],
    ['timelinesPrepared', 'the same with prepare: true'],
    ['getCustomer', 'getCustomer() (the REST detail: row, consents, their history, push subscriptions)'],
    ['customerRow', 'the customer row alone (1 prepared statement)'],
    ['rawUnprepared', 'the hand-written query, unprepared'],
  ];
  const diagnostics: { variant: Variant; name: string; perSecond: number; p50: number; p99: number; cpu: CpuShare; heraldMs: number; postgresMs: number }[] = [];
  for (const [variant, name] of DIAGNOSTICS) {
    const { value, cpu: c } = await during(DIAGNOSTIC_SECONDS, () => loop(variant, DIAGNOSTIC_SECONDS, `diagnostic: ${name}`));
    diagnostics.push({ variant, name, perSecond: value.perSecond, p50: value.p50, p99: value.p99, cpu: c, heraldMs: (c.herald * 1000) / value.perSecond, postgresMs: (c.postgres * 1000) / value.perSecond });
  }
  const SEQUENTIAL = 100;
  await ask(herald.child, 'countStart');
  const sequentialStarted = performance.now();
  for (let i = 0; i < SEQUENTIAL; i++) {
    const response = await fetch(`${heraldUrl}/graphql`, { method: 'POST', headers, body });
    if ((await response.text()) !== expectedBody) failures.push({ what: 'diagnostic: sequential requests', detail: `answer ${i} differs from the probe's` });
  }
  const sequentialMs = (performance.now() - sequentialStarted) / SEQUENTIAL;
  const counted = await ask<{ statements: number; texts: { n: number; text: string }[] }>(herald.child, 'countStop');
  const statementsPerRequest = counted.statements / SEQUENTIAL;
  const statementTexts = counted.texts.map((t) => ({ perRequest: t.n / SEQUENTIAL, text: t.text }));
  const parseValidate = await ask<{ parseUs: number; validateStandardUs: number; validateCustomUs: number; validateAllUs: number }>(herald.child, 'parseValidate', { iterations: 2000, variables: { id: customerId } });
  const executeCost = await ask<{ executeUs: number; stringifyUs: number; bytes: number }>(herald.child, 'executeCost', { iterations: 1000, workspaceId, customerId });

  let profile:
    | { path: string; perSecond: number; sampledBusyMs: number; cpuMs: number; categories: { name: string; ms: number; share: number }[]; functions: ReturnType<typeof selfTime>; packages: ReturnType<typeof selfTime> }
    | undefined;
  if (PROFILE) {
    await ask(herald.child, 'profileStart');
    const { value: g, cpu: pCpu } = await during(SECONDS, () => graphql(SECONDS, 'profiled GraphQL run'));
    const path = await ask<string>(herald.child, 'profileStop', { path: join(profileDir, `graphql-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`) });
    const cpuProfile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    const groups = categories(cpuProfile);
    profile = {
      path, perSecond: g.perSecond, sampledBusyMs: groups.reduce((sum, c) => sum + c.ms, 0), cpuMs: Math.round(pCpu.herald * SECONDS * 1000),
      categories: groups, functions: selfTime(cpuProfile, 'function', 25), packages: selfTime(cpuProfile, 'package', 15),
    };
  }

  const graphqlMedian = median(rounds.graphql);
  const rawMedian = median(rounds.raw);
  const helloMedian = median(rounds.hello);
  const ratio = graphqlMedian / rawMedian;
  const roundRatios = rounds.graphql.map((v, i) => v / rounds.raw[i]!);
  const perRequest = (c: { herald: number; postgres: number }, rate: number) => ({ heraldMs: round3((c.herald * 1000) / rate), postgresMs: round3((c.postgres * 1000) / rate) });
  const gPer = perRequest(gCpu, graphqlMedian);
  const rPer = perRequest(rCpu, rawMedian);

  say('');
  say(
    table([
      [`bench:graphql (node ${process.version}, ${run.cores} cores)`, 'req/s', 'p50', 'p99', 'ratio', 'target', 'CPU/req Herald', 'PostgreSQL'],
      [`GraphQL first page of ${PAGE}, concurrency ${CONNECTIONS}`, int(graphqlMedian), ms(median(rounds.gP50)), ms(median(rounds.gP99)), verdict(ratio, TARGET), `>= ${percent(TARGET)}`, ms(gPer.heraldMs), ms(gPer.postgresMs)],
      [`ceiling: hand-written SQL, Herald's pool (${DB_POOL})`, int(rawMedian), ms(median(rounds.rP50)), ms(median(rounds.rP99)), '', '', ms(rPer.heraldMs), ms(rPer.postgresMs)],
      [`HTTP ceiling: Fastify answering the same ${int(helloBytes)} B`, int(helloMedian), ms(median(rounds.hP50)), ms(median(rounds.hP99)), percent(graphqlMedian / helloMedian), '', '', ''],
      ...diagnostics.map((d) => [`diagnostic: ${d.name}`, int(d.perSecond), ms(d.p50), ms(d.p99), percent(d.perSecond / rawMedian), '', ms(d.heraldMs), ms(d.postgresMs)]),
    ]),
  );
  say('');
  say(`rounds: GraphQL ${rounds.graphql.map(int).join(' / ')}; hand-written SQL ${rounds.raw.map(int).join(' / ')}; HTTP ceiling ${rounds.hello.map(int).join(' / ')}; ratios within each round ${roundRatios.map(percent).join(' / ')}`);
  say(`cores used (medians): GraphQL — Herald ${gCpu.herald} (kernel ${gCpu.heraldSystem}), PostgreSQL ${gCpu.postgres}, load generator ${gCpu.loadGenerator}, machine ${percent(gCpu.machine)} busy; hand-written SQL — Herald ${rCpu.herald} (kernel ${rCpu.heraldSystem}), PostgreSQL ${rCpu.postgres}, machine ${percent(rCpu.machine)} busy`);
  say(
    `per GraphQL request: ${statementsPerRequest.toFixed(1)} SQL statements, ${ms(sequentialMs)} end to end one at a time; parse ${parseValidate.parseUs} µs and validation ${parseValidate.validateAllUs} µs ` +
      `(standard rules ${parseValidate.validateStandardUs} µs, Herald's limits ${parseValidate.validateCustomUs} µs), ` +
      `${MERCURIUS_CACHE_OFF ? 'redone for every request (cache: false in src/graphql/plugin.ts)' : 'cached by mercurius per query text (paid by the first request)'}; the statements:`,
  );
  for (const t of statementTexts) say(`  ${t.perRequest.toFixed(2)} x ${t.text}`);
  say(`graphql-js alone, no I/O (the page read once): execute ${executeCost.executeUs} µs, JSON.stringify ${executeCost.stringifyUs} µs of ${int(executeCost.bytes)} B per request`);
  if (profile) {
    say('');
    say(`Herald's CPU profile during a GraphQL run of ${SECONDS} s (${int(profile.perSecond)} req/s; ${profile.path})`);
    say(
      `  sampled as busy: ${int(profile.sampledBusyMs)} ms; CPU time Herald actually got (/proc): ${int(profile.cpuMs)} ms — on an oversubscribed machine the difference is time ` +
        'Herald was inside a call but not running (mostly socket writes that wake another process), so shares below overstate native writes',
    );
    say(`by the first library on the stack: ${profile.categories.map((c) => `${c.name} ${percent(c.share)}`).join(', ')}`);
    say(table([['self time by function', 'ms', 'share'], ...profile.functions.map((t) => [t.name, int(t.ms), percent(t.share)])]));
    say(`self time by package or file: ${profile.packages.map((t) => `${t.name} ${percent(t.share)}`).join(', ')}`);
  }
  sayErrorTotals(failures.length > 0 || mismatches > 0);

  writeReport('graphql.json', { ...run, pgVersion }, {
    code: codeVersion(),
    settings: { entries: ENTRIES, page: PAGE, connections: CONNECTIONS, heraldDbPool: DB_POOL, heraldRole: 'api', rounds: ROUNDS, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, diagnosticSeconds: DIAGNOSTIC_SECONDS },
    data: { ...counts, kindsOnFirstPage: kindsOnPage, answerBytes: Buffer.byteLength(expectedBody) },
    query: QUERY,
    graphql: {
      unit: 'req/s',
      median: Math.round(graphqlMedian),
      rounds: rounds.graphql.map(Math.round),
      latencyMs: { p50: median(rounds.gP50), p99: median(rounds.gP99) },
      cpuMsPerRequest: gPer,
      ceiling: {
        name: `hand-written SQL (one UNION ALL, prepared) through Herald's pool of ${DB_POOL}, concurrency ${CONNECTIONS}, inside Herald's process`,
        sql: RAW_SQL,
        median: Math.round(rawMedian),
        rounds: rounds.raw.map(Math.round),
        latencyMs: { p50: round3(median(rounds.rP50)), p99: round3(median(rounds.rP99)) },
        cpuMsPerQuery: rPer,
      },
      ratio: round3(ratio),
      roundRatios: roundRatios.map(round3),
      target: TARGET,
      met: ratio >= TARGET,
    },
    httpCeiling: { name: `Fastify answering the same ${Buffer.byteLength(expectedBody)} B to the same POST`, median: Math.round(helloMedian), rounds: rounds.hello.map(Math.round), latencyMs: { p50: median(rounds.hP50), p99: median(rounds.hP99) } },
    cpuCores: { graphql: cpu.graphql, raw: cpu.raw },
    diagnostics: {
      loops: diagnostics.map((d) => ({ ...d, perSecond: Math.round(d.perSecond), p50: round3(d.p50), p99: round3(d.p99), heraldMs: round3(d.heraldMs), postgresMs: round3(d.postgresMs) })),
      statementsPerRequest,
      statements: statementTexts,
      sequentialMsPerRequest: round3(sequentialMs),
      parseValidateUs: { ...parseValidate, everyRequest: MERCURIUS_CACHE_OFF },
      graphqlAloneUs: executeCost,
    },
    mismatches,
    ...(profile ? { profile } : {}),
  });
  return failures.length ? 1 : 0;
}

const mode = process.argv[2];
if (mode === '--serve') await serve();
else if (mode === '--hello') await hello();
else await runBench('bench:graphql', main);
