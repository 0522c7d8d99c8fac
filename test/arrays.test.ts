// The array literals of src/db/arrays.ts read back by PostgreSQL exactly as the values given,
// whatever the text holds (the engine's writes depend on it).
import fc from 'fast-check';
import postgres from 'postgres';
import t from 'tap';
import { plainArray, textArray } from '../src/db/arrays.ts';
import { adminUrl } from './helpers/db.ts';

const sql = postgres(adminUrl(), { max: 1, onnotice: () => {} });
t.teardown(() => sql.end({ timeout: 5 }));

t.test('text arrays: quotes, backslashes, commas, braces, blanks, NULL and empty strings survive', async (t) => {
  const tricky = ['', 'a,b', 'q"uote', 'back\\slash', '\\"', 'NULL', 'null', '{x}', ' sp ', 'ünï 🎉', '\n\t', '"', '\\'];
  const [row] = await sql<{ v: string[] }[]>`select ${textArray(tricky)}::text[] as v`;
  t.same(row!.v, tricky);
  const [empty] = await sql<{ v: string[] }[]>`select ${textArray([])}::text[] as v`;
  t.same(empty!.v, []);
});

t.test('text arrays: any strings PostgreSQL can hold (property-based)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\u0000')), { maxLength: 20 }), async (values) => {
      const [row] = await sql<{ v: string[] }[]>`select ${textArray(values)}::text[] as v`;
      return JSON.stringify(row!.v) === JSON.stringify(values);
    }),
    { numRuns: 200 },
  );
  t.pass('200 arrays read back as given');
});

t.test('text arrays: null elements are NULL, and arrays of literals cast element by element (ragged rows)', async (t) => {
  // (read back as JSON: postgres.js reads an array's NULL as the text 'NULL')
  const [row] = await sql<{ v: (string | null)[] }[]>`select to_jsonb(${textArray(['a', null, 'NULL', ''])}::text[]) as v`;
  t.same(row!.v, ['a', null, 'NULL', '']);
  const rows = [['x', null], ['q"uote', 'back\\slash', '{b,c}'], []];
  const out = await sql<{ v: (string | null)[] }[]>`select to_jsonb(u::text[]) as v from unnest(${textArray(rows.map(textArray))}::text[]) as u`;
  t.same(out.map((r) => r.v), rows);
});

t.test('plain arrays: uuids, numbers and timestamps, and unnest zips them in order', async (t) => {
  const ids = ['0190f2a8-0000-7000-8000-000000000001', '0190f2a8-0000-7000-8000-000000000002'];
  const rows = await sql<{ id: string; n: number; at: Date }[]>`
    select * from unnest(${plainArray(ids)}::uuid[], ${plainArray([1, 2])}::int[], ${plainArray(['2026-01-01T00:00:00.000Z', '2026-06-01T12:30:00.000Z'])}::timestamptz[]) as u(id, n, at)`;
  t.same(rows.map((r) => [r.id, r.n, r.at.toISOString()]), [[ids[0], 1, '2026-01-01T00:00:00.000Z'], [ids[1], 2, '2026-06-01T12:30:00.000Z']]);
  const [empty] = await sql<{ v: string[] }[]>`select ${plainArray([])}::uuid[] as v`;
  t.same(empty!.v, []);
});
