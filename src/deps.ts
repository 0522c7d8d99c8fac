// What services are given: the database, the queue, the clock and the settings. Tests pass
// their own clock; nothing in a service reaches for a global.
import type { PgBoss } from 'pg-boss';
import type { Config } from './config.ts';
import type { Database, Db } from './db/client.ts';
import type { EventHooks } from './modules/events/events.hooks.ts';
import type { EventWriter } from './modules/events/events.writer.ts';
import type { Provider } from './providers/types.ts';

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface Deps {
  database: Database;
  db: Db;
  boss: PgBoss;
  clock: Clock;
  config: Config;
  eventHooks: EventHooks;
  eventWriter: EventWriter;
  /** Providers by name (sendgrid, twilio, web_push, fcm, webhook, sandbox); tests may swap them. */
  providers: Record<string, Provider>;
}
