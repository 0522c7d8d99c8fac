// Channel configs ("Email Configs", "Push Configs", "SMS Configs" in the seeds): a provider
// account per channel. Secrets are sealed with HERALD_SECRET and bound to their row; the API
// only ever says which secrets are set.
import { randomBytes } from 'node:crypto';
import type { Sql, TransactionSql } from 'postgres';
import { and, asc, eq, gt, isNull, ne, sql, type SQL } from 'drizzle-orm';
import webpush from 'web-push';
import { channelConfigs } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { invalid, notFound } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { fieldErrors } from '../../http/problem.ts';
import { compileStrict } from '../../http/validation.ts';
import { newId } from '../../ids.ts';
import { open, seal } from '../../security/secrets.ts';
import {
  PROVIDER_CHANNEL, ProviderSchemas,
  type Channel, type ChannelConfig, type CreateChannelConfigBody, type ListChannelConfigsQuery, type Provider, type UpdateChannelConfigBody,
} from './channels.schemas.ts';

type D = Pick<Deps, 'db' | 'clock' | 'config'>;
type Row = typeof channelConfigs.$inferSelect;

const validators = Object.fromEntries(
  Object.entries(ProviderSchemas).map(([p, s]) => [p, { settings: compileStrict(s.settings), secrets: compileStrict(s.secrets) }]),
) as Record<Provider, { settings: ReturnType<typeof compileStrict>; secrets: ReturnType<typeof compileStrict> }>;

const REQUIRED_SECRETS: Record<Provider, string[]> = { sendgrid: ['apiKey'], twilio: ['authToken'], web_push: ['vapidPrivateKey'], fcm: ['accessToken'], webhook: ['signingSecret'], sandbox: [] };

function secretKey(deps: Pick<Deps, 'config'>): string {
  const key = deps.config.secret;
  if (!key) throw new Error('HERALD_SECRET is not loaded');
  return key;
}
const aad = (workspaceId: string, id: string) => `channel-config/${workspaceId}/${id}`;

const toConfig = (r: Row, generatedSecrets?: Record<string, string>): ChannelConfig => ({
  id: r.id,
  name: r.name,
  provider: r.provider as Provider,
  channel: r.channel as Channel,
  settings: r.settings,
  secretsSet: [...r.secretNames].sort(),
  isDefault: r.isDefault,
  ...(generatedSecrets && Object.keys(generatedSecrets).length ? { generatedSecrets } : {}),
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
});

function check(provider: Provider, part: 'settings' | 'secrets', value: unknown): void {
  const validate = validators[provider][part];
  if (!validate(value)) throw invalid(`The ${part} do not fit a ${provider} config`, fieldErrors(validate.errors as never, 'body').map((e) => ({ ...e, pointer: `/${part}${e.pointer}` })));
}

/** Fills in what Herald generates (VAPID keys, a webhook signing secret) and checks the pair rules. */
function complete(provider: Provider, settings: Record<string, unknown>, secrets: Record<string, string>): { settings: Record<string, unknown>; secrets: Record<string, string>; generated: Record<string, string> } {
  const generated: Record<string, string> = {};
  if (provider === 'web_push') {
    const hasPublic = typeof settings.vapidPublicKey === 'string';
    const hasPrivate = typeof secrets.vapidPrivateKey === 'string';
    if (hasPublic !== hasPrivate) throw invalid('Give both VAPID keys or neither', [{ pointer: hasPublic ? '/secrets/vapidPrivateKey' : '/settings/vapidPublicKey', detail: 'is required with the other VAPID key' }]);
    if (!hasPublic) {
      const keys = webpush.generateVAPIDKeys();
      settings = { ...settings, vapidPublicKey: keys.publicKey };
      secrets = { ...secrets, vapidPrivateKey: keys.privateKey };
    }
  }
  if (provider === 'webhook' && !secrets.signingSecret) {
    const signingSecret = `whsec_${randomBytes(32).toString('base64')}`;
    secrets = { ...secrets, signingSecret };
    generated.signingSecret = signingSecret;
  }
  const missing = REQUIRED_SECRETS[provider].filter((s) => !secrets[s]);
  if (missing.length) throw invalid('Secrets are missing', missing.map((s) => ({ pointer: `/secrets/${s}`, detail: 'is required' })));
  return { settings, secrets, generated };
}

