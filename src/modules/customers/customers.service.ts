import { and, asc, desc, eq, getTableColumns, gt, gte, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';
import { consentChanges, customerConsents, customers, pushSubscriptions } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { conflict, notFound } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { checkTimeZone } from '../../http/schemas.ts';
import { newId } from '../../ids.ts';
import type {
  Channel, Consent, CreateCustomerBody, CreatePushSubscriptionBody, Customer, CustomerDetail, ListCustomersQuery, PatchCustomerBody, PushSubscription, PutConsentBody,
} from './customers.schemas.ts';

type CustomerRow = typeof customers.$inferSelect;
type D = Pick<Deps, 'db' | 'clock'>;

export const toCustomer = (r: CustomerRow): Customer => ({
  id: r.id,
  externalId: r.externalId,
  email: r.email,
  phone: r.phone,
  timeZone: r.timeZone,
  locale: r.locale,
  custom: r.custom,
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
});

/** A customer row as raw SQL (postgres.js) returns it. */
export interface CustomerSqlRow {
  id: string;
  external_id: string | null;
  email: string | null;
  phone: string | null;
  time_zone: string | null;
  locale: string | null;
  custom: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

export const fromSqlRow = (r: CustomerSqlRow): Customer => ({
  id: r.id, externalId: r.external_id, email: r.email, phone: r.phone, timeZone: r.time_zone, locale: r.locale, custom: r.custom,
  createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString(),
});

/** drizzle wraps driver errors: the PostgreSQL code is on the error or its cause. */
export const pgCode = (e: unknown): string | undefined => (e as { code?: string }).code ?? (e as { cause?: { code?: string } }).cause?.code;
const isUniqueViolation = (e: unknown) => pgCode(e) === '23505';

/** POST /v1/customers: create, or update the customer with the same externalId (custom fields merged). */
export async function upsertCustomer(deps: D, workspaceId: string, body: CreateCustomerBody): Promise<{ customer: Customer; created: boolean }> {
  checkTimeZone(body.timeZone);
  const now = deps.clock.now();
  const values = { ...body, email: body.email?.toLowerCase(), workspaceId, id: newId(), custom: body.custom ?? {}, createdAt: now, updatedAt: now };
  if (body.externalId === undefined) {
    const [row] = await deps.db.insert(customers).values(values).returning();
    return { customer: toCustomer(row!), created: true };
  }
  const set: Record<string, unknown> = { updatedAt: now };
  for (const f of ['email', 'phone', 'timeZone', 'locale'] as const) if (body[f] !== undefined) set[f] = values[f];
  if (body.custom) set.custom = sql`${customers.custom} || excluded.custom`;
  const [row] = await deps.db
    .insert(customers)
    .values(values)
    .onConflictDoUpdate({ target: [customers.workspaceId, customers.externalId], set: set as Partial<typeof customers.$inferInsert> })
    .returning({ ...getTableColumns(customers), created: sql<boolean>`(xmax = 0)` });
  const { created, ...customer } = row!;
  return { customer: toCustomer(customer), created };
}

export async function getCustomer(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<CustomerDetail> {
  const [row] = await deps.db.select().from(customers).where(and(eq(customers.workspaceId, workspaceId), eq(customers.id, id)));
  if (!row) throw notFound('Customer');
  const [consents, subscriptions] = await Promise.all([listConsents(deps.db, workspaceId, id), listPushSubscriptions(deps.db, workspaceId, id)]);
  return { ...toCustomer(row), consents, pushSubscriptions: subscriptions };
}

export async function listCustomers(deps: Pick<Deps, 'db'>, workspaceId: string, q: ListCustomersQuery) {
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const where: SQL[] = [eq(customers.workspaceId, workspaceId)];
  if (after) where.push(gt(customers.id, after[0] as string));
  if (q.email !== undefined) where.push(eq(customers.email, q.email.toLowerCase()));
  if (q.externalId !== undefined) where.push(eq(customers.externalId, q.externalId));
  if (q.updatedSince !== undefined) where.push(gte(customers.updatedAt, new Date(q.updatedSince)));
  const rows = await deps.db.select().from(customers).where(and(...where)).orderBy(asc(customers.id)).limit(limit + 1);
  const page = pageOf(rows, limit, (r) => [r.id]);
  return { data: page.data.map(toCustomer), nextCursor: page.nextCursor };
}

export async function patchCustomer(deps: D, workspaceId: string, id: string, body: PatchCustomerBody): Promise<Customer> {
  checkTimeZone(body.timeZone);
  const set: Record<string, unknown> = { updatedAt: deps.clock.now() };
  for (const f of ['externalId', 'email', 'phone', 'timeZone', 'locale'] as const) {
    if (body[f] !== undefined) set[f] = f === 'email' && body.email ? body.email.toLowerCase() : body[f];
  }
  if (body.custom) {
    const removed = Object.keys(body.custom).filter((k) => body.custom![k] === null);
    const merged = Object.fromEntries(Object.entries(body.custom).filter(([, v]) => v !== null));
    set.custom = sql`(${customers.custom} || ${JSON.stringify(merged)}::jsonb) - array(select jsonb_array_elements_text(${JSON.stringify(removed)}::jsonb))`;
  }
  try {
    const [row] = await deps.db.update(customers).set(set).where(and(eq(customers.workspaceId, workspaceId), eq(customers.id, id))).returning();
    if (!row) throw notFound('Customer');
    return toCustomer(row);
  } catch (e) {
    if (isUniqueViolation(e)) throw conflict('Another customer already has this externalId');
    throw e;
  }
}

/** Really gone: events, consents and subscriptions follow by ON DELETE CASCADE. */
export async function deleteCustomer(deps: Pick<Deps, 'db'>, workspaceId: string, id: string): Promise<void> {
  const rows = await deps.db.delete(customers).where(and(eq(customers.workspaceId, workspaceId), eq(customers.id, id))).returning({ id: customers.id });
  if (rows.length === 0) throw notFound('Customer');
}

async function requireCustomer(db: DbOrTx, workspaceId: string, id: string, lock = false): Promise<void> {
  const q = db.select({ id: customers.id }).from(customers).where(and(eq(customers.workspaceId, workspaceId), eq(customers.id, id)));
  const [row] = lock ? await q.for('update') : await q;
  if (!row) throw notFound('Customer');
}

export async function setConsent(deps: D, workspaceId: string, customerId: string, channel: Channel, body: PutConsentBody): Promise<Consent> {
  const source = body.source ?? 'api';
  const now = deps.clock.now();
  await deps.db.transaction(async (tx) => {
    // The row lock orders concurrent changes of one customer, so the history chains correctly.
    await requireCustomer(tx, workspaceId, customerId, true);
    const [current] = await tx
      .select({ status: customerConsents.status })
      .from(customerConsents)
      .where(and(eq(customerConsents.workspaceId, workspaceId), eq(customerConsents.customerId, customerId), eq(customerConsents.channel, channel)));
    if (current?.status === body.status) return;
    await tx
      .insert(customerConsents)
      .values({ workspaceId, customerId, channel, status: body.status, source, updatedAt: now })
      .onConflictDoUpdate({ target: [customerConsents.workspaceId, customerConsents.customerId, customerConsents.channel], set: { status: body.status, source, updatedAt: now } });
    await tx.insert(consentChanges).values({ workspaceId, id: newId(), customerId, channel, fromStatus: current?.status ?? null, toStatus: body.status, source, changedAt: now });
  });
  const consents = await listConsents(deps.db, workspaceId, customerId);
  return consents.find((c) => c.channel === channel)!;
}

export async function listConsents(db: DbOrTx, workspaceId: string, customerId: string): Promise<Consent[]> {
  const [current, history] = await Promise.all([
    db.select().from(customerConsents).where(and(eq(customerConsents.workspaceId, workspaceId), eq(customerConsents.customerId, customerId))).orderBy(asc(customerConsents.channel)),
    db
      .select()
      .from(consentChanges)
      .where(and(eq(consentChanges.workspaceId, workspaceId), eq(consentChanges.customerId, customerId)))
      .orderBy(desc(consentChanges.changedAt), desc(consentChanges.id))
      .limit(200),
  ]);
  return current.map((c) => ({
    channel: c.channel as Channel,
    status: c.status as Consent['status'],
    source: c.source,
    updatedAt: c.updatedAt.toISOString(),
    history: history
      .filter((h) => h.channel === c.channel)
      .slice(0, 20)
      .map((h) => ({ fromStatus: h.fromStatus as Consent['status'] | null, toStatus: h.toStatus as Consent['status'], source: h.source, changedAt: h.changedAt.toISOString() })),
  }));
}

type SubscriptionRow = typeof pushSubscriptions.$inferSelect;
const toSubscription = (r: SubscriptionRow): PushSubscription => ({
  id: r.id,
  customerId: r.customerId,
  kind: r.kind as PushSubscription['kind'],
  endpoint: r.kind === 'web_push' ? r.endpoint : null,
  token: r.kind === 'mobile_push' ? r.endpoint : null,
  platform: r.platform,
  createdAt: r.createdAt.toISOString(),
});

async function listPushSubscriptions(db: DbOrTx, workspaceId: string, customerId: string): Promise<PushSubscription[]> {
  const rows = await db
    .select()
    .from(pushSubscriptions)
    .where(and(eq(pushSubscriptions.workspaceId, workspaceId), eq(pushSubscriptions.customerId, customerId)))
    .orderBy(asc(pushSubscriptions.id));
  return rows.map(toSubscription);
}

/**
 * Registers a browser or device. An endpoint or token is one device: registering it for another
 * customer moves it (the device changed hands), it is never shared.
 */
export async function addPushSubscription(deps: D, workspaceId: string, customerId: string, body: CreatePushSubscriptionBody): Promise<{ subscription: PushSubscription; created: boolean }> {
  await requireCustomer(deps.db, workspaceId, customerId);
  const endpoint = body.kind === 'web_push' ? body.endpoint : body.token;
  const keys = body.kind === 'web_push' ? body.keys : null;
  const platform = body.kind === 'web_push' ? 'web' : body.platform;
  const [row] = await deps.db
    .insert(pushSubscriptions)
    .values({ workspaceId, id: newId(), customerId, kind: body.kind, endpoint, keys, platform, createdAt: deps.clock.now() })
    .onConflictDoUpdate({ target: [pushSubscriptions.workspaceId, pushSubscriptions.kind, pushSubscriptions.endpoint], set: { customerId, keys, platform } })
    .returning({ ...getTableColumns(pushSubscriptions), created: sql<boolean>`(xmax = 0)` });
  const { created, ...sub } = row!;
  return { subscription: toSubscription(sub), created };
}


export async function customerIdByExternalId(deps: Pick<Deps, 'db'>, workspaceId: string, externalId: string): Promise<string> {
  const [row] = await deps.db.select({ id: customers.id }).from(customers).where(and(eq(customers.workspaceId, workspaceId), eq(customers.externalId, externalId)));
  if (!row) throw notFound('Customer');
  return row.id;
}
