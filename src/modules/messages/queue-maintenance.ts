// The send queue's upkeep. message_queue churns (a row per message inserted, moved by the claim's
// lease and the 'sending' mark, deleted at the outcome: about three dead row versions and their
// dead index entries per message), and a claim walks the due index from its oldest entries:
// dead ones pile up in front of it. Migration 0014 asks autovacuum to come after every 10,000
// dead rows; where autovacuum is off or lags (a long transaction holds it back, a burst outruns
// it), claims slowed from milliseconds to seconds (bench:scale, two and three workers). So the
// send workers vacuum it themselves when its dead rows outnumber its live ones by far: at most
// one process at a time (an advisory lock), one check per QUEUE_VACUUM.everyMs per process,
// in the background of the claims.
import type { Sql } from 'postgres';

export const QUEUE_VACUUM = {
  /** Dead rows below this are left to autovacuum. */
  minDead: 50_000,
  /** ...and so are dead rows fewer than this many times the live ones. */
  ratio: 2,
  /** One look at the table's statistics per process at most this often. */
  everyMs: 15_000,
};
const QUEUE_VACUUM_LOCK = 7_265_503; // arbitrary, stable: "herald queue vacuum"

export type QueueVacuumOptions = typeof QUEUE_VACUUM;

/**
 * Vacuums message_queue when its statistics say it is mostly dead rows and no other process is
 * doing it; answers whether it did. VACUUM waits for nothing but the table's own lock, which
 * claims and writes do not conflict with.
 */
export async function vacuumQueueIfBloated(sql: Sql, options: QueueVacuumOptions = QUEUE_VACUUM): Promise<boolean> {
  const [stats] = await sql<{ live: number; dead: number }[]>`
    select n_live_tup::int as live, n_dead_tup::int as dead from pg_stat_user_tables where relid = 'message_queue'::regclass`;
  if (!stats || stats.dead < options.minDead || stats.dead < options.ratio * stats.live) return false;
  // A session-level lock: taken and released on one reserved connection.
  const connection = await sql.reserve();
  try {
    const [{ locked } = { locked: false }] = await connection<{ locked: boolean }[]>`select pg_try_advisory_lock(${QUEUE_VACUUM_LOCK}) as locked`;
    if (!locked) return false;
    try {
      await connection.unsafe('vacuum (skip_locked) message_queue');
      return true;
    } finally {
      await connection`select pg_advisory_unlock(${QUEUE_VACUUM_LOCK})`;
    }
  } finally {
    connection.release();
  }
}

const vacuumers = new WeakMap<Sql, () => void>();

/**
 * Called on every claim: looks at most every `everyMs` (per database client, that is per
 * process), vacuums in the background, never waits and never throws (a failed look or vacuum is
 * tried again at the next look).
 */
export function pokeQueueVacuum(sql: Sql): void {
  let poke = vacuumers.get(sql);
  if (!poke) {
    let last = 0;
    let running = false;
    poke = () => {
      const now = Date.now();
      if (running || now - last < QUEUE_VACUUM.everyMs) return;
      last = now;
      running = true;
      vacuumQueueIfBloated(sql).catch(() => false).finally(() => (running = false));
    };
    vacuumers.set(sql, poke);
  }
  poke();
}
