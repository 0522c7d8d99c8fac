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

/**
 * Seconds before a connection is tried again after failing. The driver's default grows to 20 s
 * after a few refused connects (3^n / 100), shared by the whole pool: queries waited that long
 * while the database was down (requests hung instead of answering 503), and the API took as long
 * to come back after it returned. Capped at 1 s, with jitter.
 */
export const reconnectDelay = (retries: number) => Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2);

export function createDatabase(url: string, options: { max?: number; applicationName?: string } = {}): Database {
  const sql = postgres(url, {
    max: options.max ?? 20,
    onnotice: () => {},
    connection: { application_name: options.applicationName ?? 'herald' },
    // Fail fast when the database is down, so the API can answer 503 instead of hanging.
    connect_timeout: 5,
    idle_timeout: 60,
    backoff: reconnectDelay,
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
