// Bulk import, part one: the upload is streamed into import_chunks (1 MiB each, never the whole
// file in memory) and the job that reads it is enqueued in the same transaction that marks the
// import queued.
import type { Readable } from 'node:stream';
import { and, eq, sql } from 'drizzle-orm';
import { fromDrizzle } from 'pg-boss';
import { importChunks, imports } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { HeraldError, notFound } from '../../http/errors.ts';
import { newId } from '../../ids.ts';
import { MAX_IMPORT_BYTES, type Import, type ImportFormat } from './imports.schemas.ts';

export const IMPORT_QUEUE = 'customer-import';
const CHUNK_BYTES = 1024 * 1024;

type ImportRowRecord = typeof imports.$inferSelect;
export const toImport = (r: ImportRowRecord): Import => ({
  id: r.id,
  format: r.format as ImportFormat,
  status: r.status as Import['status'],
  bytes: r.bytes,
  processedRows: r.processedRows,
  createdRows: r.createdRows,
  updatedRows: r.updatedRows,
  failedRows: r.failedRows,
  errors: r.errors,
  failure: r.failure,
  createdAt: r.createdAt.toISOString(),
  startedAt: r.startedAt?.toISOString() ?? null,
  finishedAt: r.finishedAt?.toISOString() ?? null,
});

export async function startImport(deps: Pick<Deps, 'db' | 'boss' | 'clock'>, workspaceId: string, format: ImportFormat, body: Readable, maxBytes = MAX_IMPORT_BYTES): Promise<Import> {
  const id = newId();
  await deps.db.insert(imports).values({ workspaceId, id, format, status: 'receiving', createdAt: deps.clock.now() });
  let bytes = 0;
  try {
    let seq = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pendingBytes === 0) return;
      await deps.db.insert(importChunks).values({ workspaceId, importId: id, seq: seq++, data: Buffer.concat(pending) });
      pending = [];
      pendingBytes = 0;
    };
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      bytes += buf.length;
      if (bytes > maxBytes) throw new HeraldError(413, 'payload_too_large', 'Content Too Large', `Imports are limited to ${maxBytes} bytes`);
      pending.push(buf);
      pendingBytes += buf.length;
      if (pendingBytes >= CHUNK_BYTES) await flush();
    }
    await flush();
    if (bytes === 0) throw new HeraldError(400, 'empty_body', 'Bad Request', 'The upload is empty');
  } catch (error) {
    // Nothing half-written: the import and its chunks go.
    await deps.db.delete(imports).where(and(eq(imports.workspaceId, workspaceId), eq(imports.id, id)));
    body.resume();
    throw error;
  }
  const row = await deps.db.transaction(async (tx) => {
    const [updated] = await tx.update(imports).set({ status: 'queued', bytes }).where(and(eq(imports.workspaceId, workspaceId), eq(imports.id, id))).returning();
    await deps.boss.send(IMPORT_QUEUE, { workspaceId, importId: id }, { db: fromDrizzle(tx, sql) });
    return updated!;
  });
  return toImport(row);
}

export async function getImport(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<Import> {
  const [row] = await deps.db.select().from(imports).where(and(eq(imports.workspaceId, workspaceId), eq(imports.id, id)));
  if (!row) throw notFound('Import');
  return toImport(row);
}
