// Group commit for event ingestion. Posts that arrive while earlier ones are being written wait
// and are then written together, in one transaction of a few set-based statements, so that a
// burst of single-event posts costs a handful of round trips and one commit instead of five
// round trips and a commit each. An idle writer flushes at once, so a lone post waits for nobody.
//
// Each post keeps its own outcome: a post naming an unknown customer is refused (422) without
// touching the others, and if the shared transaction fails as a whole (an event hook throws),
// every post in it is retried in a transaction of its own so only the culprit fails.
import type { Sql, TransactionSql } from 'postgres';
import { unprocessable, type FieldError, type HeraldError } from '../../http/errors.ts';
import { newId } from '../../ids.ts';
import type { Clock } from '../../deps.ts';
import type { EventHooks, IngestedEvent } from './events.hooks.ts';
import type { EventInput, IngestResult } from './events.schemas.ts';

export interface IngestRequest {
  workspaceId: string;
  events: EventInput[];
  /** Where the events sit in the request body, for error pointers: '' or '/events'. */
  pointer: string;
}

interface Pending extends IngestRequest {
  resolve(result: IngestResult): void;
  reject(error: unknown): void;
}

type Outcome = { ok: true; result: IngestResult } | { ok: false; error: HeraldError };

export interface EventWriterOptions {
  /** Transactions written at once. Fewer, larger transactions measured best on 2 cores (bench:ingest: 1: 3.4k, 2: 3.5k, 3: 3.5k, 8: 2.7k, 16: 1.9k single posts/s). */
  maxInFlight?: number;
  /** Events per transaction at most; a post is never split. */
  maxEvents?: number;
}

export class EventWriter {
  readonly #sql: Sql;
  readonly #clock: Clock;
  readonly #hooks: EventHooks;
  readonly #maxInFlight: number;
  readonly #maxEvents: number;
  #queue: Pending[] = [];
  #inFlight = 0;

  constructor(sql: Sql, clock: Clock, hooks: EventHooks, options: EventWriterOptions = {}) {
    this.#sql = sql;
    this.#clock = clock;
    this.#hooks = hooks;
    this.#maxInFlight = options.maxInFlight ?? 2;
    this.#maxEvents = options.maxEvents ?? 5000;
  }

  write(request: IngestRequest): Promise<IngestResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ ...request, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      const batch: Pending[] = [];
      let events = 0;
      while (this.#queue.length > 0 && (batch.length === 0 || events + this.#queue[0]!.events.length <= this.#maxEvents)) {
        const next = this.#queue.shift()!;
        events += next.events.length;
        batch.push(next);
      }
      this.#inFlight++;
      void this.#flush(batch).finally(() => {
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  async #flush(batch: Pending[]): Promise<void> {
    try {
      const outcomes = await this.#sql.begin((tx) => writeInTransaction(tx, this.#hooks, this.#clock.now(), batch));
      outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.result) : batch[i]!.reject(o.error)));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // Isolate the post that broke the shared transaction.
      await Promise.all(batch.map((p) => this.#flush([p])));
    }
  }
}

const key = (workspaceId: string, id: string) => `${workspaceId}\u0000${id}`;

interface Row {
  workspace_id: string;
  id: string;
  customer_id: string;
  type: string;
  properties: Record<string, unknown>;
  occurred_at: string;
  client_id: string | null;
}

/** Writes a batch of posts in the caller's transaction; refused posts write nothing. */
export async function writeInTransaction(tx: TransactionSql, hooks: EventHooks, now: Date, posts: IngestRequest[]): Promise<Outcome[]> {
  const outcomes: (Outcome | undefined)[] = posts.map(() => undefined);

  // 1. Posts naming a customer id that is not in their workspace are refused before anything is written.
  const known = await knownCustomers(tx, posts);
  posts.forEach((p, i) => {
    const errors: FieldError[] = [];
    p.events.forEach((e, j) => {
      if (e.customerId !== undefined && !known.has(key(p.workspaceId, e.customerId))) {
        errors.push({ pointer: p.pointer === '' ? '/customerId' : `${p.pointer}/${j}/customerId`, detail: 'no customer with this id in the workspace' });
      }
    });
    if (errors.length) outcomes[i] = { ok: false, error: unprocessable('Some events name customers that do not exist', errors) };
  });
  const accepted = posts.map((p, i) => ({ p, i })).filter(({ i }) => !outcomes[i]);

  // 2. Customers named by externalId: found, or created.
  const byExternal = await resolveExternalIds(tx, accepted.map(({ p }) => p), now);

  // 3. The rows, in posting order; a client id seen twice is stored once (the first).
  const firstOfClientId = new Set<string>();
  const rows: Row[] = [];
  const rowsOf = accepted.map(({ p }) =>
    p.events.map((e) => {
      const row: Row = {
        workspace_id: p.workspaceId,
        id: newId(),
        customer_id: e.customerId ?? byExternal.get(key(p.workspaceId, e.externalId!))!,
        type: e.type,
        properties: e.properties ?? {},
        occurred_at: e.occurredAt ?? now.toISOString(),
        client_id: e.id ?? null,
      };
      const first = row.client_id === null || !firstOfClientId.has(key(p.workspaceId, row.client_id));
      if (row.client_id !== null) firstOfClientId.add(key(p.workspaceId, row.client_id));
      if (first) rows.push(row);
      return row;
    }),
  );
  const inserted = await insertEvents(tx, rows, now);
  const duplicates = await storedEvents(tx, rowsOf.flat().filter((r) => r.client_id !== null && !inserted.has(r.id)));

  // 4. Results, and the hooks of each workspace inside the transaction.
  const created = new Map<string, IngestedEvent[]>();
  accepted.forEach(({ p, i }, n) => {
    const result: IngestResult = { accepted: 0, duplicates: 0, events: [] };
    for (const r of rowsOf[n]!) {
      if (inserted.has(r.id)) {
        result.accepted++;
        result.events.push({ id: r.id, clientId: r.client_id, customerId: r.customer_id, status: 'created' });
        const list = created.get(p.workspaceId) ?? [];
        list.push({ id: r.id, customerId: r.customer_id, type: r.type, properties: r.properties, occurredAt: new Date(r.occurred_at) });
        created.set(p.workspaceId, list);
      } else {
        const stored = duplicates.get(key(p.workspaceId, r.client_id!));
        result.duplicates++;
        result.events.push({ id: stored?.id ?? r.id, clientId: r.client_id, customerId: stored?.customerId ?? r.customer_id, status: 'duplicate' });
      }
    }
    outcomes[i] = { ok: true, result };
  });
  for (const [workspaceId, events] of created) await hooks.run(tx, workspaceId, events);
  return outcomes as Outcome[];
}

