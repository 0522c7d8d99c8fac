// pg-boss in its own schema: the job queue and scheduler of every process.
import { PgBoss, type Job, type QueueOptions, type WorkOptions } from 'pg-boss';
import type { Role } from '../config.ts';
import { isDatabaseDown, retryWhileDown } from '../db/errors.ts';
import type { Deps } from '../deps.ts';

export const BOSS_SCHEMA = 'pgboss';

export interface JobDefinition<T extends object = object> {
  name: string;
  queue: QueueOptions;
  work?: WorkOptions;
  /** A cron expression (UTC) for jobs that run on a schedule. */
  cron?: string;
  handler: (deps: Deps, jobs: Job<T>[]) => Promise<void>;
}

export function createBoss(url: string, role: Role, log: { warn(o: object, m: string): void; error(o: object, m: string): void }): PgBoss {
  const runsJobs = role !== 'api';
  const boss = new PgBoss({
    connectionString: url,
    schema: BOSS_SCHEMA,
    max: 4,
    application_name: `herald-${role}-boss`,
    supervise: runsJobs,
    schedule: runsJobs,
    useListenNotify: runsJobs,
  });
  boss.on('error', (err) => log.error({ err }, 'job queue error'));
  boss.on('warning', (w) => log.warn({ warning: w }, 'job queue warning'));
  return boss;
}

/** Creates every queue; in worker roles also starts its workers and schedules. */
export async function registerJobs(boss: PgBoss, deps: Deps, role: Role, jobs: JobDefinition<any>[]): Promise<void> {
  for (const job of jobs) await boss.createQueue(job.name, job.queue);
  if (role === 'api') return;
  for (const job of jobs) {
    // With notify on, pg-boss polls only every 30 s unless told: a worker that was busy when a
    // NOTIFY came fetches once after its job and sleeps, so a job could wait 30 s with a worker
    // free (test/scale.test.ts saw an action run start 30 s late). The backstop polls as often
    // as the queue's own interval.
    const work = { batchSize: 1, pollingIntervalSeconds: 2, ...job.work };
    await boss.work(job.name, { notifyPollingIntervalSeconds: work.pollingIntervalSeconds, ...work }, (batch: Job<object>[]) => throughOutages(deps, () => job.handler(deps, batch)));
    if (job.cron) await boss.schedule(job.name, job.cron, null, { tz: 'UTC' } as never);
  }
}

/** How long a job waits for its database to come back; below every queue's expireInSeconds. */
const OUTAGE_WAIT_MS = 60_000;

/**
 * A job whose database goes away mid-run (a restart, a failover) waits for it and runs again.
 * Failing instead would go nowhere: pg-boss cannot record the failure in a database that is down,
 * so the job would stay 'active' until its heartbeat or expiry ran out (minutes), and its work
 * (the rest of a flow run, a batch of sends) would wait for the next cron or event to wake it.
 * Every handler is safe to run again: every queue retries.
 */
async function throughOutages(deps: Pick<Deps, 'database'>, run: () => Promise<void>): Promise<void> {
  const until = Date.now() + OUTAGE_WAIT_MS;
  for (;;) {
    try {
      return await run();
    } catch (error) {
      if (!isDatabaseDown(error) || Date.now() >= until) throw error;
      await retryWhileDown(() => deps.database.sql`select 1`, until - Date.now());
    }
  }
}

/**
 * For a job that finds a backlog (a full batch): the first call sends one more job (`send`), so
 * that a free worker joins; later calls do nothing. Only help is lost if the send fails.
 */
export function helpOnce(send: () => Promise<unknown>): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    send().catch(() => {});
  };
}
