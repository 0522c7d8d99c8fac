// timelineUpdated over WebSocket, across processes: a process registers the customers its
// subscribers watch in timeline_watch; a statement trigger NOTIFYs the ids of their new timeline
// rows (migrations/0003, 0005); each process LISTENs, loads the rows of customers watched here,
// and publishes them to mercurius's in-process emitter.
import { randomUUID } from 'node:crypto';
import type { Sql } from 'postgres';
import type { MercuriusContext } from 'mercurius';
import { notFound } from '../http/errors.ts';
import { timelineEntries, type TimelineKind } from '../modules/messages/timeline.ts';
import type { GraphqlContext } from '../modules/customers/customers.graphql.ts';
import { isUuid } from '../ids.ts';

const topicOf = (workspaceId: string, customerId: string) => `timeline:${workspaceId}:${customerId}`;
/** A watch lives this long unless refreshed; refreshed at half of it while someone subscribes. */
const WATCH_MINUTES = 10;

export class TimelineFeed {
  readonly #watched = new Map<string, number>();
  #publish: ((topic: string, payload: unknown) => void) | undefined;
  #unlisten: (() => Promise<void>) | undefined;
  readonly #sql: Sql;
  readonly #listener = randomUUID();
  #refresh: NodeJS.Timeout | undefined;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  async #watch(workspaceId: string, customerId: string): Promise<void> {
    await this.#sql`
      insert into timeline_watch (workspace_id, customer_id, listener, expires_at) values (${workspaceId}, ${customerId}, ${this.#listener}, now() + make_interval(mins => ${WATCH_MINUTES}))
      on conflict (workspace_id, customer_id, listener) do update set expires_at = excluded.expires_at`;
    this.#refresh ??= setInterval(() => {
      this.#sql`update timeline_watch set expires_at = now() + make_interval(mins => ${WATCH_MINUTES}) where listener = ${this.#listener}`.catch(() => {});
    }, (WATCH_MINUTES / 2) * 60_000).unref();
  }

  async #unwatch(workspaceId: string, customerId: string): Promise<void> {
    await this.#sql`delete from timeline_watch where workspace_id = ${workspaceId} and customer_id = ${customerId} and listener = ${this.#listener}`.catch(() => {});
  }

  #listening: Promise<void> | undefined;

  /** Where to publish; LISTEN starts with the first subscription, so a process nobody subscribes to never listens. */
  start(publish: (topic: string, payload: unknown) => void): void {
    this.#publish = publish;
  }

  #listen(): Promise<void> {
    this.#listening ??= this.#sql
      .listen('herald_timeline', (payload) => {
        this.#heard(payload).catch(() => {});
      })
      .then(({ unlisten }) => {
        this.#unlisten = unlisten;
      });
    return this.#listening;
  }

  async stop(): Promise<void> {
    if (this.#refresh) clearInterval(this.#refresh);
    if (this.#watched.size) await this.#sql`delete from timeline_watch where listener = ${this.#listener}`.catch(() => {});
    await this.#unlisten?.();
  }

  async #heard(payload: string): Promise<void> {
    if (!this.#watched.size || !this.#publish) return;
    const colon = payload.indexOf(':');
    const kind = payload.slice(0, colon) as TimelineKind;
    const rows = (JSON.parse(payload.slice(colon + 1)) as [string, string, string][]).filter(([w, c]) => this.#watched.has(topicOf(w, c)));
    const byWorkspace = new Map<string, string[]>();
    for (const [w, , id] of rows) {
      const list = byWorkspace.get(w);
      if (list) list.push(id);
      else byWorkspace.set(w, [id]);
    }
    for (const [workspaceId, ids] of byWorkspace) {
      for (const entry of await timelineEntries(this.#sql, workspaceId, kind, ids)) this.#publish(topicOf(workspaceId, entry.customerId), { timelineUpdated: entry });
    }
  }

  /** The subscription resolver: checks the customer is the caller's, then yields its new entries until the client leaves. */
  async *subscribe(ctx: GraphqlContext & Pick<MercuriusContext, 'pubsub'>, customerId: string): AsyncGenerator<unknown> {
    if (!isUuid(customerId)) throw notFound('Customer');
    const [exists] = await this.#sql`select 1 from customers where workspace_id = ${ctx.workspaceId} and id = ${customerId}`;
    if (!exists) throw notFound('Customer');
    await this.#listen();
    const topic = topicOf(ctx.workspaceId, customerId);
    this.#watched.set(topic, (this.#watched.get(topic) ?? 0) + 1);
    await this.#watch(ctx.workspaceId, customerId);
    try {
      for await (const event of await ctx.pubsub.subscribe(topic)) yield event;
    } finally {
      const n = (this.#watched.get(topic) ?? 1) - 1;
      if (n) this.#watched.set(topic, n);
      else {
        this.#watched.delete(topic);
        await this.#unwatch(ctx.workspaceId, customerId);
      }
    }
  }
}
