// The wait node: fixed, dynamic (a date on the customer or the triggering event, plus an
// offset), timed (within hours on weekdays in the customer's zone) and wait-for-event with a
// timeout. An entry waiting keeps context.wait = { node, until }; a dry run collapses waits.
import type { PropertyCondition } from '../audience/filter.ts';
import type { NodeOf } from '../modules/flows/flows.graph.ts';
import { nextInWindow } from '../time/local-time.ts';
import type { Entry, Outcome, Run } from './engine.ts';
import { eventsMatching, ids, ms, UNIT_MS } from './nodes.ts';

interface WaitState {
  node: string;
  until: string;
}

export async function waitNode(run: Run, node: NodeOf<'wait'>, entries: Entry[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const arriving = entries.filter((e) => (e.context.wait as WaitState | undefined)?.node !== node.id);
  const starts = await startWaits(run, node, arriving);
  // Arrivals that a "wait for event" must check against its property filter.
  const arrivedIds = entries.map((e) => (e.context.arrived as { id?: string } | undefined)?.id).filter((id): id is string => !!id);
  const matching = node.mode === 'event' && arrivedIds.length
    ? (node.where?.length ? await eventsMatching(run, entries[0]!.workspaceId, node.where as unknown as PropertyCondition[], arrivedIds) : new Set(arrivedIds))
    : new Set<string>();
  for (const e of entries) {
    const w = e.context.wait as WaitState | undefined;
    if (w?.node !== node.id) {
      const until = starts.get(e.id)!;
      if (until.kind === 'go') {
        out.push(passWait(e, node, until.branch, until.reason));
        continue;
      }
      e.context = { ...e.context, wait: { node: node.id, until: until.at.toISOString() } };
      out.push({ wait: until.at, waitingFor: node.mode === 'event' ? node.eventType! : null, reason: { waiting: until.at.toISOString() } });
      continue;
    }
    const arrived = e.context.arrived as { id?: string; type?: string } | undefined;
    if (node.mode === 'event' && arrived?.id && matching.has(arrived.id)) {
      out.push(passWait(e, node, 'event', { event: arrived.type, eventId: arrived.id }));
      continue;
    }
    if (arrived) e.context = { ...e.context, arrived: undefined };
    const until = new Date(w.until);
    if (run.now >= until) out.push(passWait(e, node, node.mode === 'event' ? 'timeout' : '', { waited: w.until }));
    else out.push({ wait: until, waitingFor: node.mode === 'event' ? node.eventType! : null });
  }
  return out;
}

function passWait(e: Entry, node: NodeOf<'wait'>, branch: string, reason: Record<string, unknown>): Outcome {
  const { wait: _w, arrived: _a, ...rest } = e.context;
  e.context = rest;
  return { go: node.mode === 'event' ? branch : '', reason };
}

type Start = { kind: 'go'; branch: string; reason: Record<string, unknown> } | { kind: 'wait'; at: Date };

/** When each arriving entry may leave; a dry run collapses every wait (a wait for an event looks the event up in history). */
async function startWaits(run: Run, node: NodeOf<'wait'>, entries: Entry[]): Promise<Map<string, Start>> {
  const starts = new Map<string, Start>();
  if (!entries.length) return starts;
  const go = (e: Entry, reason: Record<string, unknown>, branch = '') => starts.set(e.id, { kind: 'go', branch, reason });
  const waitUntil = (e: Entry, at: Date, reason: Record<string, unknown> = {}) => (at <= run.now ? go(e, { ...reason, due: at.toISOString() }) : starts.set(e.id, { kind: 'wait', at }));
  if (run.dry) {
    if (node.mode !== 'event') {
      for (const e of entries) go(e, { collapsed: true });
      return starts;
    }
    const seen = await run.tx<{ e: string }[]>`
      select r.e from json_to_recordset(${JSON.stringify(entries.map((e) => ({ e: e.id, c: e.customerId, t: triggerTime(e).toISOString() })))}::json) as r(e uuid, c uuid, t timestamptz)
      where exists (select 1 from events ev where ev.workspace_id = ${entries[0]!.workspaceId} and ev.customer_id = r.c and ev.type = ${node.eventType!}
        and ev.occurred_at > r.t and ev.occurred_at <= r.t + ${`${ms(node.timeout!)} milliseconds`}::interval)`;
    const yes = new Set(seen.map((r) => r.e));
    for (const e of entries) go(e, { collapsed: true }, yes.has(e.id) ? 'event' : 'timeout');
    return starts;
  }
  if (node.mode === 'fixed') for (const e of entries) waitUntil(e, new Date(run.now.getTime() + ms(node.duration!)));
  if (node.mode === 'event') for (const e of entries) starts.set(e.id, { kind: 'wait', at: new Date(run.now.getTime() + ms(node.timeout!)) });
  if (node.mode === 'dynamic' || node.mode === 'timed') {
    const rows = await run.tx<{ id: string; custom: Record<string, unknown>; created_at: Date; time_zone: string | null }[]>`
      select id, custom, created_at, time_zone from customers where workspace_id = ${entries[0]!.workspaceId} and id = any(${ids(entries)}::uuid[])`;
    const customers = new Map(rows.map((r) => [r.id, r]));
    for (const e of entries) {
      const c = customers.get(e.customerId);
      if (node.mode === 'timed') {
        waitUntil(e, nextInWindow(run.now, c?.time_zone ?? run.timeZone, node.days!, node.from!, node.to!));
        continue;
      }
      const raw = node.source === 'customer'
        ? node.field === 'createdAt' ? c?.created_at.toISOString() : dig(c?.custom, node.field!.split('.').slice(1))
        : dig((e.context.event as { properties?: unknown } | undefined)?.properties, node.field!.split('.'));
      const base = typeof raw === 'string' || typeof raw === 'number' ? new Date(raw) : null;
      if (!base || Number.isNaN(base.getTime())) go(e, { noDate: node.field });
      else waitUntil(e, new Date(base.getTime() + (node.offset ? node.offset.amount * UNIT_MS[node.offset.unit] : 0)), { from: base.toISOString() });
    }
  }
  return starts;
}

const triggerTime = (e: Entry) => new Date((e.context.event as { occurredAt?: string } | undefined)?.occurredAt ?? e.enteredAt);

function dig(value: unknown, path: string[]): unknown {
  return path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), value);
}
