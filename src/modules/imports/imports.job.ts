// Bulk import, part two: the job reads the stored upload back as a stream and upserts customers
// in batches of 1000. Each batch commits together with the import's progress, so a job retried
// after a crash resumes after the last committed row instead of counting rows twice.
import { and, asc, eq, gte, sql } from 'drizzle-orm';
import { importChunks, imports, type ImportRowError } from '../../db/schema/index.ts';
import type { Db } from '../../db/client.ts';
import type { Deps } from '../../deps.ts';
import { fieldErrors } from '../../http/problem.ts';
import { compileStrict } from '../../http/validation.ts';
import { isTimeZone } from '../../http/schemas.ts';
import { newId } from '../../ids.ts';
import type { JobDefinition } from '../../jobs/queue.ts';
import { IMPORT_QUEUE } from './imports.service.ts';
import { ImportRow, MAX_STORED_ERRORS, type ImportFormat } from './imports.schemas.ts';
import { readRows } from './imports.rows.ts';

const BATCH = 1000;
const validateRow = compileStrict(ImportRow);

interface Batch {
  rows: { line: number; value: ImportRow }[];
  errors: ImportRowError[];
  seen: Set<string>;
  read: number;
}

export const importJob: JobDefinition<{ workspaceId: string; importId: string }> = {
  name: IMPORT_QUEUE,
  queue: { retryLimit: 3, retryDelay: 5, retryBackoff: true, expireInSeconds: 3600 },
  work: { pollingIntervalSeconds: 1 },
  handler: async (deps, jobs) => {
    for (const job of jobs) await runImport(deps, job.data.workspaceId, job.data.importId);
  },
};

export async function runImport(deps: Pick<Deps, 'db' | 'clock'>, workspaceId: string, importId: string): Promise<void> {
  const where = and(eq(imports.workspaceId, workspaceId), eq(imports.id, importId));
  const [record] = await deps.db.select().from(imports).where(where);
  if (!record || record.status === 'completed') return;
  await deps.db.update(imports).set({ status: 'running', failure: null, startedAt: record.startedAt ?? deps.clock.now() }).where(where);
  try {
    const alreadyDone = record.processedRows;
    let read = 0;
    let batch = newBatch();
    for await (const source of readRows(record.format as ImportFormat, chunksOf(deps.db, workspaceId, importId))) {
      if (read++ < alreadyDone) continue;
      batch.read++;
      if ('error' in source) {
        batch.errors.push({ line: source.line, message: source.error });
      } else if (!validateRow(source.value)) {
        for (const e of fieldErrors(validateRow.errors as never, 'body')) batch.errors.push({ line: source.line, pointer: e.pointer, message: e.detail });
      } else if (typeof source.value.timeZone === 'string' && !isTimeZone(source.value.timeZone)) {
        batch.errors.push({ line: source.line, pointer: '/timeZone', message: `"${source.value.timeZone}" is not an IANA time zone` });
      } else {
        const value = source.value as ImportRow;
        // One statement cannot upsert the same row twice: a repeated externalId starts a new batch.
        if (batch.seen.has(value.externalId)) {
          batch.read--;
          await commitBatch(deps, workspaceId, importId, batch);
          batch = newBatch();
          batch.read++;
        }
        batch.seen.add(value.externalId);
        batch.rows.push({ line: source.line, value });
      }
      if (batch.read >= BATCH) {
        await commitBatch(deps, workspaceId, importId, batch);
        batch = newBatch();
      }
    }
    await commitBatch(deps, workspaceId, importId, batch);
    await deps.db.transaction(async (tx) => {
      await tx.update(imports).set({ status: 'completed', finishedAt: deps.clock.now() }).where(where);
      await tx.delete(importChunks).where(and(eq(importChunks.workspaceId, workspaceId), eq(importChunks.importId, importId)));
    });
  } catch (error) {
    await deps.db.update(imports).set({ status: 'failed', failure: (error as Error).message.slice(0, 500) }).where(where);
    throw error;
  }
}

const newBatch = (): Batch => ({ rows: [], errors: [], seen: new Set(), read: 0 });

async function commitBatch(deps: Pick<Deps, 'db' | 'clock'>, workspaceId: string, importId: string, batch: Batch): Promise<void> {
  if (batch.read === 0) return;
  const now = deps.clock.now();
  await deps.db.transaction(async (tx) => {
    let created = 0;
    if (batch.rows.length) {
      const rows = batch.rows.map(({ value: v }) => ({
        id: newId(), external_id: v.externalId, email: v.email?.toLowerCase() ?? null, phone: v.phone ?? null,
        time_zone: v.timeZone ?? null, locale: v.locale ?? null, custom: v.custom ?? {},
      }));
      const result = await tx.execute<{ created: boolean }>(sql`
        insert into customers (workspace_id, id, external_id, email, phone, time_zone, locale, custom, created_at, updated_at)
        select ${workspaceId}::uuid, r.id, r.external_id, r.email, r.phone, r.time_zone, r.locale, r.custom, ${now.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
        from json_to_recordset(${JSON.stringify(rows)}::json)
          as r(id uuid, external_id text, email text, phone text, time_zone text, locale text, custom jsonb)
        on conflict (workspace_id, external_id) do update set
          email = coalesce(excluded.email, customers.email),
          phone = coalesce(excluded.phone, customers.phone),
          time_zone = coalesce(excluded.time_zone, customers.time_zone),
          locale = coalesce(excluded.locale, customers.locale),
          custom = customers.custom || excluded.custom,
          updated_at = excluded.updated_at
        returning (xmax = 0) as created`);
      created = result.filter((r) => r.created).length;
    }
    const failedLines = new Set(batch.errors.map((e) => e.line)).size;
    batch.errors.sort((a, b) => a.line - b.line);
    await tx
      .update(imports)
      .set({
        processedRows: sql`${imports.processedRows} + ${batch.read}`,
        createdRows: sql`${imports.createdRows} + ${created}`,
        updatedRows: sql`${imports.updatedRows} + ${batch.rows.length - created}`,
        failedRows: sql`${imports.failedRows} + ${failedLines}`,
        errors: sql`case when jsonb_array_length(${imports.errors}) >= ${MAX_STORED_ERRORS} then ${imports.errors}
          else (${imports.errors} || ${JSON.stringify(batch.errors)}::jsonb) end`,
      })
      .where(and(eq(imports.workspaceId, workspaceId), eq(imports.id, importId)));
  });
}

/** The stored upload, one chunk in memory at a time. */
async function* chunksOf(db: Db, workspaceId: string, importId: string): AsyncIterable<Buffer> {
  for (let seq = 0; ; seq++) {
    const [chunk] = await db
      .select({ data: importChunks.data })
      .from(importChunks)
      .where(and(eq(importChunks.workspaceId, workspaceId), eq(importChunks.importId, importId), gte(importChunks.seq, seq)))
      .orderBy(asc(importChunks.seq))
      .limit(1);
    if (!chunk) return;
    yield chunk.data;
  }
}
