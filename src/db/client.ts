import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema/index.ts';

const TIMESTAMPTZ = 1184;

export type Db = PostgresJsDatabase<typeof schema>;
/** A drizzle database or an open transaction on it: services take either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export interface Database {
  sql: postgres.Sql;
  db: Db;
  close(): Promise<void>;
}

export function createDatabase(url: string, options: { max?: number; applicationName?: string } = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? 20,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'herald' },
    // Fail fast when the database is down, so the API can answer 503 instead of hanging.
    connect_timeout: 5,
    idle_timeout: 60,
  });
  // drizzle makes the shared client pass timestamps through as text; raw queries (the set-based
  // hot paths) want Dates, and drizzle's own columns map Dates and strings alike, so the
  // timestamptz codec is put back. (JSON stays as drizzle sets it: raw queries send JSON text.)
  const { parsers, serializers } = sql.options;
  const [parseTs, serializeTs] = [parsers[TIMESTAMPTZ], serializers[TIMESTAMPTZ]];
  const db = drizzle(sql, { schema, casing: 'snake_case' });
  parsers[TIMESTAMPTZ] = parseTs!;
  serializers[TIMESTAMPTZ] = serializeTs!;
  return { sql, db, close: () => sql.end({ timeout: 5 }) };
}
