import { customType, foreignKey, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { workspaces } from './workspaces.ts';

const bytea = customType<{ data: Buffer }>({ dataType: () => 'bytea' });

export interface ImportRowError {
  line: number;
  pointer?: string;
  message: string;
}

/** A bulk customer import: the upload is kept as chunks until the job has read it. */
export const imports = pgTable(
  'imports',
  {
    workspaceId: uuid().notNull().references(() => workspaces.id, { onDelete: 'cascade' }),
    id: uuid().notNull(),
    format: text().notNull(),
    status: text().notNull(),
    bytes: integer().notNull().default(0),
    processedRows: integer().notNull().default(0),
    createdRows: integer().notNull().default(0),
    updatedRows: integer().notNull().default(0),
    failedRows: integer().notNull().default(0),
    errors: jsonb().$type<ImportRowError[]>().notNull().default([]),
    failure: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp({ withTimezone: true }),
    finishedAt: timestamp({ withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.workspaceId, t.id] })],
);

export const importChunks = pgTable(
  'import_chunks',
  {
    workspaceId: uuid().notNull(),
    importId: uuid().notNull(),
    seq: integer().notNull(),
    data: bytea().notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.importId, t.seq] }),
    foreignKey({ name: 'import_chunks_import_fk', columns: [t.workspaceId, t.importId], foreignColumns: [imports.workspaceId, imports.id] }).onDelete('cascade'),
  ],
);
