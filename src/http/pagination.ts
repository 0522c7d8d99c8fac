// Opaque cursors: the sort key of the last row of a page, base64url-encoded JSON.
import { invalid } from './errors.ts';

export function encodeCursor(key: (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

export function decodeCursor(cursor: string | undefined, shape: ('string' | 'number')[]): (string | number)[] | undefined {
  if (cursor === undefined) return undefined;
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === shape.length && key.every((v, i) => typeof v === shape[i])) return key as (string | number)[];
  } catch {
    // falls through to the 400 below
  }
  throw invalid('The cursor is not one this API issued', [{ pointer: '/query/cursor', detail: 'is not a valid cursor' }]);
}

/** Given limit+1 rows, the page and the cursor of the next one. */
export function pageOf<T>(rows: T[], limit: number, key: (row: T) => (string | number)[]): { data: T[]; nextCursor: string | null } {
  if (rows.length <= limit) return { data: rows, nextCursor: null };
  const data = rows.slice(0, limit);
  return { data, nextCursor: encodeCursor(key(data[data.length - 1]!)) };
}

/**
 * SQL for a timestamptz column as a cursor's key: ISO 8601 in UTC to the microsecond, as
 * PostgreSQL keeps it. A JavaScript Date keeps milliseconds only, so a cursor made from one
 * skipped the rows whose times differ from it below the millisecond (an event posted with
 * microseconds, as Python's isoformat() writes them). Give it back as `$n::text::timestamptz`:
 * postgres.js turns a timestamptz parameter into a Date first.
 */
export const cursorTime = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
