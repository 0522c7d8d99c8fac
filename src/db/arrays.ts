// PostgreSQL array literals for the set-based hot paths, built here instead of by the driver:
// postgres.js quotes and escapes every element of an array parameter (two regular expressions
// and string concatenations per element), which was a quarter of the flow engine's CPU in
// bench:flow. A literal goes as one text parameter and is cast in SQL:
//   from unnest(${plainArray(ids)}::uuid[], ${textArray(names)}::text[]) as u(id, name)

/**
 * Elements that never need quoting: uuids, numbers, ISO timestamps, identifiers made of
 * [A-Za-z0-9_-]. Not for empty strings, free text or "NULL" (use textArray).
 */
export function plainArray(values: readonly (string | number)[]): string {
  return `{${values.join(',')}}`;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/**
 * Any text (empty strings included): each element quoted, quotes and backslashes escaped; null
 * is NULL. Nested arrays go as arrays of literals: `${textArray(rows.map(textArray))}::text[]`,
 * each element cast with `::text[]` in SQL (PostgreSQL's own arrays must be rectangular).
 */
export function textArray(values: readonly (string | null)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i > 0) out += ',';
    out += v === null ? 'NULL' : `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPE, '\\$&') : v}"`;
  }
  return `${out}}`;
}
