// The request rate limit, shared by every Herald process on the database (API processes behind a
// load balancer must not multiply a key's budget by their number).
//
// A store for @fastify/rate-limit over fixed windows aligned to the clock (minute 12:03 is the
// same window in every process). Each process decides locally — the count it last read from
// PostgreSQL plus its own hits since — so a request never waits for the database, and every
// SYNC_MS it adds its new hits to the shared row of each (key, window) and reads back the total
// (one statement for all keys). What another process let through reaches this one within one
// sync, so a key hitting N processes at once can pass the limit by at most what N - 1 processes
// accept in one SYNC_MS, instead of N times the limit. Within one process the count is exact.
//
// A sync that fails (the database is down) keeps the hits for the next one: the limit goes on
// being applied per process meanwhile.
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyBaseLogger } from 'fastify';
import type postgres from 'postgres';

export const SYNC_MS = 100;
/** Keys followed per process and window (the oldest is dropped beyond it: LocalStore keeps 5,000). */
const MAX_KEYS = 20_000;

interface Counter {
  window: number;
  /** The shared count is being read (the key's first request in this window here). */
  loading: Promise<void> | undefined;
  /** The total of every process at the last sync (this process's synced hits included). */
  shared: number;
  /** This process's hits not yet added to the shared row. */
  pending: number;
  /** A sync is adding this many of `pending`. */
  inFlight: number;
}

type Callback = (error: Error | null, result?: { current: number; ttl: number }) => void;
interface RouteInfo {
  routeInfo?: { url?: string; method?: string | string[] };
}

export interface RateLimitStore extends FastifyRateLimitStore {
  read(key: string, cb: Callback, timeWindow: number, max: number): void;
}

export interface SharedRateLimit {
  /** The class @fastify/rate-limit's `store` option takes. */
  Store: FastifyRateLimitStoreCtor;
  /** Adds this process's hits to the shared rows now (tests; close). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

export function sharedRateLimit(sql: postgres.Sql, log: FastifyBaseLogger, now: () => number): SharedRateLimit {
  const counters = new Map<string, Counter>();
  let syncing: Promise<void> | undefined;
  let lastCleanup = 0;
  let failing = false;

  const windowOf = (timeWindow: number, at: number) => Math.floor(at / timeWindow) * timeWindow;

  function counter(key: string, timeWindow: number): Counter {
    const window = windowOf(timeWindow, now());
    let c = counters.get(key);
    if (c && c.window === window) return c;
    // A new window (or a key not seen yet): hits of the last window not yet synced are dropped.
    // Its first request here waits for the shared count, so a process a client turns to after
    // spending its budget on others does not start from zero (one read per key and window).
    const fresh: Counter = { window, shared: 0, pending: 0, inFlight: 0, loading: undefined };
    fresh.loading = sql<{ hits: number }[]>`select hits from rate_limit_hits where key = ${key} and window_start = ${window}`
      .then(([row]) => void (fresh.shared = Math.max(fresh.shared, row?.hits ?? 0)))
      .catch(() => {}) // the database is down: count from here (the sync logs it)
      .finally(() => (fresh.loading = undefined));
    counters.delete(key);
    counters.set(key, fresh);
    if (counters.size > MAX_KEYS) counters.delete(counters.keys().next().value!);
    return fresh;
  }

  async function runSync(): Promise<void> {
    const keys: string[] = [];
    const windows: number[] = [];
    const deltas: number[] = [];
    const batch: Counter[] = [];
    const at = now();
    for (const [key, c] of counters) {
      // Keys of windows that ended more than a window ago are forgotten; the others are read back
      // even without new hits here, so that other processes' hits are seen.
      if (c.window + 120_000 < at && c.pending === 0) {
        counters.delete(key);
        continue;
      }
      if (c.loading) continue;
      c.inFlight = c.pending;
      keys.push(key);
      windows.push(c.window);
      deltas.push(c.pending);
      batch.push(c);
    }
    if (batch.length === 0) return;
    try {
      const rows = await sql<{ key: string; hits: number }[]>`
        insert into rate_limit_hits as h (key, window_start, hits)
        select * from unnest(${keys}::text[], ${windows}::bigint[], ${deltas}::int[])
        on conflict (key, window_start) do update set hits = h.hits + excluded.hits
        returning key, hits`;
      // One row per key (keys are unique in a batch: a process follows one window per key).
      const totals = new Map(rows.map((row) => [row.key, row.hits]));
      batch.forEach((c, i) => {
        c.pending -= c.inFlight;
        c.inFlight = 0;
        c.shared = totals.get(keys[i]!) ?? c.shared;
      });
      if (failing) log.info('rate limit: shared counters synced again');
      failing = false;
      if (at - lastCleanup > 60_000) {
        lastCleanup = at;
        await sql`delete from rate_limit_hits where window_start < ${at - 3_600_000}`;
      }
    } catch (error) {
      for (const c of batch) c.inFlight = 0;
      if (!failing) log.warn({ err: error }, 'rate limit: the shared counters could not be synced; limiting per process meanwhile');
      failing = true;
    }
  }

  function sync(): Promise<void> {
    syncing ??= runSync().finally(() => (syncing = undefined));
    return syncing;
  }

  const timer = setInterval(() => void sync(), SYNC_MS);
  timer.unref();

  function store(prefix: string): RateLimitStore {
    const self: RateLimitStore = {
      incr(key, cb, timeWindow, max) {
        const c = counter(prefix + key, timeWindow);
        if (c.loading) return void c.loading.then(() => self.incr(key, cb, timeWindow, max));
        // A request over the limit is not counted: a client that keeps knocking must not keep
        // another process's budget exhausted.
        const total = c.shared + c.pending;
        if (total < max) c.pending++;
        cb(null, { current: total + 1, ttl: c.window + timeWindow - now() });
      },
      read(key, cb, timeWindow) {
        const c = counters.get(prefix + key);
        const at = now();
        if (!c || c.window !== windowOf(timeWindow, at)) return cb(null, { current: 0, ttl: 0 });
        cb(null, { current: c.shared + c.pending, ttl: c.window + timeWindow - at });
      },
      child(routeOptions) {
        const { routeInfo } = routeOptions as RouteInfo;
        const method = [routeInfo?.method ?? ''].flat().join(',');
        return store(`${prefix}${method} ${routeInfo?.url ?? ''}|`);
      },
    };
    return self;
  }

  return {
    Store: class {
      constructor() {
        return store('');
      }
    } as unknown as FastifyRateLimitStoreCtor,
    sync,
    async close() {
      clearInterval(timer);
      await sync().catch(() => {});
    },
  };
}