async function knownCustomers(tx: TransactionSql, posts: IngestRequest[]): Promise<Set<string>> {
  const pairs = new Map<string, [string, string]>();
  for (const p of posts) for (const e of p.events) if (e.customerId !== undefined) pairs.set(key(p.workspaceId, e.customerId), [p.workspaceId, e.customerId]);
  if (pairs.size === 0) return new Set();
  const [ws, ids] = unzip([...pairs.values()]);
  // FOR KEY SHARE: a customer deleted at this moment cannot vanish under the new events.
  const rows = await tx<{ workspace_id: string; id: string }[]>`
    select c.workspace_id, c.id from customers c
    join unnest(${ws}::uuid[], ${ids}::uuid[]) as u(workspace_id, id) on c.workspace_id = u.workspace_id and c.id = u.id
    for key share of c`;
  return new Set(rows.map((r) => key(r.workspace_id, r.id)));
}

async function resolveExternalIds(tx: TransactionSql, posts: IngestRequest[], now: Date): Promise<Map<string, string>> {
  const wanted = new Map<string, [string, string]>();
  for (const p of posts) for (const e of p.events) if (e.externalId !== undefined) wanted.set(key(p.workspaceId, e.externalId), [p.workspaceId, e.externalId]);
  const found = new Map<string, string>();
  if (wanted.size === 0) return found;
  const lookup = async (pairs: [string, string][]) => {
    const [ws, ext] = unzip(pairs);
    const rows = await tx<{ workspace_id: string; external_id: string; id: string }[]>`
      select c.workspace_id, c.external_id, c.id from customers c
      join unnest(${ws}::uuid[], ${ext}::text[]) as u(workspace_id, external_id) on c.workspace_id = u.workspace_id and c.external_id = u.external_id`;
    for (const r of rows) found.set(key(r.workspace_id, r.external_id), r.id);
  };
  await lookup([...wanted.values()]);
  const missing = [...wanted.entries()].filter(([k]) => !found.has(k)).map(([, pair]) => pair);
  if (missing.length === 0) return found;
  const [ws, ext] = unzip(missing);
  const ids = missing.map(() => newId());
  // A concurrent post creating the same externalId waits on the unique index, then finds its row.
  const created = await tx<{ workspace_id: string; external_id: string; id: string }[]>`
    insert into customers (workspace_id, id, external_id, created_at, updated_at)
    select u.workspace_id, u.id, u.external_id, ${now}, ${now}
    from unnest(${ws}::uuid[], ${ids}::uuid[], ${ext}::text[]) as u(workspace_id, id, external_id)
    on conflict (workspace_id, external_id) do nothing
    returning workspace_id, external_id, id`;
  for (const r of created) found.set(key(r.workspace_id, r.external_id), r.id);
  if (created.length < missing.length) await lookup(missing.filter(([w, e]) => !found.has(key(w, e))));
  return found;
}

async function insertEvents(tx: TransactionSql, rows: Row[], now: Date): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const inserted = await tx<{ id: string }[]>`
    insert into events (workspace_id, id, customer_id, type, properties, occurred_at, received_at, client_id)
    select r.workspace_id, r.id, r.customer_id, r.type, r.properties, r.occurred_at, ${now}, r.client_id
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as r(workspace_id uuid, id uuid, customer_id uuid, type text, properties jsonb, occurred_at timestamptz, client_id text)
    on conflict (workspace_id, client_id) where client_id is not null do nothing
    returning id`;
  return new Set(inserted.map((r) => r.id));
}

/** The stored event of each duplicate client id, by (workspace, client id). */
async function storedEvents(tx: TransactionSql, rows: Row[]): Promise<Map<string, { id: string; customerId: string }>> {
  const map = new Map<string, { id: string; customerId: string }>();
  if (rows.length === 0) return map;
  const [ws, clientIds] = unzip(rows.map((r) => [r.workspace_id, r.client_id!] as [string, string]));
  const found = await tx<{ workspace_id: string; client_id: string; id: string; customer_id: string }[]>`
    select e.workspace_id, e.client_id, e.id, e.customer_id from events e
    join unnest(${ws}::uuid[], ${clientIds}::text[]) as u(workspace_id, client_id) on e.workspace_id = u.workspace_id and e.client_id = u.client_id`;
  for (const r of found) map.set(key(r.workspace_id, r.client_id), { id: r.id, customerId: r.customer_id });
  return map;
}

function unzip(pairs: [string, string][]): [string[], string[]] {
  return [pairs.map((p) => p[0]), pairs.map((p) => p[1])];
}
