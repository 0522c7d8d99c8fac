// When an action runs: triggered every N minutes, recurring at a moment or on a cron schedule in
// a time zone (cron-parser follows daylight saving), single send at once.
import { CronExpressionParser } from 'cron-parser';
import type { FieldError } from '../../http/errors.ts';
import { isTimeZone } from '../../http/schemas.ts';
import type { ActionKind } from './actions.schemas.ts';

export const DEFAULT_EVERY_MINUTES = 5;
const MINUTE = 60_000;

/** What the `schedule` column holds, per kind. */
export interface StoredSchedule {
  everyMinutes?: number;
  at?: string;
  cron?: string;
  timeZone?: string;
  repeat?: 'once' | 'many';
}

export interface Timing {
  kind: ActionKind;
  schedule: StoredSchedule;
  startAt: Date | null;
  endAt: Date | null;
}

interface ScheduleInput {
  everyMinutes?: number | undefined;
  schedule?: { at: string } | { cron: string; timeZone: string } | undefined;
  repeat?: 'once' | 'many' | undefined;
  startAt?: string | undefined;
  endAt?: string | undefined;
}

/** Checks the kind's schedule settings against the clock; returns the stored form and each fault by pointer. */
export function checkSchedule(kind: ActionKind, body: ScheduleInput, now: Date): { schedule: StoredSchedule; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const fail = (pointer: string, detail: string) => errors.push({ pointer, detail });
  const schedule: StoredSchedule = {};
  if (kind !== 'triggered' && body.everyMinutes !== undefined) fail('/everyMinutes', 'applies to triggered actions only');
  if (kind !== 'recurring' && body.schedule !== undefined) fail('/schedule', 'applies to recurring actions only');
  if (kind !== 'recurring' && body.repeat !== undefined) fail('/repeat', 'applies to recurring actions only');
  if (kind === 'single_send') for (const key of ['startAt', 'endAt'] as const) if (body[key] !== undefined) fail(`/${key}`, 'a single send runs once, at launch');

  if (kind === 'triggered') schedule.everyMinutes = body.everyMinutes ?? DEFAULT_EVERY_MINUTES;
  if (kind === 'recurring') {
    const s = body.schedule;
    if (!s) fail('/schedule', 'a recurring action needs { at } (launch one time) or { cron, timeZone }');
    else if ('at' in s) {
      if (Date.parse(s.at) <= now.getTime()) fail('/schedule/at', 'is in the past');
      if (body.repeat !== undefined) fail('/repeat', 'applies to cron schedules only');
      if (body.startAt !== undefined || body.endAt !== undefined) fail(body.startAt !== undefined ? '/startAt' : '/endAt', 'a one-time launch has its moment in schedule.at');
      schedule.at = new Date(s.at).toISOString();
    } else {
      if (!isTimeZone(s.timeZone)) fail('/schedule/timeZone', `"${s.timeZone}" is not an IANA time zone`);
      else {
        try {
          CronExpressionParser.parse(s.cron, { tz: s.timeZone, strict: false });
          if (s.cron.trim().split(/\s+/).length !== 5) throw new Error('five fields');
        } catch {
          fail('/schedule/cron', 'is not a cron expression of five fields (minute hour day-of-month month day-of-week)');
        }
      }
      Object.assign(schedule, { cron: s.cron.trim(), timeZone: s.timeZone, repeat: body.repeat ?? 'once' });
    }
  }
  const start = body.startAt !== undefined ? Date.parse(body.startAt) : undefined;
  const end = body.endAt !== undefined ? Date.parse(body.endAt) : undefined;
  if (end !== undefined && end <= now.getTime()) fail('/endAt', 'is in the past');
  if (start !== undefined && end !== undefined && end <= start) fail('/endAt', 'is before startAt');
  return { schedule, errors };
}

/** The first run at or after `now` (a launch), or null when none is left. */
export function firstRun(t: Timing, now: Date): Date | null {
  if (t.kind === 'single_send') return now;
  if (t.schedule.at) return new Date(Math.max(Date.parse(t.schedule.at), now.getTime()));
  const from = t.startAt && t.startAt > now ? t.startAt : now;
  const first = t.schedule.cron ? cronAfter(t.schedule, new Date(from.getTime() - 1)) : from;
  return within(first, t);
}

/** The run after the one due at `slot`; runs missed while the scheduler was down are not made up. */
export function nextRun(t: Timing, slot: Date, now: Date): Date | null {
  if (t.kind === 'single_send' || t.schedule.at) return null;
  let next: Date;
  if (t.schedule.cron) next = cronAfter(t.schedule, slot > now ? slot : now);
  else {
    const every = (t.schedule.everyMinutes ?? DEFAULT_EVERY_MINUTES) * MINUTE;
    next = new Date(slot.getTime() + every);
    if (next <= now) next = new Date(now.getTime() + every);
  }
  return within(next, t);
}

function cronAfter(s: StoredSchedule, after: Date): Date {
  return CronExpressionParser.parse(s.cron!, { tz: s.timeZone!, currentDate: after }).next().toDate();
}

function within(at: Date, t: Timing): Date | null {
  return t.endAt && at > t.endAt ? null : at;
}
