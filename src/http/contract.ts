// The OpenAPI document as the routes produce it, built without a database: nothing here
// connects (postgres.js and pg-boss connect lazily), so `npm run openapi` works anywhere.
import { buildSchema, printSchema } from 'graphql';
import { PgBoss } from 'pg-boss';
import { schema } from '../graphql/plugin.ts';
import { buildApp } from '../app.ts';
import { openapiDocument } from './openapi.ts';
import { loadConfig } from '../config.ts';
import { createDatabase } from '../db/client.ts';
import { systemClock } from '../deps.ts';
import { EventHooks } from '../modules/events/events.hooks.ts';
import { EventWriter } from '../modules/events/events.writer.ts';
import { defaultProviders } from '../providers/index.ts';

export async function generateOpenApi(): Promise<object> {
  const config = { ...loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }), publicUrl: 'http://127.0.0.1:3000' };
  const url = 'postgres://contract@127.0.0.1:1/contract';
  const database = createDatabase(url, { max: 1 });
  const eventHooks = new EventHooks();
  const deps = { database, db: database.db, boss: new PgBoss(url), clock: systemClock, config, eventHooks, eventWriter: new EventWriter(database.sql, systemClock, eventHooks), providers: defaultProviders() };
  const app = await buildApp({ deps, rootToken: 'contract-only-token-0000000000', queueReady: () => false, logger: false });
  await app.ready();
  const doc = openapiDocument(app);
  await app.close();
  await database.sql.end({ timeout: 0 });
  return doc;
}

export const renderOpenApi = (doc: object) => `${JSON.stringify(doc, null, 2)}\n`;

/** The GraphQL schema as SDL (openapi/schema.graphql), printed from the same type definitions mercurius serves. */
export const renderGraphqlSchema = () => `${printSchema(buildSchema(schema))}\n`;
