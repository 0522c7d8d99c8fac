// Each test file gets a database of its own, copied from a template that already holds the
// migrations and pg-boss's schema, so files run in parallel without seeing each other.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { PgBoss } from 'pg-boss';
import { MIGRATIONS_FOLDER, runMigrations } from '../../src/db/migrate.ts';
import { BOSS_SCHEMA } from '../../src/jobs/queue.ts';

export function adminUrl(): string {
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`, which starts an embedded PostgreSQL when it is unset');
  return url;
}

export function databaseUrl(name: string): string {
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

function templateName(): string {
  const hash = createHash('sha256');
  for (const f of readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith('.sql')).sort()) hash.update(f).update(readFileSync(join(MIGRATIONS_FOLDER, f)));
  hash.update(JSON.parse(readFileSync(new URL('../../node_modules/pg-boss/package.json', import.meta.url), 'utf8')).version);
  return `herald_tpl_${hash.digest('hex').slice(0, 16)}`;
}

async function ensureTemplate(admin: postgres.Sql, name: string): Promise<void> {
  await admin`select pg_advisory_lock(7265502)`;
  try {
    const [exists] = await admin`select 1 from pg_database where datname = ${name}`;
    if (exists) return;
    const building = `${name}_building`;
    await admin.unsafe(`drop database if exists "${building}" with (force)`);
    await admin.unsafe(`create database "${building}"`);
    await runMigrations(databaseUrl(building));
    const boss = new PgBoss({ connectionString: databaseUrl(building), schema: BOSS_SCHEMA, supervise: false, schedule: false, max: 2 });
    await boss.start();
    await boss.stop({ graceful: false, close: true });
    await admin.unsafe(`alter database "${building}" rename to "${name}"`);
  } finally {
    await admin`select pg_advisory_unlock(7265502)`;
  }
}

export async function createTestDatabase(): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  const template = templateName();
  await ensureTemplate(admin, template);
  const name = `herald_t_${process.pid}_${randomBytes(4).toString('hex')}`;
  // CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template; retry briefly.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database "${name}" template "${template}"`);
      break;
    } catch (error) {
      if (attempt > 20 || !/being accessed by other users/.test((error as Error).message)) throw error;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  return {
    name,
    url: databaseUrl(name),
    drop: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}
