// Event ingestion: one transaction per post, a few set-based statements whatever the batch size.
import type { Sql, TransactionSql } from 'postgres';
import type { Deps } from '../../deps.ts';
import { unprocessable, type FieldError } from '../../http/errors.ts';
import { newId } from '../../ids.ts';
import type { Event, EventInput, IngestResult } from './events.schemas.ts';
import type { IngestedEvent } from './events.hooks.ts';

type D = Pick<Deps, 'database' | 'clock' | 'eventHooks'>;

interface Prepared {
  id: string;
  customer_id: string;
  type: string;
  properties: Record<string, unknown>;
  occurred_at: string;
  client_id: string | null;
}

/**
 * Stores the events, creating customers named by an unknown externalId. All or nothing: a bad
 * reference anywhere rejects the whole post with a pointer to each bad event.
 * `pointer` is where the events sit in the request body ('' for one event, '/events' for a batch).
 */
export async function ingestEvents(deps: D, workspaceId: string, inputs: EventInput[], pointer: string): Promise<IngestResult> {
  const at = (i: number, field: string) => (pointer === '' ? `/${field}` : `${pointer}/${i}/${field}`);
  const errors: FieldError[] = [];
  inputs.forEach((e, i) => {
    if ((e.customerId === undefined) === (e.externalId === undefined)) {
      errors.push({ pointer: pointer === '' ? '/customerId' : `${pointer}/${i}`, detail: 'name the customer by exactly one of customerId or externalId' });
    }
  });
  if (errors.length) throw unprocessable('Some events do not name their customer', errors);

  const now = deps.clock.now();
  return deps.database.sql.begin(async (tx) => {
    const byExternal = await resolveExternalIds(tx, workspaceId, inputs, now);
    const known = await knownCustomers(tx, workspaceId, inputs);
    inputs.forEach((e, i) => {
      if (e.customerId !== undefined && !known.has(e.customerId)) errors.push({ pointer: at(i, 'customerId'), detail: 'no customer with this id in the workspace' });
    });
    if (errors.length) throw unprocessable('Some events name customers that do not exist', errors);

    const firstOfClientId = new Map<string, number>();
    const rows: Prepared[] = inputs.map((e, i) => {
      if (e.id !== undefined && !firstOfClientId.has(e.id)) firstOfClientId.set(e.id, i);
      return {
        id: newId(),
        customer_id: e.customerId ?? byExternal.get(e.externalId!)!,
        type: e.type,
        properties: e.properties ?? {},
        occurred_at: e.occurredAt ?? now.toISOString(),
        client_id: e.id ?? null,
      };
    });
    // A client id posted twice in one batch is stored once, like one posted in two requests.
    const toInsert = rows.filter((r, i) => r.client_id === null || firstOfClientId.get(r.client_id) === i);
    const inserted = await insertEvents(tx, workspaceId, toInsert, now);
    const duplicateIds = await existingIdsOf(tx, workspaceId, rows.filter((r) => !inserted.has(r.id) && r.client_id !== null).map((r) => r.client_id!));

    const created: IngestedEvent[] = [];
    const result: IngestResult = { accepted: 0, duplicates: 0, events: [] };
    for (const r of rows) {
      if (inserted.has(r.id)) {
        result.accepted++;
        result.events.push({ id: r.id, clientId: r.client_id, customerId: r.customer_id, status: 'created' });
        created.push({ id: r.id, customerId: r.customer_id, type: r.type, properties: r.properties, occurredAt: new Date(r.occurred_at) });
      } else {
        const existing = duplicateIds.get(r.client_id!);
        result.duplicates++;
        result.events.push({ id: existing?.id ?? r.id, clientId: r.client_id, customerId: existing?.customerId ?? r.customer_id, status: 'duplicate' });
      }
    }
    await deps.eventHooks.run(tx, workspaceId, created);
    return result;
  });
}

async function resolveExternalIds(tx: TransactionSql, workspaceId: string, inputs: EventInput[], now: Date): Promise<Map<string, string>> {
  const externalIds = [...new Set(inputs.flatMap((e) => (e.externalId === undefined ? [] : [e.externalId])))];
  const map = new Map<string, string>();
  if (externalIds.length === 0) return map;
  const fresh = externalIds.map(() => newId());
  // Concurrent posts naming the same new externalId wait on the unique index and then see one row.
  await tx`
    insert into customers (workspace_id, id, external_id, created_at, updated_at)
    select ${workspaceId}::uuid, t.id, t.external_id, ${now}::timestamptz, ${now}::timestamptz
    from unnest(${fresh}::uuid[], ${externalIds}::text[]) as t(id, external_id)
    on conflict (workspace_id, external_id) do nothing`;
  const rows = await tx<{ id: string; external_id: string }[]>`
    select id, external_id from customers where workspace_id = ${workspaceId} and external_id = any(${externalIds}::text[])`;
  for (const r of rows) map.set(r.external_id, r.id);
  return map;
}

async function knownCustomers(tx: TransactionSql, workspaceId: string, inputs: EventInput[]): Promise<Set<string>> {
  const ids = [...new Set(inputs.flatMap((e) => (e.customerId === undefined ? [] : [e.customerId])))];
  if (ids.length === 0) return new Set();
  // FOR KEY SHARE: a customer deleted at this moment cannot vanish under the events.
  const rows = await tx<{ id: string }[]>`select id from customers where workspace_id = ${workspaceId} and id = any(${ids}::uuid[]) for key share`;
  return new Set(rows.map((r) => r.id));
}

async function insertEvents(tx: TransactionSql, workspaceId: string, rows: Prepared[], now: Date): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const inserted = await tx<{ id: string }[]>`
    insert into events (workspace_id, id, customer_id, type, properties, occurred_at, received_at, client_id)
    select ${workspaceId}::uuid, r.id, r.customer_id, r.type, r.properties, r.occurred_at, ${now}::timestamptz, r.client_id
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as r(id uuid, customer_id uuid, type text, properties jsonb, occurred_at timestamptz, client_id text)
    on conflict (workspace_id, client_id) where client_id is not null do nothing
    returning id`;
  return new Set(inserted.map((r) => r.id));
}

async function existingIdsOf(tx: TransactionSql, workspaceId: string, clientIds: string[]) {
  const map = new Map<string, { id: string; customerId: string }>();
  if (clientIds.length === 0) return map;
  const rows = await tx<{ id: string; client_id: string; customer_id: string }[]>`
    select id, client_id, customer_id from events where workspace_id = ${workspaceId} and client_id = any(${clientIds}::text[])`;
  for (const r of rows) map.set(r.client_id, { id: r.id, customerId: r.customer_id });
  return map;
}

/** The newest events of a customer (served by events_customer_time_idx). */
export async function recentEvents(sql: Sql, workspaceId: string, customerId: string, limit: number): Promise<Event[]> {
  const rows = await sql<{ id: string; client_id: string | null; customer_id: string; type: string; properties: Record<string, unknown>; occurred_at: Date; received_at: Date }[]>`
    select id, client_id, customer_id, type, properties, occurred_at, received_at from events
    where workspace_id = ${workspaceId} and customer_id = ${customerId}
    order by occurred_at desc limit ${limit}`;
  return rows.map((r) => ({
    id: r.id,
    clientId: r.client_id,
    customerId: r.customer_id,
    type: r.type,
    properties: r.properties,
    occurredAt: r.occurred_at.toISOString(),
    receivedAt: r.received_at.toISOString(),
  }));
}
