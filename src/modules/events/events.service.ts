// Event ingestion: posts are checked here, then written by the EventWriter (group commit).
import type { Sql } from 'postgres';
import type { Deps } from '../../deps.ts';
import { unprocessable, type FieldError } from '../../http/errors.ts';
import type { Event, EventInput, IngestResult } from './events.schemas.ts';

/**
 * Stores the events, creating customers named by an unknown externalId. All or nothing: a bad
 * reference anywhere rejects the whole post with a pointer to each bad event.
 * `pointer` is where the events sit in the request body ('' for one event, '/events' for a batch).
 */
export async function ingestEvents(deps: Pick<Deps, 'eventWriter'>, workspaceId: string, events: EventInput[], pointer: string): Promise<IngestResult> {
  const errors: FieldError[] = [];
  events.forEach((e, i) => {
    if ((e.customerId === undefined) === (e.externalId === undefined)) {
      errors.push({ pointer: pointer === '' ? '/customerId' : `${pointer}/${i}`, detail: 'name the customer by exactly one of customerId or externalId' });
    }
  });
  if (errors.length) throw unprocessable('Some events do not name their customer', errors);
  return deps.eventWriter.write({ workspaceId, events, pointer });
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
