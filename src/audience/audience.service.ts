// The audience compiler's entry points: check a filter, load the segments it names (refusing
// cycles), compile it, and answer "how many / who matches" or "which of these customers match".
import type { Sql, TransactionSql } from 'postgres';
import { invalid, unprocessable, type FieldError } from '../http/errors.ts';
import { decodeCursor, encodeCursor } from '../http/pagination.ts';
import { compileDirectCount, compileFilter, type Compiled, type Mode } from './compile.ts';
import { CUSTOM_PATH, TEXT_FIELDS, TIME_FIELDS, type Filter } from './filter.ts';
import { checkFilter, MAX_DEPTH } from './validate.ts';
import type { CustomerSqlRow } from '../modules/customers/customers.service.ts';

type Db = Sql | TransactionSql;

export interface AudienceInput {
  workspaceId: string;
  filter: Filter;
  now: Date;
}

/** Throws a 400 naming each bad node (pointers under `pointer`); returns the segment ids it refers to. */
export function assertFilter(filter: unknown, pointer = '/filter'): Set<string> {
  const { errors, segmentIds } = checkFilter(filter, pointer);
  if (errors.length) throw invalid('The filter is not valid', errors);
  return segmentIds;
}

/** A checked filter as stored: ids in lower case, so that lookups by reference find them. */
export function normalizeFilter(filter: unknown, pointer = '/filter'): Filter {
  assertFilter(filter, pointer);
  return JSON.parse(JSON.stringify(filter), (key, value) => ((key === 'segmentId' || key === 'actionTemplateId') && typeof value === 'string' ? value.toLowerCase() : value)) as Filter;
}

/**
 * Loads every segment the filter refers to, transitively. A reference to a missing segment is a
 * 422; a cycle (including `selfId`, the segment being saved) is a 400 naming the reference.
 */
export async function loadSegments(db: Db, workspaceId: string, filter: Filter, pointer = '/filter', selfId?: string): Promise<Map<string, Filter>> {
  const loaded = new Map<string, Filter>();
  const refs = new Map<string, Set<string>>();
  let frontier = [...assertFilter(filter, pointer)];
  refs.set(selfId ?? '', new Set(frontier));
  for (let depth = 0; frontier.length; depth++) {
    if (depth > MAX_DEPTH) throw invalid('Segments nest too deeply', [{ pointer, detail: `segments may refer to each other at most ${MAX_DEPTH} levels deep` }]);
    const wanted = frontier.filter((id) => !loaded.has(id) && id !== selfId);
    const rows = wanted.length
      ? await db<{ id: string; filter: Filter }[]>`select id, filter from segments where workspace_id = ${workspaceId} and id = any(${wanted}::uuid[])`
      : [];
    const missing = wanted.filter((id) => !rows.some((r) => r.id === id));
    if (missing.length) throw unprocessable('The filter refers to a segment that does not exist', missing.map((id) => ({ pointer, detail: `segment ${id} does not exist` })));
    frontier = [];
    for (const row of rows) {
      loaded.set(row.id, row.filter);
      const next = checkFilter(row.filter).segmentIds;
      refs.set(row.id, next);
      frontier.push(...next);
    }
  }
  const cycle = findCycle(refs, selfId ?? '');
  if (cycle) throw invalid('A segment cannot refer to itself', [{ pointer, detail: `segments refer to each other in a cycle: ${cycle.join(' -> ')}` }]);
  return loaded;
}

function findCycle(refs: Map<string, Set<string>>, root: string): string[] | undefined {
  const path: string[] = [];
  const done = new Set<string>();
  const visit = (id: string): string[] | undefined => {
    const at = path.indexOf(id);
    if (at >= 0) return [...path.slice(at), id];
    if (done.has(id)) return undefined;
    path.push(id);
    for (const next of refs.get(id) ?? []) {
      const found = visit(next);
      if (found) return found;
    }
    path.pop();
    done.add(id);
    return undefined;
  };
  // The root of an unsaved filter is '' (no id of its own); a saved segment's root is its id.
  for (const next of refs.get(root) ?? []) {
    path.length = 0;
    if (root) path.push(root);
    const found = visit(next);
    if (found) return found;
  }
  return undefined;
}

async function workspaceZone(db: Db, workspaceId: string): Promise<string> {
  const [row] = await db<{ time_zone: string }[]>`select time_zone from workspaces where id = ${workspaceId}`;
  return row?.time_zone ?? 'UTC';
}

/** Checks, loads the segments a filter names and the workspace's zone, and compiles it for one of the two modes. */
async function prepare(db: Db, input: AudienceInput, mode: Mode, pointer = '/filter'): Promise<{ compiled: Compiled; timeZone: string }> {
  const segments = await loadSegments(db, input.workspaceId, input.filter, pointer);
  const timeZone = await workspaceZone(db, input.workspaceId);
  return { compiled: compileFilter(input.filter, { workspaceId: input.workspaceId, now: input.now, timeZone }, { mode, segments }), timeZone };
}

