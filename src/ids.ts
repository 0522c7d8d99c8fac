import { randomFillSync } from 'node:crypto';
import { v7 } from 'uuid';

// Random bytes come from a pooled buffer: asking the system for 16 fresh bytes per id was a
// fifth of the CPU time of batch ingestion (bench:ingest profile).
const POOL_IDS = 512;
const pool = new Uint8Array(16 * POOL_IDS);
let next = POOL_IDS;
const state = { msecs: -Infinity, seq: 0 };

/**
 * Time-ordered UUIDs (v7): new rows land at the end of each workspace's index range, and ids
 * made by one process are strictly increasing (a sequence within the millisecond).
 */
export function newId(): string {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  const random = pool.subarray(next * 16, ++next * 16);
  const now = Date.now();
  if (now > state.msecs) {
    state.msecs = now;
    // Start each millisecond's sequence at a random point in its lower half, as uuid does.
    state.seq = ((random[6]! << 23) | (random[7]! << 16) | (random[8]! << 8) | random[9]!) & 0x7fffffff;
  } else {
    state.seq = (state.seq + 1) | 0;
    if (state.seq === 0) state.msecs++;
  }
  return v7({ random, msecs: state.msecs, seq: state.seq });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A UUID in its text form (any version): checked before an id from outside reaches a ::uuid cast. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
