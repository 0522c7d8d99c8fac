// The engine's jobs: a tick queue woken by NOTIFY from the transactions that make work (an event
// that enters or wakes customers, a launch, a resume) with a per-minute floor for waits that
// come due, and the per-minute scheduler of schedule triggers.
import { helpOnce, type JobDefinition } from '../jobs/queue.ts';

export const FLOW_TICK_QUEUE = 'flow-tick';
/** Claim loops per tick job: SKIP LOCKED lets them share the due entries. */
const LOOPS = 2;
/** A tick job drains for at most this long, then hands over to a fresh job if work is left. */
const SLICE_MS = 60_000;
/**
 * Workers beat every 10 s while a job runs; a job whose worker died (kill -9) is failed and
 * retried by pg-boss's monitor instead of staying active until it expires (with a stately
 * queue, the flows-kill test found the engine stalled for the 15 minutes of the old expiry).
 */
export const HEARTBEAT_SECONDS = 20;

export const flowTickJob: JobDefinition = {
  name: FLOW_TICK_QUEUE,
  // short: at most one wake-up waiting, however many events send one; ticks of several workers
  // may run at once (SKIP LOCKED shares the entries), and a dead worker's tick blocks nobody.
  queue: { retryLimit: 2, retryDelay: 1, expireInSeconds: 300, heartbeatSeconds: HEARTBEAT_SECONDS, policy: 'short', notify: true } as never,
  work: { pollingIntervalSeconds: 1, batchSize: 1 },
  cron: '* * * * *',
  handler: async (deps) => {
    const { drainFlows, DEFAULT_BATCH } = await import('./engine.ts');
    const { wake } = await import('./entries.ts');
    const until = Date.now() + SLICE_MS;
    // A full batch means a backlog (a launch, a schedule, a burst of events): one more wake-up
    // lets a free worker join (SKIP LOCKED shares the entries); otherwise one worker drained a
    // bulk entry alone while the others idled (bench:scale). Once per job, so it cannot cascade
    // past the backlog: the queue is 'short', at most one wake-up waits.
    const callHelp = helpOnce(() => wake(deps.boss));
    await Promise.all(Array.from({ length: LOOPS }, () => drainFlows(deps, DEFAULT_BATCH, until, callHelp)));
    if (Date.now() >= until) await wake(deps.boss);
  },
};

export const flowScheduleJob: JobDefinition = {
  name: 'flow-schedule',
  queue: { retryLimit: 1, expireInSeconds: 300, heartbeatSeconds: HEARTBEAT_SECONDS, policy: 'singleton' } as never,
  cron: '* * * * *',
  handler: async (deps) => {
    const { enterScheduled } = await import('./entries.ts');
    while ((await enterScheduled(deps)) > 0);
  },
};

/** Folds the flows' stats counts (flow_node_counts): a tick appends a few rows, this keeps them few. */
export const flowCountsFoldJob: JobDefinition = {
  name: 'flow-counts-fold',
  queue: { retryLimit: 1, expireInSeconds: 300, policy: 'singleton' } as never,
  // A flow under steady traffic appends ~1,000 rows a second (a tick per burst of events): summed
  // in ~7 ms per 33,000 rows, folded in ~30 ms (bench:flow's database).
  cron: '* * * * *',
  handler: async (deps) => {
    const { compactFlowCounts } = await import('../modules/flows/flows.stats.ts');
    await compactFlowCounts(deps.database.sql);
  },
};
