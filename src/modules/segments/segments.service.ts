// Saved segments: a name and a filter tree, evaluated on demand by the audience compiler.
import { and, asc, eq, gt, type SQL } from 'drizzle-orm';
import { loadSegments, normalizeFilter, previewAudience } from '../../audience/audience.service.ts';
import type { TransactionSql } from 'postgres';
import type { Filter } from '../../audience/filter.ts';
import { segments } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { conflict, notFound } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { newId } from '../../ids.ts';
import type { ListSegmentsQuery, PreviewFilterBody, PreviewSavedBody, SaveSegmentBody, Segment } from './segments.schemas.ts';

type D = Pick<Deps, 'db' | 'database' | 'clock'>;
type Row = typeof segments.$inferSelect;

const toSegment = (r: Row): Segment => ({
  id: r.id, name: r.name, description: r.description, filter: r.filter, createdAt: r.createdAt.toISOString(), updatedAt: r.updatedAt.toISOString(),
});

/**
 * Changes of a workspace's segments one at a time: each checks the others (no cycle, nothing
 * refers to a segment being deleted), and two concurrent edits (A to refer to B, B to A) each
 * saw the other's old filter and saved a cycle.
 */
async function lockSegments(tx: TransactionSql, workspaceId: string): Promise<void> {
  await tx`select pg_advisory_xact_lock(hashtextextended(${`segments:${workspaceId}`}, 0))`;
}

export async function createSegment(deps: D, workspaceId: string, body: SaveSegmentBody): Promise<Segment> {
  const filter = normalizeFilter(body.filter);
  const now = deps.clock.now();
  return deps.database.sql.begin(async (tx) => {
    await lockSegments(tx, workspaceId);
    await loadSegments(tx, workspaceId, filter);
    const [row] = await tx<Row[]>`
      insert into segments (workspace_id, id, name, description, filter, created_at, updated_at)
      values (${workspaceId}, ${newId()}, ${body.name}, ${body.description ?? null}, ${JSON.stringify(filter)}::jsonb, ${now}, ${now})
      returning workspace_id as "workspaceId", id, name, description, filter, created_at as "createdAt", updated_at as "updatedAt"`;
    return toSegment(row!);
  });
}

async function findSegment(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<Row> {
  const [row] = await deps.db.select().from(segments).where(and(eq(segments.workspaceId, workspaceId), eq(segments.id, id)));
  if (!row) throw notFound('Segment');
  return row;
}

export async function getSegment(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<Segment> {
  return toSegment(await findSegment(deps, workspaceId, id));
}

export async function listSegments(deps: Pick<Deps, 'db'>, workspaceId: string, q: ListSegmentsQuery) {
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const where: SQL[] = [eq(segments.workspaceId, workspaceId)];
  if (after) where.push(gt(segments.id, after[0] as string));
  const rows = await deps.db.select().from(segments).where(and(...where)).orderBy(asc(segments.id)).limit(limit + 1);
  const page = pageOf(rows, limit, (r) => [r.id]);
  return { data: page.data.map(toSegment), nextCursor: page.nextCursor };
}

export async function updateSegment(deps: D, workspaceId: string, id: string, body: SaveSegmentBody): Promise<Segment> {
  const filter = normalizeFilter(body.filter);
  return deps.database.sql.begin(async (tx) => {
    await lockSegments(tx, workspaceId);
    const [locked] = await tx`select 1 from segments where workspace_id = ${workspaceId} and id = ${id} for update`;
    if (!locked) throw notFound('Segment');
    // Refuses a filter that reaches this segment again, directly or through others.
    await loadSegments(tx, workspaceId, filter, '/filter', id);
    const [row] = await tx<Row[]>`
      update segments set name = ${body.name}, description = ${body.description ?? null}, filter = ${JSON.stringify(filter)}::jsonb, updated_at = ${deps.clock.now()}
      where workspace_id = ${workspaceId} and id = ${id}
      returning workspace_id as "workspaceId", id, name, description, filter, created_at as "createdAt", updated_at as "updatedAt"`;
    return toSegment(row!);
  });
}

/** Refuses while a live action, a flow (its running version or its draft) or another segment refers to the segment: deleting it would break them. */
export async function deleteSegment(deps: D, workspaceId: string, id: string): Promise<void> {
  await deps.database.sql.begin(async (tx) => {
    await lockSegments(tx, workspaceId);
    const [row] = await tx`select 1 from segments where workspace_id = ${workspaceId} and id = ${id} for update`;
    if (!row) throw notFound('Segment');
    const path = '$.** ? (@.type == "segment" && @.segmentId == $id)';
    const vars = JSON.stringify({ id });
    const users = await tx<{ what: string; id: string; name: string }[]>`
      select 'action' as what, id, name from actions
        where workspace_id = ${workspaceId} and deleted_at is null and status in ('active', 'paused') and jsonb_path_exists(audience, ${path}::jsonpath, ${vars}::jsonb)
      union all
      select 'segment', id, name from segments where workspace_id = ${workspaceId} and id <> ${id} and jsonb_path_exists(filter, ${path}::jsonpath, ${vars}::jsonb)
      union all
      -- A flow's running version or its draft (a filter anywhere in its graph: a trigger's audience, a condition, a splitter).
      select 'flow', f.id, f.name from flows f
      join flow_versions v on v.workspace_id = f.workspace_id and v.flow_id = f.id and v.version in (f.active_version, f.draft_version)
      where f.workspace_id = ${workspaceId} and f.deleted_at is null and jsonb_path_exists(v.graph, ${path}::jsonpath, ${vars}::jsonb)
      limit 20`;
    if (users.length) throw conflict(`The segment is used by ${users.map((u) => `${u.what} "${u.name}" (${u.id})`).join(', ')}; change or stop them first`);
    await tx`delete from segments where workspace_id = ${workspaceId} and id = ${id}`;
  });
}

export async function previewSegment(deps: D, workspaceId: string, id: string, body: PreviewSavedBody) {
  const segment = await findSegment(deps, workspaceId, id);
  return preview(deps, workspaceId, segment.filter, body);
}

export async function previewFilter(deps: D, workspaceId: string, body: PreviewFilterBody) {
  return preview(deps, workspaceId, normalizeFilter(body.filter), body);
}

function preview(deps: D, workspaceId: string, filter: Filter, body: PreviewSavedBody) {
  return previewAudience(deps.database.sql, { workspaceId, filter, now: deps.clock.now(), limit: body.limit ?? 20, cursor: body.cursor, columns: body.columns ?? [] });
}
