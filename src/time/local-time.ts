// Wall-clock arithmetic in IANA time zones with Intl only: enough for quiet hours (is it within
// a window now; when does the window end), correct across daylight-saving changes.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit' });
    formatters.set(zone, f);
  }
  return f;
}

/** Minutes since local midnight at `at` in `zone`. */
export function localMinutes(at: Date, zone: string): number {
  let hour = 0;
  let minute = 0;
  for (const part of formatter(zone).formatToParts(at)) {
    if (part.type === 'hour') hour = Number(part.value);
    if (part.type === 'minute') minute = Number(part.value);
  }
  return hour * 60 + minute;
}

export const parseClock = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether local time is in [start, end); a window whose end is before its start wraps midnight. */
export function inWindow(at: Date, zone: string, start: string, end: string): boolean {
  const now = localMinutes(at, zone);
  const [s, e] = [parseClock(start), parseClock(end)];
  return s <= e ? now >= s && now < e : now >= s || now < e;
}

/**
 * The next instant after `at` whose local time is `hhmm` in `zone`. A time skipped by a
 * daylight-saving jump moves forward by the length of the jump (02:30 becomes 03:30), as
 * Temporal's "compatible" disambiguation does.
 */
export function nextLocalTime(at: Date, zone: string, hhmm: string): Date {
  const target = parseClock(hhmm);
  const minute = 60_000;
  const from = Math.floor(at.getTime() / minute) * minute + minute;
  let delta = (target - localMinutes(new Date(from), zone) + 1440) % 1440;
  let candidate = new Date(from + delta * minute);
  // Correct for an offset change between now and the candidate (at most one per day).
  for (let i = 0; i < 2 && localMinutes(candidate, zone) !== target; i++) {
    delta = (target - localMinutes(candidate, zone) + 1440) % 1440;
    const next = new Date(candidate.getTime() + (delta > 720 ? delta - 1440 : delta) * minute);
    if (next.getTime() <= at.getTime()) break;
    candidate = next;
  }
  return candidate;
}

const weekdays = new Map<string, Intl.DateTimeFormat>();
const DAY_NAMES: Record<string, string> = { Mon: 'mon', Tue: 'tue', Wed: 'wed', Thu: 'thu', Fri: 'fri', Sat: 'sat', Sun: 'sun' };

/** The local weekday at `at` in `zone`: mon, tue... */
export function localWeekday(at: Date, zone: string): string {
  let f = weekdays.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short' });
    weekdays.set(zone, f);
  }
  return DAY_NAMES[f.format(at)]!;
}

/**
 * The first instant at or after `at` when the local time is within [from, to) on one of `days`,
 * in `zone` (a timed delay: leave only then). Daylight-saving safe through nextLocalTime.
 */
export function nextInWindow(at: Date, zone: string, days: string[], from: string, to: string): Date {
  const now = localMinutes(at, zone);
  const end = to === '24:00' ? 1440 : parseClock(to);
  if (days.includes(localWeekday(at, zone)) && now >= parseClock(from) && now < end) return at;
  let candidate = nextLocalTime(at, zone, from);
  for (let i = 0; i < 8 && !days.includes(localWeekday(candidate, zone)); i++) candidate = nextLocalTime(candidate, zone, from);
  return candidate;
}
