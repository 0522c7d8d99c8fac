// Everything a Herald process runs, wired together: database (embedded or given), migrations,
// the job queue, the HTTP app and the workers. server.ts and the tests both start it here.
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../app.ts';
import type { Config } from '../config.ts';
import { createDatabase, type Database } from '../db/client.ts';
import { runMigrations } from '../db/migrate.ts';
import { systemClock, type Clock, type Deps } from '../deps.ts';
import { jobs } from '../jobs/index.ts';
import { triggeredActionsHook } from '../modules/actions/actions.runs.ts';
import { flowEventsHook, flowIndex, FLOWS_CHANGED_CHANNEL } from '../engine/entries.ts';
import { createBoss, registerJobs } from '../jobs/queue.ts';
import { EventHooks } from '../modules/events/events.hooks.ts';
import { EventWriter } from '../modules/events/events.writer.ts';
import { defaultProviders } from '../providers/index.ts';
import { closeAgents } from '../providers/http.ts';
import { KEY_REVOKED_CHANNEL } from '../modules/workspaces/workspaces.service.ts';
import { loadSecrets } from './data-dir-secrets.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded-postgres.ts';

export interface Runtime {
  app: FastifyInstance;
  deps: Deps;
  rootToken: string;
  rootTokenIsNew: boolean;
  databaseUrl: string;
  embedded: boolean;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  clock?: Clock;
  logger?: boolean;
  /** Log lines of the boot itself (before the app's logger exists). */
  log?: { info(m: string): void; warn(m: string): void; debug(m: string): void };
}

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };

export async function startRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  const log = options.log ?? quiet;
  const secrets = await loadSecrets(config.dataDir, { rootToken: config.rootToken, secret: config.secret });
  let embedded: EmbeddedDatabase | undefined;
  const url = config.databaseUrl ?? (embedded = await startEmbeddedPostgres(config.dataDir, log)).url;
  let database: Database | undefined;
  try {
    await runMigrations(url);
    database = createDatabase(url, { max: config.dbPoolSize, applicationName: `herald-${config.role}` });
    let queueReady = false;
    const boss = createBoss(url, config.role, { warn: (o, m) => log.warn(`${m} ${JSON.stringify(o)}`), error: (o, m) => log.warn(`${m} ${String((o as { err?: Error }).err?.message ?? '')}`) });
    const clock = options.clock ?? systemClock;
    const eventHooks = new EventHooks();
    const eventWriter = new EventWriter(database.sql, clock, eventHooks);
    const deps: Deps = { database, db: database.db, boss, clock, config: { ...config, secret: secrets.secret }, eventHooks, eventWriter, providers: defaultProviders() };
    eventHooks.add(triggeredActionsHook(deps));
    eventHooks.add(flowEventsHook(deps));
    await boss.start();
    queueReady = true;
    await registerJobs(boss, deps, config.role, jobs);
    const app = await buildApp({ deps, rootToken: secrets.rootToken, queueReady: () => queueReady, logger: options.logger ?? true });
    // Each time the LISTEN is made again (after its connection dropped), the cache is dropped as a
    // whole: a revocation broadcast meanwhile was not heard, and the 30 s cache would keep it valid.
    const revocations = await database.sql.listen(KEY_REVOKED_CHANNEL, (keyId) => app.forgetApiKey(keyId), () => app.forgetApiKeys());
    // Likewise a flow's launch, pause, resume or delete in any process: this process's flow index drops that workspace.
    const flowChanges = await database.sql.listen(FLOWS_CHANGED_CHANNEL, (workspaceId) => flowIndex.forget(workspaceId), () => flowIndex.forgetAll());
    const db = database;
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        await app.close();
        await revocations.unlisten().catch(() => {});
        await flowChanges.unlisten().catch(() => {});
        queueReady = false;
        await boss.stop({ graceful: true, timeout: 20_000, close: true }).catch(() => {});
        for (const provider of Object.values(deps.providers)) (provider as { close?: () => void }).close?.();
        await closeAgents();
        await db.close();
        await embedded?.stop();
      })());
    return { app, deps, rootToken: secrets.rootToken, rootTokenIsNew: secrets.rootTokenIsNew, databaseUrl: url, embedded: !!embedded, close };
  } catch (error) {
    await database?.close();
    await embedded?.stop();
    throw error;
  }
}
