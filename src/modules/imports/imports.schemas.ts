import { Type, type Static } from 'typebox';
import { Timestamp, Uuid } from '../../http/schemas.ts';
import { CustomerFields } from '../customers/customers.schemas.ts';

export const IMPORT_FORMATS = { 'text/csv': 'csv', 'application/x-ndjson': 'ndjson' } as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[keyof typeof IMPORT_FORMATS];
export const MAX_IMPORT_BYTES = 1024 * 1024 * 1024;
export const MAX_STORED_ERRORS = 1000;

/** One row of an import: a customer with a required externalId (so a re-run updates, never duplicates). */
export const ImportRow = Type.Object({ ...CustomerFields, externalId: Type.String({ minLength: 1, maxLength: 255 }) }, { additionalProperties: false });
export type ImportRow = Static<typeof ImportRow>;

export const ImportStatus = Type.Enum(['receiving', 'queued', 'running', 'completed', 'failed']);

export const Import = Type.Object(
  {
    id: Uuid,
    format: Type.Enum(['csv', 'ndjson']),
    status: ImportStatus,
    bytes: Type.Integer({ description: 'Size of the upload' }),
    processedRows: Type.Integer({ description: 'Rows read so far, good or bad' }),
    createdRows: Type.Integer(),
    updatedRows: Type.Integer(),
    failedRows: Type.Integer(),
    errors: Type.Array(
      Type.Object({ line: Type.Integer(), pointer: Type.Optional(Type.String()), message: Type.String() }, { additionalProperties: false }),
      { description: `The first ${MAX_STORED_ERRORS} row errors` },
    ),
    failure: Type.Union([Type.String(), Type.Null()], { description: 'Why the import as a whole failed (it is retried)' }),
    createdAt: Timestamp,
    startedAt: Type.Union([Timestamp, Type.Null()]),
    finishedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'Import', additionalProperties: false },
);
export type Import = Static<typeof Import>;
