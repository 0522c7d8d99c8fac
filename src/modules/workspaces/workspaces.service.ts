import { randomBytes } from 'node:crypto';
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.ts';
import { apiKeys, workspaces } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { forbidden, invalid, notFound } from '../../http/errors.ts';
import { hashToken } from '../../http/auth.ts';
import { checkTimeZone } from '../../http/schemas.ts';
import { newId } from '../../ids.ts';
import { createSandboxDefaults } from '../channels/channels.service.ts';
import type { ApiKey, CreateApiKeyBody, CreatedApiKey, CreateWorkspaceBody, UpdateWorkspaceBody, Workspace, WorkspaceSettings } from './workspaces.schemas.ts';

export const KEY_REVOKED_CHANNEL = 'herald_api_key_revoked';

type KeyRow = typeof apiKeys.$inferSelect;
const toApiKey = (k: KeyRow): ApiKey => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  scopes: k.scopes as ApiKey['scopes'],
  createdAt: k.createdAt.toISOString(),
  expiresAt: k.expiresAt?.toISOString() ?? null,
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

/** In development a new workspace starts with a sandbox config as every channel's default (createSandboxDefaults). */
export async function createWorkspace(deps: Pick<Deps, 'db' | 'config' | 'clock'>, body: CreateWorkspaceBody): Promise<Workspace> {
  const timeZone = body.timeZone ?? 'UTC';
  checkTimeZone(timeZone);
  return deps.db.transaction(async (tx) => {
    const [row] = await tx.insert(workspaces).values({ id: newId(), name: body.name, timeZone, settings: body.settings ?? {} }).returning();
    if (deps.config.env === 'development') await createSandboxDefaults(tx, row!.id, deps.clock.now());
    return { ...toWorkspace(row!), apiKeys: [] };
  });
}

export async function getWorkspace(deps: Pick<Deps, 'db'>, id: string): Promise<Workspace> {
  const row = await deps.db.query.workspaces.findFirst({ where: eq(workspaces.id, id) });
  if (!row) throw notFound('Workspace');
  const keys = await deps.db.select().from(apiKeys).where(eq(apiKeys.workspaceId, id)).orderBy(asc(apiKeys.id));
  return { ...toWorkspace(row), apiKeys: keys.map(toApiKey) };
}

const toWorkspace = (r: typeof workspaces.$inferSelect) => ({ id: r.id, name: r.name, timeZone: r.timeZone, settings: r.settings as WorkspaceSettings, createdAt: r.createdAt.toISOString() });

/**
 * `byRoot`: the caller is the root token. A workspace key may turn allowPrivateNetworkTargets off
 * or keep it as it is, never on: it is the SSRF guard of the workspace's own webhooks and base
 * URLs, for the operator to lift (local testing), not for whoever can write templates.
 */
export async function updateWorkspace(deps: Pick<Deps, 'db'>, id: string, body: UpdateWorkspaceBody, byRoot: boolean): Promise<Workspace> {
  checkTimeZone(body.timeZone);
  const set: Partial<typeof workspaces.$inferInsert> = {};
  if (body.name) set.name = body.name;
  if (body.timeZone) set.timeZone = body.timeZone;
  if (body.settings) set.settings = body.settings;
  // Checked in the update itself: a root token turning it off at the same moment is not overwritten.
  const keepsPrivate = !byRoot && body.settings?.allowPrivateNetworkTargets === true;
  const where = keepsPrivate ? and(eq(workspaces.id, id), sql`${workspaces.settings}->>'allowPrivateNetworkTargets' = 'true'`) : eq(workspaces.id, id);
  const rows = await deps.db.update(workspaces).set(set).where(where).returning({ id: workspaces.id });
  if (!rows.length) {
    if (!keepsPrivate || !(await deps.db.query.workspaces.findFirst({ where: eq(workspaces.id, id), columns: { id: true } }))) throw notFound('Workspace');
    throw forbidden('Only the root token can allow private network targets (settings.allowPrivateNetworkTargets)');
  }
  return getWorkspace(deps, id);
}

export async function createApiKey(deps: Pick<Deps, 'db' | 'clock'>, workspaceId: string, body: CreateApiKeyBody): Promise<CreatedApiKey> {
  const expiresAt = body.expiresAt ? new Date(body.expiresAt) : null;
  if (expiresAt && expiresAt <= deps.clock.now()) throw invalid('The key would already be expired', [{ pointer: '/expiresAt', detail: 'must be in the future' }]);
  const exists = await deps.db.query.workspaces.findFirst({ where: eq(workspaces.id, workspaceId), columns: { id: true } });
  if (!exists) throw notFound('Workspace');
  const prefix = `hk_${randomBytes(6).toString('base64url')}`;
  const token = `${prefix}_${randomBytes(32).toString('base64url')}`;
  const [row] = await deps.db
    .insert(apiKeys)
    .values({ workspaceId, id: newId(), name: body.name, prefix, tokenHash: hashToken(token), scopes: body.scopes, expiresAt })
    .returning();
  return { ...toApiKey(row!), revokedAt: null, token };
}

export async function revokeApiKey(deps: Pick<Deps, 'db' | 'database' | 'clock'>, workspaceId: string, keyId: string): Promise<void> {
  const rows = await deps.db
    .update(apiKeys)
    .set({ revokedAt: deps.clock.now() })
    .where(and(eq(apiKeys.workspaceId, workspaceId), eq(apiKeys.id, keyId), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  if (rows.length === 0) {
    const [existing] = await deps.db.select({ id: apiKeys.id }).from(apiKeys).where(and(eq(apiKeys.workspaceId, workspaceId), eq(apiKeys.id, keyId)));
    if (!existing) throw notFound('API key');
  }
  await deps.database.sql.notify(KEY_REVOKED_CHANNEL, keyId);
}

export async function findKeyByHash(db: Db, tokenHash: string) {
  const [row] = await db
    .select({ id: apiKeys.id, workspaceId: apiKeys.workspaceId, scopes: apiKeys.scopes, expiresAt: apiKeys.expiresAt })
    .from(apiKeys)
    .where(and(eq(apiKeys.tokenHash, tokenHash), isNull(apiKeys.revokedAt)));
  return row;
}
