// The seam where later parts of Herald (flow triggers, triggered actions) hang off event
// ingestion. A hook runs inside the ingest transaction, so whatever it enqueues commits with
// the events or not at all.
import type { TransactionSql } from 'postgres';

export interface IngestedEvent {
  id: string;
  customerId: string;
  type: string;
  properties: Record<string, unknown>;
  occurredAt: Date;
}

export type EventHook = (tx: TransactionSql, workspaceId: string, events: IngestedEvent[]) => Promise<void>;

export class EventHooks {
  readonly #hooks: EventHook[] = [];

  add(hook: EventHook): void {
    this.#hooks.push(hook);
  }

  async run(tx: TransactionSql, workspaceId: string, events: IngestedEvent[]): Promise<void> {
    if (events.length === 0) return;
    for (const hook of this.#hooks) await hook(tx, workspaceId, events);
  }
}