/**
 * Serialises the changes of one channel's default in a workspace: two creates that each find no
 * default must not both take it. Taken before any row lock (creates and updates alike).
 */
async function lockDefault(tx: Tx, workspaceId: string, channel: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${channelDefaultLock(workspaceId, channel)}, 0))`);
}

/** The advisory lock's key for a channel's default (a flow's launch takes it to read the defaults). */
export const channelDefaultLock = (workspaceId: string, channel: string) => `channel-default:${workspaceId}:${channel}`;

/** Takes the default from the channel's other configs (under lockDefault). */
async function takeDefault(tx: Tx, workspaceId: string, channel: string, id: string): Promise<void> {
  await tx.update(channelConfigs).set({ isDefault: false })
    .where(and(eq(channelConfigs.workspaceId, workspaceId), eq(channelConfigs.channel, channel), eq(channelConfigs.isDefault, true), ne(channelConfigs.id, id)));
}

export async function createChannelConfig(deps: D, workspaceId: string, body: CreateChannelConfigBody): Promise<ChannelConfig> {
  const provider = body.provider;
  const channel = provider === 'sandbox' ? body.channel! : PROVIDER_CHANNEL[provider];
  const done = complete(provider, body.settings ?? {}, body.secrets ?? {});
  const id = newId();
  const now = deps.clock.now();
  const names = Object.keys(done.secrets);
  const sealedSecrets = names.length ? seal(secretKey(deps), aad(workspaceId, id), done.secrets) : null;
  return deps.db.transaction(async (tx) => {
    await lockDefault(tx, workspaceId, channel);
    if (body.isDefault) await takeDefault(tx, workspaceId, channel, id);
    // Omitted: the channel's first config (or the first after its default was deleted) becomes its default.
    const isDefault = body.isDefault ?? !(await defaultConfigOf(tx, workspaceId, channel));
    const [row] = await tx
      .insert(channelConfigs)
      .values({ workspaceId, id, name: body.name, provider, channel, settings: done.settings, sealedSecrets, secretNames: names, isDefault, createdAt: now, updatedAt: now })
      .returning();
    return toConfig(row!, done.generated);
  });
}

export type Tx = Parameters<Parameters<D['db']['transaction']>[0]>[0];

/** The channel's live default inside a channel-config transaction (drizzle); elsewhere defaultConfigIds. */
async function defaultConfigOf(db: D['db'] | Tx, workspaceId: string, channel: string): Promise<string | null> {
  const [row] = await db.select({ id: channelConfigs.id }).from(channelConfigs)
    .where(and(eq(channelConfigs.workspaceId, workspaceId), eq(channelConfigs.channel, channel), eq(channelConfigs.isDefault, true), isNull(channelConfigs.deletedAt)));
  return row?.id ?? null;
}

/** The live default config of each of the channels (those without one are absent). */
export async function defaultConfigIds(sql: Sql | TransactionSql, workspaceId: string, channels: string[]): Promise<Map<string, string>> {
  if (!channels.length) return new Map();
  const rows = await sql<{ id: string; channel: string }[]>`
    select id, channel from channel_configs where workspace_id = ${workspaceId} and channel = any(${channels}::text[]) and is_default and deleted_at is null`;
  return new Map(rows.map((r) => [r.channel, r.id]));
}

/**
 * The config to use where none is named: the given one, else the channel's default. Throws a 400
 * naming `pointer` when there is none (the caller checks the given one as it always did).
 */
export async function channelConfigOrDefault(deps: Pick<Deps, 'database'>, workspaceId: string, channel: Channel, given: string | undefined, pointer: string): Promise<string> {
  if (given) return given;
  const id = (await defaultConfigIds(deps.database.sql, workspaceId, [channel])).get(channel);
  if (!id) throw invalid('No channel config given, and the channel has no default', [{ pointer, detail: `is required: the workspace has no default ${channel} config (POST /v1/channel-configs with isDefault)` }]);
  return id;
}

async function liveConfig(db: D['db'], workspaceId: string, id: string, lock = false): Promise<Row> {
  const q = db.select().from(channelConfigs).where(and(eq(channelConfigs.workspaceId, workspaceId), eq(channelConfigs.id, id), isNull(channelConfigs.deletedAt)));
  const [row] = lock ? await q.for('update') : await q;
  if (!row) throw notFound('Channel config');
  return row;
}

export async function getChannelConfig(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<ChannelConfig> {
  return toConfig(await liveConfig(deps.db, workspaceId, id));
}

export async function listChannelConfigs(deps: Pick<Deps, 'db'>, workspaceId: string, q: ListChannelConfigsQuery) {
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const where: SQL[] = [eq(channelConfigs.workspaceId, workspaceId), isNull(channelConfigs.deletedAt)];
  if (after) where.push(gt(channelConfigs.id, after[0] as string));
  if (q.channel) where.push(eq(channelConfigs.channel, q.channel));
  const rows = await deps.db.select().from(channelConfigs).where(and(...where)).orderBy(asc(channelConfigs.id)).limit(limit + 1);
  const page = pageOf(rows, limit, (r) => [r.id]);
  return { data: page.data.map((r) => toConfig(r)), nextCursor: page.nextCursor };
}

const SANDBOX_CHANNELS: Channel[] = ['email', 'sms', 'web_push', 'mobile_push', 'webhook'];

/**
 * A sandbox config for every channel, each the channel's default: what a workspace created in
 * development starts with, so that actions, flows and test sends work (recorded, not sent)
 * before any provider account is set up. A real config becomes the default when created with
 * isDefault: true, or when made so with PUT.
 */
export async function createSandboxDefaults(tx: Tx, workspaceId: string, now: Date): Promise<void> {
  await tx.insert(channelConfigs).values(SANDBOX_CHANNELS.map((channel) => ({
    workspaceId, id: newId(), name: `Sandbox (${channel})`, provider: 'sandbox', channel, isDefault: true, secretNames: [], createdAt: now, updatedAt: now,
    settings: channel === 'email' ? { fromEmail: 'sandbox@example.com', fromName: 'Herald sandbox' } : {},
  })));
}

export async function updateChannelConfig(deps: D, workspaceId: string, id: string, body: UpdateChannelConfigBody): Promise<ChannelConfig> {
  return deps.db.transaction(async (tx) => {
    // The default's lock before the row's, in the order a create takes them (a config's channel never changes).
    if (body.isDefault !== undefined) await lockDefault(tx, workspaceId, (await liveConfig(tx, workspaceId, id)).channel);
    const row = await liveConfig(tx, workspaceId, id, true);
    const provider = row.provider as Provider;
    if (body.settings) check(provider, 'settings', body.settings);
    if (body.secrets) check(provider, 'secrets', body.secrets);
    const current = row.sealedSecrets ? open(secretKey(deps), aad(workspaceId, id), row.sealedSecrets) : {};
    const done = complete(provider, body.settings ?? row.settings, { ...current, ...body.secrets });
    const names = Object.keys(done.secrets);
    if (body.isDefault) await takeDefault(tx, workspaceId, row.channel, id);
    const [updated] = await tx
      .update(channelConfigs)
      .set({
        name: body.name ?? row.name, settings: done.settings, updatedAt: deps.clock.now(), isDefault: body.isDefault ?? row.isDefault,
        sealedSecrets: names.length ? seal(secretKey(deps), aad(workspaceId, id), done.secrets) : null, secretNames: names,
      })
      .where(and(eq(channelConfigs.workspaceId, workspaceId), eq(channelConfigs.id, id)))
      .returning();
    return toConfig(updated!, done.generated);
  });
}

export async function deleteChannelConfig(deps: D, workspaceId: string, id: string): Promise<void> {
  const rows = await deps.db
    .update(channelConfigs)
    .set({ deletedAt: deps.clock.now() })
    .where(and(eq(channelConfigs.workspaceId, workspaceId), eq(channelConfigs.id, id), isNull(channelConfigs.deletedAt)))
    .returning({ id: channelConfigs.id });
  if (!rows.length) throw notFound('Channel config');
}

/** For the send pipeline: the config with its secrets opened. Never expose the result over the API. */
export async function loadChannelConfig(deps: Pick<Deps, 'db' | 'config'>, workspaceId: string, id: string) {
  const row = await liveConfig(deps.db, workspaceId, id);
  const secrets = row.sealedSecrets ? open(secretKey(deps), aad(workspaceId, id), row.sealedSecrets) : {};
  return { id: row.id, provider: row.provider as Provider, channel: row.channel as Channel, settings: row.settings, secrets };
}
