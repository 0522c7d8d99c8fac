// pg-boss in its own schema: the job queue and scheduler of every process.
import { PgBoss, type Job, type QueueOptions, type WorkOptions } from 'pg-boss';
import type { Role } from '../config.ts';
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
    await boss.work(job.name, { batchSize: 1, pollingIntervalSeconds: 2, ...job.work }, (batch: Job<object>[]) => job.handler(deps, batch));
    if (job.cron) await boss.schedule(job.name, job.cron, null, { tz: 'UTC' } as never);
  }
}
