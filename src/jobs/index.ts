// The queue table: every background job of Herald, in one place.
import { importJob } from '../modules/imports/imports.job.ts';
import { idempotencyCleanupJob } from '../http/idempotency.ts';
import { sendJob } from '../modules/messages/send.worker.ts';
import { actionRunJob, actionSchedulerJob, actionTriggerJob } from '../modules/actions/actions.runs.ts';
import { flowCountsFoldJob, flowScheduleJob, flowTickJob } from '../engine/engine.jobs.ts';
import type { JobDefinition } from './queue.ts';

export const jobs: JobDefinition<any>[] = [importJob, idempotencyCleanupJob, sendJob, actionSchedulerJob, actionRunJob, actionTriggerJob, flowTickJob, flowScheduleJob, flowCountsFoldJob];
