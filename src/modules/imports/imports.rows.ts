// Reading an upload back, row by row: CSV (header row; known columns map to profile fields, the
// others become custom fields) or NDJSON (one customer object a line). A bad row is reported
// and skipped; it never stops the import.
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { parse } from 'csv-parse';
import type { ImportFormat } from './imports.schemas.ts';

export type SourceRow = { line: number; value: Record<string, unknown> } | { line: number; error: string };

const PROFILE_COLUMNS = new Set(['externalId', 'email', 'phone', 'timeZone', 'locale']);

export function readRows(format: ImportFormat, bytes: AsyncIterable<Buffer>): AsyncIterable<SourceRow> {
  const stream = Readable.from(bytes);
  return format === 'csv' ? csvRows(stream) : ndjsonRows(stream);
}

async function* csvRows(stream: Readable): AsyncIterable<SourceRow> {
  const skipped: SourceRow[] = [];
  const parser = stream.pipe(
    parse({
      bom: true,
      columns: (header: string[]) => header.map((h) => h.trim()),
      skip_empty_lines: true,
      trim: true,
      info: true,
      skip_records_with_error: true,
      on_skip: (err) => {
        if (err) skipped.push({ line: Number(err.lines), error: err.message });
        return undefined;
      },
    }),
  );
  for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
    yield* skipped.splice(0);
    yield { line: info.lines, value: csvRecordToCustomer(record) };
  }
  yield* skipped.splice(0);
}

export function csvRecordToCustomer(record: Record<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const custom: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(record)) {
    if (value === '' || column === '') continue;
    if (PROFILE_COLUMNS.has(column)) out[column] = value;
    else custom[column.startsWith('custom.') ? column.slice(7) : column] = value;
  }
  if (Object.keys(custom).length) out.custom = custom;
  return out;
}

async function* ndjsonRows(stream: Readable): AsyncIterable<SourceRow> {
  let line = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    line++;
    if (text.trim() === '') continue;
    try {
      const value = JSON.parse(text) as unknown;
      if (value === null || typeof value !== 'object' || Array.isArray(value)) yield { line, error: 'is not a JSON object' };
      else yield { line, value: value as Record<string, unknown> };
    } catch {
      yield { line, error: 'is not valid JSON' };
    }
  }
}
