// The settings of API.md, read from the environment once, validated, and turned into one typed
// object. This is the only module that reads process.env.
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';

export const Role = { all: 'all', api: 'api', worker: 'worker' } as const;
export type Role = (typeof Role)[keyof typeof Role];

const Env = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')]),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  HERALD_DATA_DIR: Type.String({ minLength: 1 }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535 }),
  HOST: Type.String({ minLength: 1 }),
  HERALD_ROLE: Type.Union([Type.Literal('all'), Type.Literal('api'), Type.Literal('worker')]),
  HERALD_ROOT_TOKEN: Type.Optional(Type.String({ minLength: 24 })),
  HERALD_SECRET: Type.Optional(Type.String({ minLength: 32 })),
  HERALD_PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://[^\\s/]+' })),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
  HERALD_RATE_LIMIT: Type.Integer({ minimum: 1 }),
  HERALD_DB_POOL: Type.Integer({ minimum: 2, maximum: 200 }),
  HERALD_RETRY_BASE_MS: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
  HERALD_GRAPHQL_INTROSPECTION: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
});

export interface Config {
  env: 'development' | 'production' | 'test';
  databaseUrl: string | undefined;
  dataDir: string;
  port: number;
  host: string;
  role: Role;
  rootToken: string | undefined;
  secret: string | undefined;
  publicUrl: string;
  logLevel: string;
  /** Requests per minute per API key. */
  rateLimit: number;
  dbPoolSize: number;
  /** A provider call that may be tried again waits this long before its first retry, 4 times longer before each next one (at most an hour). */
  retryBaseMs: number;
  /** GraphQL introspection (and GraphiQL): on outside production, off in production unless HERALD_GRAPHQL_INTROSPECTION=true. */
  graphqlIntrospection: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULTS: Record<string, string> = {
  NODE_ENV: 'development',
  HERALD_DATA_DIR: './.herald',
  PORT: '3000',
  HOST: '127.0.0.1',
  HERALD_ROLE: 'all',
  LOG_LEVEL: 'info',
  HERALD_RATE_LIMIT: '6000',
  HERALD_DB_POOL: '20',
  HERALD_RETRY_BASE_MS: '15000',
};

const INTEGERS = new Set(['PORT', 'HERALD_RATE_LIMIT', 'HERALD_DB_POOL', 'HERALD_RETRY_BASE_MS']);

/** Reads and validates the settings; throws a ConfigError whose message is one line naming the bad setting. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(Env.properties)) {
    const value = env[key] === '' ? undefined : (env[key] ?? DEFAULTS[key]);
    if (value === undefined) continue;
    raw[key] = INTEGERS.has(key) && /^\d+$/.test(value) ? Number(value) : value;
  }
  const firstError = Value.Errors(Env, raw)[0];
  if (firstError) {
    const name = firstError.instancePath.slice(1) || String((firstError.params as { requiredProperties?: string[] }).requiredProperties?.[0] ?? 'environment');
    const choices = (Env.properties[name as keyof typeof Env.properties] as { anyOf?: { const: string }[] } | undefined)?.anyOf;
    const why = choices ? `expected one of ${choices.map((c) => c.const).join(', ')}` : firstError.message;
    throw new ConfigError(`invalid setting ${name}=${JSON.stringify(raw[name] ?? '')}: ${why}`);
  }
  const e = raw as Static<typeof Env>;
  if (e.NODE_ENV === 'production' && !e.HERALD_SECRET) {
    throw new ConfigError('missing setting HERALD_SECRET: it is required when NODE_ENV=production (32 characters or more)');
  }
  const shownHost = e.HOST === '0.0.0.0' || e.HOST === '::' ? '127.0.0.1' : e.HOST;
  return {
    env: e.NODE_ENV,
    databaseUrl: e.DATABASE_URL,
    dataDir: e.HERALD_DATA_DIR,
    port: e.PORT,
    host: e.HOST,
    role: e.HERALD_ROLE,
    rootToken: e.HERALD_ROOT_TOKEN,
    secret: e.HERALD_SECRET,
    publicUrl: (e.HERALD_PUBLIC_URL ?? `http://${shownHost}:${e.PORT}`).replace(/\/+$/, ''),
    logLevel: e.LOG_LEVEL,
    rateLimit: e.HERALD_RATE_LIMIT,
    dbPoolSize: e.HERALD_DB_POOL,
    retryBaseMs: e.HERALD_RETRY_BASE_MS,
    graphqlIntrospection: e.HERALD_GRAPHQL_INTROSPECTION ? e.HERALD_GRAPHQL_INTROSPECTION === 'true' : e.NODE_ENV !== 'production',
  };
}
