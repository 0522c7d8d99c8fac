// Starts a real Herald (real PostgreSQL, real pg-boss, the real HTTP app) on a database of its
// own for one test file, and offers small helpers to call it.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { startRuntime, type Runtime } from '../../src/runtime/runtime.ts';
import { TestClock } from './clock.ts';
import { createTestDatabase } from './db.ts';

export const ROOT_TOKEN = 'hr_test_root_token_0123456789abcdef';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestHerald {
  runtime: Runtime;
  app: FastifyInstance;
  clock: TestClock;
  databaseUrl: string;
}

export async function startHerald(t: Teardown, env: Record<string, string> = {}): Promise<TestHerald> {
  const db = await createTestDatabase();
  const clock = new TestClock(new Date().toISOString());
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: db.url,
    HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-test-')),
    HERALD_ROOT_TOKEN: ROOT_TOKEN,
    HERALD_SECRET: 'test-secret-test-secret-test-secret-0123',
    LOG_LEVEL: 'silent',
    HERALD_DB_POOL: '5',
    ...env,
  });
  const runtime = await startRuntime(config, { clock, logger: true });
  t.teardown(async () => {
    await runtime.close();
    await db.drop();
  });
  return { runtime, app: runtime.app, clock, databaseUrl: db.url };
}

export type Call = (method: InjectOptions['method'], url: string, body?: unknown, headers?: Record<string, string>) => Promise<LightMyRequestResponse>;

/** A caller bound to a token: call('POST', '/v1/customers', {...}). */
export function caller(app: FastifyInstance, token: string | null): Call {
  return (method, url, body, headers = {}) =>
    app.inject({
      method,
      url,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined && typeof body !== 'string' ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
}

/** A new workspace and an API key on it (scopes read and write unless told). */
export async function workspaceWithKey(app: FastifyInstance, scopes: ('read' | 'write')[] = ['read', 'write']) {
  const root = caller(app, ROOT_TOKEN);
  const ws = await root('POST', '/v1/workspaces', { name: `ws-${Math.random().toString(36).slice(2, 8)}` });
  if (ws.statusCode !== 201) throw new Error(`workspace: ${ws.statusCode} ${ws.body}`);
  const workspaceId = ws.json().id as string;
  const key = await root('POST', `/v1/workspaces/${workspaceId}/api-keys`, { name: 'test', scopes });
  if (key.statusCode !== 201) throw new Error(`key: ${key.statusCode} ${key.body}`);
  return { workspaceId, keyId: key.json().id as string, token: key.json().token as string, call: caller(app, key.json().token) };
}

/** Polls until check() returns a value other than undefined (for background jobs). */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 100));
  }
}