export async function compileAudience(db: Db, input: AudienceInput, mode: Mode, pointer = '/filter'): Promise<Compiled> {
  return (await prepare(db, input, mode, pointer)).compiled;
}

/** The SQL of "the ids of every matching customer", for set-based writers (an action run's INSERT ... SELECT). */
export function matchingIdsSql(compiled: Compiled): string {
  return `select c.id from customers c where c.workspace_id = $1::uuid and ${compiled.where}`;
}

/** Counts with a compiled filter, or without reading customers when the filter allows it (compileDirectCount). */
async function count(db: Db, input: AudienceInput, compiled: Compiled, timeZone: string): Promise<number> {
  const direct = compileDirectCount(input.filter, { workspaceId: input.workspaceId, now: input.now, timeZone });
  const [row] = direct
    ? await db.unsafe<{ n: string }[]>(direct.where, direct.params as never[])
    : await db.unsafe<{ n: string }[]>(`select count(*) as n from customers c where c.workspace_id = $1::uuid and ${compiled.where}`, compiled.params as never[]);
  return Number(row!.n);
}

export async function countAudience(db: Db, input: AudienceInput): Promise<number> {
  const { compiled, timeZone } = await prepare(db, input, 'all');
  return count(db, input, compiled, timeZone);
}

/** Which of these customers match (a flow batch): one query for the whole batch. */
export async function matchCustomers(db: Db, input: AudienceInput & { customerIds: string[] }): Promise<Set<string>> {
  if (input.customerIds.length === 0) return new Set();
  const compiled = await compileAudience(db, input, 'subset');
  const ids = compiled.params.length + 1;
  const rows = await db.unsafe<{ id: string }[]>(
    `select c.id from customers c where c.workspace_id = $1::uuid and c.id = any($${ids}::uuid[]) and ${compiled.where}`,
    [...compiled.params, input.customerIds] as never[],
  );
  return new Set(rows.map((r) => r.id));
}

// ---- previews: the count and a page of customers with the columns asked for ------------------------

export const PREVIEW_COLUMNS = [...Object.keys(TEXT_FIELDS), ...Object.keys(TIME_FIELDS)];

export function checkColumns(columns: string[], pointer = '/columns'): void {
  const errors: FieldError[] = [];
  columns.forEach((c, i) => {
    if (!PREVIEW_COLUMNS.includes(c) && !CUSTOM_PATH.test(c)) errors.push({ pointer: `${pointer}/${i}`, detail: `unknown column "${c}"; one of ${PREVIEW_COLUMNS.join(', ')} or custom.<path>` });
  });
  if (errors.length) throw invalid('Unknown columns', errors);
}

export interface PreviewRow {
  id: string;
  externalId: string | null;
  fields: Record<string, unknown>;
}

export function pickColumns(row: Omit<CustomerSqlRow, 'id'>, columns: string[]): Record<string, unknown> {
  const builtIn: Record<string, unknown> = {
    email: row.email, phone: row.phone, externalId: row.external_id, timeZone: row.time_zone, locale: row.locale,
    createdAt: row.created_at.toISOString(), updatedAt: row.updated_at.toISOString(),
  };
  const fields: Record<string, unknown> = {};
  for (const column of columns) {
    if (column in builtIn) fields[column] = builtIn[column];
    else fields[column] = column.split('.').slice(1).reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), row.custom) ?? null;
  }
  return fields;
}

export async function previewAudience(db: Db, input: AudienceInput & { limit: number; cursor?: string | undefined; columns: string[] }) {
  checkColumns(input.columns);
  const after = decodeCursor(input.cursor, ['string']);
  const { compiled, timeZone } = await prepare(db, input, 'all');
  const total = await count(db, input, compiled, timeZone);
  let data: PreviewRow[] = [];
  let nextCursor: string | null = null;
  if (input.limit > 0) {
    const params = [...compiled.params, after?.[0] ?? null, input.limit + 1];
    const n = compiled.params.length;
    const rows = await db.unsafe<CustomerSqlRow[]>(
      `select c.id, c.external_id, c.email, c.phone, c.time_zone, c.locale, c.custom, c.created_at, c.updated_at from customers c
       where c.workspace_id = $1::uuid and ($${n + 1}::uuid is null or c.id > $${n + 1}::uuid) and ${compiled.where}
       order by c.id limit $${n + 2}::int`,
      params as never[],
    );
    const page = rows.slice(0, input.limit);
    if (rows.length > input.limit) nextCursor = encodeCursor([page[page.length - 1]!.id]);
    data = page.map((r) => ({ id: r.id, externalId: r.external_id, fields: pickColumns(r, input.columns) }));
  }
  return { count: total, data, nextCursor };
}
