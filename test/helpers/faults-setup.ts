// Shared plumbing of the fault tests (faults-kill, faults-providers): Herald workers as child
// processes on the test's database, polling with a deadline, customers made in SQL, a workspace
// allowed to reach the loopback mocks, and what a mock saw per request.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Sql } from 'postgres';
import type { Faults, MockServer } from '../mocks/index.ts';
import { caller, ROOT_TOKEN } from './app.ts';
import { spawnHerald, type HeraldChild } from './spawn.ts';

/** startHerald's HERALD_SECRET: the children must open the channel configs' sealed secrets. */
export const SECRET = 'test-secret-test-secret-test-secret-0123';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls every `every` ms until check() answers something other than undefined; the error names the database's sessions. */
export async function until<T>(sql: Sql, what: string, check: () => Promise<T | undefined>, ms: number, every = 20): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) {
      const activity = await sql`select application_name, state, wait_event, now() - xact_start as xact_age, left(query, 100) as query from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
      throw new Error(`timed out after ${ms} ms waiting for ${what}; the database's sessions: ${JSON.stringify(activity)}`);
    }
    await sleep(every);
  }
}

/** Starts and tracks `node src/server.ts` workers (HERALD_ROLE=worker) on one database; teardown() kills the live ones. */
export function workerPool(databaseUrl: string, env: Record<string, string> = {}) {
  const live = new Set<HeraldChild>();
  return {
    live,
    async start(): Promise<HeraldChild> {
      const w = spawnHerald({
        NODE_ENV: 'test', DATABASE_URL: databaseUrl, HERALD_ROLE: 'worker', PORT: '0',
        HERALD_SECRET: SECRET, HERALD_ROOT_TOKEN: ROOT_TOKEN, LOG_LEVEL: 'warn', HERALD_DB_POOL: '8', ...env,
      });
      live.add(w);
      void w.exited.then(() => live.delete(w));
      await w.listening();
      return w;
    },
    teardown: () => Promise.all([...live].map((w) => w.kill('SIGKILL'))),
  };
}

/** Sessions of Herald workers still connected (a killed worker's end when PostgreSQL sees its sockets close). */
export async function workerBackends(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'herald-worker%'`;
  return row!.n;
}

/** Lets a workspace's providers reach loopback targets (the mocks). */
export async function allowLoopback(app: FastifyInstance, workspaceId: string): Promise<void> {
  const res = await caller(app, ROOT_TOKEN)('PATCH', `/v1/workspaces/${workspaceId}`, { settings: { allowPrivateNetworkTargets: true } });
  if (res.statusCode !== 200) throw new Error(`workspace settings: ${res.statusCode} ${res.body}`);
}

/**
 * Customers `${prefix}000000`.. made in one statement (the API is not what is under test here): an
 * email `<externalId>@faults.example`, a phone, and `custom`. Answers their ids in order.
 */
export async function makeCustomers(sql: Sql, workspaceId: string, prefix: string, n: number, custom: Record<string, unknown> = {}, from = 0): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    insert into customers (workspace_id, id, external_id, email, phone, custom, created_at, updated_at)
    select ${workspaceId}::uuid, herald_uuid_v7(now()), ${prefix} || lpad(n::text, 6, '0'), ${prefix} || lpad(n::text, 6, '0') || '@faults.example',
      '+1555' || lpad(n::text, 7, '0'), ${JSON.stringify(custom)}::jsonb, now(), now()
    from generate_series(${from}::int, ${from + n - 1}::int) n
    returning id`;
  return rows.map((r) => r.id);
}

/**
 * Requests in flight at a mock: received, not answered yet (a fault's delay included), their
 * connection still open (a killed client's requests leave the count when its sockets close).
 */
export function inFlight(mock: MockServer): () => number {
  let open = 0;
  mock.server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    open++;
    res.once('close', () => open--);
  });
  return () => open;
}

export interface Arrival {
  /** When the request reached the mock (ms since the epoch). */
  at: number;
  /** Whose it is (keyOf over its headers and body): Herald's message id, or an address. */
  key: string;
  /** The fault the mock gave it: 'none' when it was handled. */
  fault: string;
}

/**
 * Every request that reaches the mock, in order of arrival, and the fault each is given:
 * `faultOf(i)` for the i-th request (the mock takes its faults as a request arrives, so the
 * fault of the next request is set as each one arrives). Do not set the mock's faults otherwise.
 */
export function watch(mock: MockServer, keyOf: (headers: IncomingHttpHeaders, body: string) => string, faultOf: (i: number) => Faults = () => ({})): Arrival[] {
  const log: Arrival[] = [];
  const describe = (f: Faults) => (f.hang ? 'hang' : f.reset ? 'reset' : f.status !== undefined ? String(f.status) : 'none');
  let next = faultOf(0);
  mock.setFaults({ ...next, times: 1 });
  mock.server.on('request', (req: IncomingMessage) => {
    const arrival: Arrival = { at: Date.now(), key: '', fault: describe(next) };
    log.push(arrival);
    next = faultOf(log.length);
    mock.setFaults({ ...next, times: 1 });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => (arrival.key = keyOf(req.headers, Buffer.concat(chunks).toString('utf8'))));
  });
  return log;
}

/** A message id's count, for the ids seen more than once. */
export function repeated(ids: Iterable<string>): Record<string, number> {
  const n = new Map<string, number>();
  for (const id of ids) n.set(id, (n.get(id) ?? 0) + 1);
  return Object.fromEntries([...n].filter(([, c]) => c > 1));
}

/**
 * The flow of the kill and scale-out tests: everyone who signs up gets a welcome email, waits
 * (0 minutes: the wait collapses), and the customers `gold` matches get a bonus email too.
 */
export function welcomeFlow(channelConfigId: string, welcomeTemplate: string, bonusTemplate: string, gold: Record<string, unknown>) {
  const send = (templateId: string) => ({ type: 'send', channel: 'email', channelConfigId, templateId });
  return {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'signup' },
      { id: 'mail', type: 'steps', steps: [send(welcomeTemplate)] },
      { id: 'pause', type: 'wait', mode: 'fixed', duration: { amount: 0, unit: 'minutes' } },
      { id: 'check', type: 'condition', filter: gold },
      { id: 'gold', type: 'steps', steps: [send(bonusTemplate)] },
      { id: 'end', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'mail' }, { from: 'mail', to: 'pause' }, { from: 'pause', to: 'check' },
      { from: 'check', to: 'gold', branch: 'yes' }, { from: 'check', to: 'end', branch: 'no' }, { from: 'gold', to: 'end' },
    ],
  };
}
