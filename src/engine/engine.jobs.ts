// The engine's jobs: a tick queue woken by NOTIFY from the transactions that make work (an event
// that enters or wakes customers, a launch, a resume) with a per-minute floor for waits that
// come due, and the per-minute scheduler of schedule triggers.
import type { JobDefinition } from '../jobs/queue.ts';

export const FLOW_TICK_QUEUE = 'flow-tick';
/** Claim loops per tick job: SKIP LOCKED lets them share the due entries. */
const LOOPS = 2;

export const flowTickJob: JobDefinition = {
  name: FLOW_TICK_QUEUE,
  // stately: one tick running and one waiting, however many events wake it.
  queue: { retryLimit: 2, retryDelay: 1, expireInSeconds: 900, policy: 'stately', notify: true } as never,
  work: { pollingIntervalSeconds: 1, batchSize: 1 },
  cron: '* * * * *',
  handler: async (deps) => {
    const { drainFlows } = await import('./engine.ts');
    await Promise.all(Array.from({ length: LOOPS }, () => drainFlows(deps)));
  },
};

export const flowScheduleJob: JobDefinition = {
  name: 'flow-schedule',
  queue: { retryLimit: 1, expireInSeconds: 300, policy: 'singleton' } as never,
  cron: '* * * * *',
  handler: async (deps) => {
    const { enterScheduled } = await import('./entries.ts');
    while ((await enterScheduled(deps)) > 0);
  },
};
