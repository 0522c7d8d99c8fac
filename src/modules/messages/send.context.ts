// What a claimed batch of messages needs to be sent, loaded once per batch: its customers,
// consents, push subscriptions, frequency counts, workspaces, channel configs and compiled
// template versions (each version compiled once per batch).
import { isDatabaseDown } from '../../db/errors.ts';
import type { Deps } from '../../deps.ts';
import { loadChannelConfig } from '../channels/channels.service.ts';
import type { CustomerSqlRow } from '../customers/customers.service.ts';
import { compileFields, type CompiledTemplate } from '../templates/render.ts';
import { loadMergeData, mergeDataWanted, type MergeData } from '../templates/merge-data.ts';
import { versionFields } from '../templates/templates.service.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import type { WorkspaceSettings } from '../workspaces/workspaces.schemas.ts';
import type { ClaimedMessage } from './send.ledger.ts';

export interface Context {
  customers: Map<string, CustomerRow>;
  consents: Map<string, string>;
  subscriptions: Map<string, { id: string; kind: string; endpoint: string; keys: { p256dh: string; auth: string } | null }>;
  templates: Map<string, { compiled: CompiledTemplate; content: Record<string, unknown> } | Error>;
  configs: Map<string, Awaited<ReturnType<typeof loadChannelConfig>> | null>;
  workspaces: Map<string, { timeZone: string; settings: WorkspaceSettings }>;
  /** Messages already sent per customer and channel: [last day, last week], counted up as this batch sends. */
  sentCounts: Map<string, [number, number]>;
  /** promo_code and points_balance per customer, when a template of the batch uses them. */
  mergeData: Map<string, MergeData>;
}

type CustomerRow = Omit<CustomerSqlRow, 'updated_at'> & { workspace_id: string };

/** A map key of two or three parts (ids, a channel, a version). */
export const k = (a: string, b: string | number, c?: string | number) => (c === undefined ? `${a}/${b}` : `${a}/${b}/${c}`);

const DAY_MS = 24 * 3600_000;
/**
 * How far back a message sent in the last week may have been created: a week, plus time spent
 * queued (retries, quiet hours, a worker outage). Older ones are not counted against a cap.
 */
export const CAP_LOOKBACK_MS = 30 * DAY_MS;

export async function loadContext(deps: Pick<Deps, 'database' | 'db' | 'config' | 'clock'>, batch: ClaimedMessage[]): Promise<Context> {
  const { sql } = deps.database;
  // Each customer once: a join on repeated pairs would multiply the counts below.
  const pairs = [...new Map(batch.map((m) => [k(m.workspace_id, m.customer_id), [m.workspace_id, m.customer_id] as const])).values()];
  const ws = pairs.map((p) => p[0]);
  const ids = pairs.map((p) => p[1]);
  const now = deps.clock.now();
  const versions = [...new Map(batch.map((m) => [k(m.workspace_id, m.template_id, m.template_version), m])).values()];
  // Independent reads: one round trip's wait for all of them.
  const [customers, consents, subscriptions, workspaces, counts, rows] = await Promise.all([
    sql<CustomerRow[]>`select c.* from customers c join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on c.workspace_id = u.w and c.id = u.id`,
    sql<{ workspace_id: string; customer_id: string; channel: string; status: string }[]>`
      select c.workspace_id, c.customer_id, c.channel, c.status from customer_consents c join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on c.workspace_id = u.w and c.customer_id = u.id`,
    sql<{ workspace_id: string; customer_id: string; id: string; kind: string; endpoint: string; keys: { p256dh: string; auth: string } | null }[]>`
      select distinct on (s.workspace_id, s.customer_id, s.kind) s.workspace_id, s.customer_id, s.id, s.kind, s.endpoint, s.keys
      from push_subscriptions s join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on s.workspace_id = u.w and s.customer_id = u.id
      order by s.workspace_id, s.customer_id, s.kind, s.created_at desc`,
    sql<{ id: string; time_zone: string; settings: WorkspaceSettings }[]>`select id, time_zone, settings from workspaces where id = any(${[...new Set(ws)]}::uuid[])`,
    // Messages sent per customer and channel in the last day and week, where the workspace caps
    // that channel (frequency caps; nothing is read for the others). Through the customer index,
    // bounded by creation (CAP_LOOKBACK_MS): not every message the customer was ever sent.
    sql<{ workspace_id: string; customer_id: string; channel: string; day: number; week: number }[]>`
      select m.workspace_id, m.customer_id, m.channel,
        count(*) filter (where coalesce(m.sent_at, m.updated_at) > ${new Date(now.getTime() - DAY_MS)})::int as day, count(*)::int as week
      from messages m join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on m.workspace_id = u.w and m.customer_id = u.id
      join workspaces w on w.id = m.workspace_id and w.settings->'frequencyCaps' ? m.channel
      where m.created_at > ${new Date(now.getTime() - CAP_LOOKBACK_MS)} and m.source_type <> 'test'
        -- Sent, or of unknown outcome (it most likely reached the customer).
        and (m.sent_at > ${new Date(now.getTime() - 7 * DAY_MS)} or (m.status = 'unknown' and m.updated_at > ${new Date(now.getTime() - 7 * DAY_MS)}))
      group by 1, 2, 3`,
    // Each template version once (compiled once per batch below).
    sql<{ workspace_id: string; template_id: string; version: number; content: Record<string, unknown>; channel: string }[]>`
      select v.workspace_id, v.template_id, v.version, v.content, t.channel from template_versions v
      join templates t on t.workspace_id = v.workspace_id and t.id = v.template_id
      join unnest(${versions.map((m) => m.workspace_id)}::uuid[], ${versions.map((m) => m.template_id)}::uuid[], ${versions.map((m) => m.template_version)}::int[]) u(w, t, v)
        on v.workspace_id = u.w and v.template_id = u.t and v.version = u.v`,
  ]);
  const context: Context = {
    customers: new Map(customers.map((c) => [k(c.workspace_id, c.id), c])),
    consents: new Map(consents.map((c) => [k(c.workspace_id, c.customer_id, c.channel), c.status])),
    subscriptions: new Map(subscriptions.map((s) => [k(s.workspace_id, s.customer_id, s.kind), s])),
    templates: new Map(),
    configs: new Map(),
    workspaces: new Map(workspaces.map((w) => [w.id, { timeZone: w.time_zone, settings: w.settings }])),
    sentCounts: new Map(counts.map((c) => [k(c.workspace_id, c.customer_id, c.channel), [c.day, c.week]])),
    mergeData: new Map(),
  };
  // Compiled once per template version per batch.
  for (const r of rows) {
    try {
      const { content, fields } = versionFields(r.channel as TemplateChannel, r.content);
      context.templates.set(k(r.workspace_id, r.template_id, r.version), { compiled: compileFields(fields), content });
    } catch (error) {
      context.templates.set(k(r.workspace_id, r.template_id, r.version), error as Error);
    }
  }
  const variables = [...context.templates.values()].flatMap((t) => (t instanceof Error ? [] : t.compiled.variables));
  context.mergeData = await loadMergeData(sql, pairs, mergeDataWanted(variables));
  for (const m of batch) {
    const key = k(m.workspace_id, m.channel_config_id);
    if (context.configs.has(key)) continue;
    // A config that cannot be opened (deleted, or sealed under another HERALD_SECRET) is missing;
    // a database that cannot be reached is not: the claim is given back (claimBatch).
    context.configs.set(key, await loadChannelConfig(deps, m.workspace_id, m.channel_config_id).catch((error: unknown) => {
      if (isDatabaseDown(error)) throw error;
      return null;
    }));
  }
  return context;
}
