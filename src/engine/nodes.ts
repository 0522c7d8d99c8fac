// What each node type does with a group of entries at once: a few statements per group, never
// one query per customer. Each handler answers one outcome per entry, in order.
import { matchCustomers } from '../audience/audience.service.ts';
import { compileProperties } from '../audience/compile.ts';
import type { PropertyCondition } from '../audience/filter.ts';
import { plainArray, textArray } from '../db/arrays.ts';
import { newId } from '../ids.ts';
import type { FlowNode, NodeOf, Step } from '../modules/flows/flows.graph.ts';
import { enqueueMessages, type NewMessage } from '../modules/messages/outbox.ts';
import type { Entry, Outcome, Run } from './engine.ts';
import { bucket, pick } from './hash.ts';
import { waitNode } from './waits.ts';

type Handler<T> = (run: Run, node: T, entries: Entry[]) => Promise<Outcome[]>;
export const UNIT_MS = { minutes: 60_000, hours: 3_600_000, days: 86_400_000 } as const;
export const ms = (d: { amount: number; unit: keyof typeof UNIT_MS }) => d.amount * UNIT_MS[d.unit];
export const ids = (entries: Entry[]) => [...new Set(entries.map((e) => e.customerId))];

export const handlers: { [K in FlowNode['type']]: Handler<NodeOf<K>> } = {
  event_trigger: async (run, node, entries) => {
    const out: (Outcome | undefined)[] = entries.map(() => outsideSchedule(run));
    if (node.where?.length) {
      const eventIds = entries.map((e) => (e.context.event as { id?: string } | undefined)?.id).filter((id): id is string => !!id);
      const ok = await eventsMatching(run, entries[0]!.workspaceId, node.where as unknown as PropertyCondition[], eventIds);
      entries.forEach((e, i) => {
        if (!out[i] && !ok.has((e.context.event as { id?: string } | undefined)?.id ?? '')) out[i] = { exit: 'filtered', reason: { filter: 'where' } };
      });
    }
    await customerFilter(run, node.customer, entries, out);
    return admit(run, entries, out);
  },

  schedule_trigger: async (run, _node, entries) => admit(run, entries, entries.map(() => outsideSchedule(run))),

  condition: async (run, node, entries) => {
    const yes = await matchCustomers(run.tx, { workspaceId: entries[0]!.workspaceId, filter: node.filter, now: run.now, customerIds: ids(entries) });
    return entries.map((e) => ({ go: yes.has(e.customerId) ? 'yes' : 'no', reason: { matched: yes.has(e.customerId) } }));
  },

  steps: async (run, node, entries) => {
    const notes = new Map<string, Record<string, unknown>>();
    const note = (e: Entry, key: string, value: unknown) => notes.set(e.id, { ...notes.get(e.id), [key]: value });
    for (const [i, step] of node.steps.entries()) await runStep(run, node, i, step, entries, note);
    // Running a group of steps is a "launch" of the flow for the customer (re-entry counts from it).
    // Written with the tick's entries (engine.ts writeEntries): one write per customer and tick.
    const once = (run.flow.settings.reentry?.mode ?? 'once') === 'once';
    for (const e of entries) run.launches.set(e, once || (run.launches.get(e) ?? false));
    return entries.map((e) => ({ go: '', reason: { steps: node.steps.map((s) => s.type), ...notes.get(e.id) } }));
  },

  splitter: async (run, node, entries) => {
    if (node.mode === 'percent') {
      const options = node.branches.map((b) => ({ key: b.key, share: b.percent ?? 0 }));
      return entries.map((e) => {
        const at = bucket(e.flowId, node.id, e.customerId);
        return { go: pick(options, at) ?? options[options.length - 1]!.key, reason: { bucket: Math.floor(at * 100) / 100 } };
      });
    }
    const chosen = new Map<string, string>();
    let left = ids(entries);
    for (const branch of node.branches) {
      if (!left.length) break;
      const matched = await matchCustomers(run.tx, { workspaceId: entries[0]!.workspaceId, filter: branch.filter!, now: run.now, customerIds: left });
      for (const id of matched) chosen.set(id, branch.key);
      left = left.filter((id) => !matched.has(id));
    }
    return entries.map((e) => {
      const key = chosen.get(e.customerId) ?? node.otherwise;
      return key ? { go: key, reason: { matched: chosen.get(e.customerId) ?? null } } : { exit: 'no_branch', reason: { matched: null } };
    });
  },

  ab_test: async (_run, node, entries) => {
    const options = [...node.variants, ...(node.control ? [{ key: 'control', share: node.control }] : [])];
    return entries.map((e) => {
      const variant = pick(options, bucket(e.flowId, node.id, e.customerId)) ?? options[options.length - 1]!.key;
      return { go: variant, reason: { variant } };
    });
  },

  limitation: async (run, node, entries) => {
    const { limit } = node;
    const period = limit.kind === 'customers' ? String(Math.floor(run.now.getTime() / ms(limit.period))) : 'all';
    const cap = limit.kind === 'customers' ? limit.max : limit.total;
    const cost = limit.kind === 'budget' ? limit.costPerCustomer : 1;
    const { workspaceId, flowId } = entries[0]!;
    let used: number;
    if (run.dry) {
      // A dry run locks nothing (live ticks would wait on it): what is used so far, plus what this dry run let through.
      const [row] = await run.tx<{ used: number }[]>`select used from flow_limits where workspace_id = ${workspaceId} and flow_id = ${flowId} and node_id = ${node.id} and period = ${period}`;
      used = (row?.used ?? 0) + (dryUsed(run).get(`${node.id}/${period}`) ?? 0);
    } else {
      // The row lock makes the cap exact across processes: the second tick waits for the first.
      await run.tx`insert into flow_limits (workspace_id, flow_id, node_id, period) values (${workspaceId}, ${flowId}, ${node.id}, ${period}) on conflict do nothing`;
      [{ used }] = (await run.tx<{ used: number }[]>`select used from flow_limits where workspace_id = ${workspaceId} and flow_id = ${flowId} and node_id = ${node.id} and period = ${period} for update`) as unknown as [{ used: number }];
    }
    const room = Math.max(0, Math.floor((cap - used) / cost + 1e-9));
    const order = [...entries].sort((a, b) => a.enteredAt.getTime() - b.enteredAt.getTime());
    const passing = new Set(order.slice(0, room).map((e) => e.id));
    if (passing.size && run.dry) dryUsed(run).set(`${node.id}/${period}`, (dryUsed(run).get(`${node.id}/${period}`) ?? 0) + passing.size * cost);
    else if (passing.size) await run.tx`update flow_limits set used = used + ${passing.size * cost} where workspace_id = ${workspaceId} and flow_id = ${flowId} and node_id = ${node.id} and period = ${period}`;
    return entries.map((e) => (passing.has(e.id) ? { go: '', reason: { limit: limit.kind, period } } : { go: 'overflow', reason: { capped: limit.kind, cap, period } }));
  },

  wait: async (run, node, entries) => waitNode(run, node, entries),

  exit: async (_run, _node, entries) => entries.map(() => ({ exit: 'completed' })),
};

function outsideSchedule(run: Run): Outcome | undefined {
  const { startAt, endAt } = run.flow.settings;
  if ((startAt && run.now < new Date(startAt)) || (endAt && run.now > new Date(endAt))) return { exit: 'outside_schedule', reason: { startAt: startAt ?? null, endAt: endAt ?? null } };
  return undefined;
}

async function customerFilter(run: Run, filter: NodeOf<'event_trigger'>['customer'], entries: Entry[], out: (Outcome | undefined)[]): Promise<void> {
  if (!filter) return;
  const open = entries.filter((_, i) => !out[i]);
  if (!open.length) return;
  const ok = await matchCustomers(run.tx, { workspaceId: entries[0]!.workspaceId, filter, now: run.now, customerIds: ids(open) });
  entries.forEach((e, i) => {
    if (!out[i] && !ok.has(e.customerId)) out[i] = { exit: 'filtered', reason: { filter: 'customer' } };
  });
}

export async function eventsMatching(run: Run, workspaceId: string, where: PropertyCondition[], eventIds: string[]): Promise<Set<string>> {
  if (!eventIds.length) return new Set();
  const c = compileProperties(where, { workspaceId, now: run.now, timeZone: run.timeZone });
  const n = c.params.length;
  const rows = await run.tx.unsafe<{ id: string }[]>(`select e.id from events e where e.workspace_id = $1::uuid and e.id = any($${n + 1}::uuid[]) and ${c.where}`, [...c.params, eventIds] as never[]);
  return new Set(rows.map((r) => r.id));
}

/**
 * Re-entry (maestra-flows.md): "once" admits a customer until a group of steps has run for
 * them; "period" until the period since the last group of steps is over; "every_time" always.
 * While an entry of a once/period flow is in flight, another is not admitted. Rows of
 * flow_customers are locked, so concurrent ticks decide one at a time per customer.
 */
async function admit(run: Run, entries: Entry[], out: (Outcome | undefined)[]): Promise<Outcome[]> {
  const open = entries.filter((_, i) => !out[i]);
  if (open.length) {
    const { workspaceId, flowId } = open[0]!;
    const mode = run.flow.settings.reentry?.mode ?? 'once';
    const period = run.flow.settings.reentry?.period ? ms(run.flow.settings.reentry.period) : 0;
    const customers = ids(open).sort();
    // Every statement here joins flow_customers on its whole key from a record set: with a constant
    // (workspace, flow) and "customer = any()", the planner scanned every row of the flow once its
    // statistics were stale (bench:flow: ticks slowed from 0.7 to 1.8 s as the flow filled).
    // A customer the flow has never seen is admitted by the insert itself (their first entry,
    // with its count and in-flight mark): only the others are read, locked and updated.
    const ordered = [...open].sort((a, b) => a.enteredAt.getTime() - b.enteredAt.getTime());
    const firstEntry = new Map<string, string>();
    for (const e of ordered) if (!firstEntry.has(e.customerId)) firstEntry.set(e.customerId, e.id);
    const firstIds = customers.map((c) => (mode === 'every_time' ? '' : firstEntry.get(c)!));
    const created = new Set((await run.tx<{ customer_id: string }[]>`
      insert into flow_customers (workspace_id, flow_id, customer_id, entries, active_entry_id, last_entered_at)
      select ${workspaceId}::uuid, ${flowId}::uuid, u.c, 1, nullif(u.e, '')::uuid, ${run.now}::timestamptz
      from unnest(${plainArray(customers)}::uuid[], ${textArray(firstIds)}::text[]) as u(c, e)
      on conflict do nothing returning customer_id`).map((r) => r.customer_id));
    const known = customers.filter((c) => !created.has(c));
    const rows = known.length
      ? await run.tx<{ customer_id: string; active_entry_id: string | null; last_launch_at: Date | null; once_done: boolean }[]>`
          select fc.customer_id, fc.active_entry_id, fc.last_launch_at, fc.once_done
          from unnest(${plainArray(known.map(() => workspaceId))}::uuid[], ${plainArray(known.map(() => flowId))}::uuid[], ${plainArray(known)}::uuid[]) as r(w, f, c)
          join flow_customers fc on fc.workspace_id = r.w and fc.flow_id = r.f and fc.customer_id = r.c
          order by fc.customer_id for update of fc`
      : [];
    const state = new Map(rows.map((r) => [r.customer_id, r]));
    for (const c of created) state.set(c, { customer_id: c, active_entry_id: mode === 'every_time' ? null : firstEntry.get(c)!, last_launch_at: null, once_done: false });
    const admitted: { c: string; e: string | null }[] = [];
    const position = new Map(entries.map((e, i) => [e, i]));
    for (const e of ordered) {
      const s = state.get(e.customerId)!;
      const busy = s.active_entry_id !== null && s.active_entry_id !== e.id;
      // Launched while the rule was "once": that holds even after the flow is edited (the seed).
      let ok = !s.once_done;
      if (mode === 'once') ok = !s.last_launch_at && !busy;
      if (mode === 'period') ok = ok && (!s.last_launch_at || s.last_launch_at.getTime() + period <= run.now.getTime()) && !busy;
      const i = position.get(e)!;
      if (!ok) {
        out[i] = { exit: 'reentry_blocked', reason: { reentry: s.once_done ? 'once' : mode, lastLaunchAt: s.last_launch_at?.toISOString() ?? null, inFlight: busy } };
        continue;
      }
      if (mode !== 'every_time') s.active_entry_id = e.id;
      // The insert above already counted a new customer's first entry.
      if (!(created.has(e.customerId) && firstEntry.get(e.customerId) === e.id)) admitted.push({ c: e.customerId, e: mode !== 'every_time' ? e.id : null });
      out[i] = { go: '', reason: { trigger: (e.context.event as { type?: string } | undefined)?.type ?? 'schedule' } };
    }
    if (admitted.length) {
      await run.tx`
        update flow_customers fc set entries = fc.entries + 1, last_entered_at = ${run.now}, active_entry_id = coalesce(r.e, fc.active_entry_id)
        from json_to_recordset(${JSON.stringify(admitted.map((a) => ({ ...a, w: workspaceId, f: flowId })))}::json) as r(w uuid, f uuid, c uuid, e uuid)
        where fc.workspace_id = r.w and fc.flow_id = r.f and fc.customer_id = r.c`;
    }
  }
  return out as Outcome[];
}

async function runStep(run: Run, node: NodeOf<'steps'>, i: number, step: Step, entries: Entry[], note: (e: Entry, key: string, value: unknown) => void): Promise<void> {
  const { workspaceId, flowId } = entries[0]!;
  const customers = ids(entries);
  switch (step.type) {
    case 'send': {
      const [template] = await run.tx<{ current_version: number }[]>`select current_version from templates where workspace_id = ${workspaceId} and id = ${step.templateId}`;
      // A launched version names every step's config (launchFlow writes the defaults in).
      const messages: NewMessage[] = entries.map((e) => {
        const event = e.context.event as { type?: string; properties?: Record<string, unknown> } | undefined;
        return {
          workspaceId, customerId: e.customerId, channel: step.channel, channelConfigId: step.channelConfigId!, templateId: step.templateId,
          templateVersion: template?.current_version ?? 1, sourceType: 'flow', sourceId: flowId, stepId: `${node.id}/${i}`, entryId: e.id,
          event: event ? { type: event.type, ...event.properties, ...(e.context.promo ? { promo_code: e.context.promo } : {}) } : e.context.promo ? { promo_code: e.context.promo } : null,
        };
      });
      await enqueueMessages(run.tx, run.deps.boss, messages, run.now);
      run.sent.push({ nodeId: node.id, channel: step.channel, count: messages.length, cost: (step.cost ?? 0) * messages.length });
      return;
    }
    case 'update_fields': {
      const removed = Object.keys(step.set).filter((k) => step.set[k] === null);
      const patch = Object.fromEntries(Object.entries(step.set).filter(([, v]) => v !== null));
      await run.tx`
        update customers set custom = (custom || ${JSON.stringify(patch)}::jsonb) - ${removed}::text[], updated_at = ${run.now}
        where workspace_id = ${workspaceId} and id = any(${customers}::uuid[])`;
      return;
    }
    case 'consent': {
      await run.tx`
        with prior as (
          select u.id, c.status from unnest(${customers}::uuid[]) u(id)
          left join customer_consents c on c.workspace_id = ${workspaceId} and c.customer_id = u.id and c.channel = ${step.channel}),
        changed as (
          insert into consent_changes (workspace_id, id, customer_id, channel, from_status, to_status, source, changed_at)
          select ${workspaceId}::uuid, herald_uuid_v7(${run.now}::timestamptz), p.id, ${step.channel}, p.status, ${step.status}, ${`flow:${flowId}`}, ${run.now}::timestamptz
          from prior p where p.status is distinct from ${step.status})
        insert into customer_consents (workspace_id, customer_id, channel, status, source, updated_at)
        select ${workspaceId}::uuid, u.id, ${step.channel}, ${step.status}, ${`flow:${flowId}`}, ${run.now}::timestamptz from unnest(${customers}::uuid[]) u(id)
        on conflict (workspace_id, customer_id, channel) do update set status = excluded.status, source = excluded.source, updated_at = excluded.updated_at`;
      return;
    }
    case 'points':
      return points(run, node, i, step, entries, note);
    case 'promo_code':
      return promoCodes(run, node, i, step, entries, note);
  }
}

/** Points: a ledger row per entry and step (once, by its unique key); the balance never goes below zero unless allowed. */
async function points(run: Run, node: NodeOf<'steps'>, i: number, step: Extract<Step, { type: 'points' }>, entries: Entry[], note: (e: Entry, key: string, value: unknown) => void): Promise<void> {
  const { workspaceId, flowId } = entries[0]!;
  const customers = ids(entries).sort();
  // One writer per customer's balance at a time, whatever flow or process writes it.
  await run.tx`select pg_advisory_xact_lock(hashtextextended(${workspaceId} || c::text, 7)) from unnest(${customers}::uuid[]) c order by c`;
  const rows = await run.tx<{ customer_id: string; balance: number }[]>`
    select distinct on (customer_id) customer_id, balance from points_ledger
    where workspace_id = ${workspaceId} and customer_id = any(${customers}::uuid[]) order by customer_id, at desc, id desc`;
  const balance = new Map(rows.map((r) => [r.customer_id, Number(r.balance)]));
  const ledger: Record<string, unknown>[] = [];
  for (const e of entries) {
    const next = (balance.get(e.customerId) ?? 0) + step.delta;
    if (next < 0 && !step.allowNegative) {
      note(e, 'points', { skipped: 'insufficient_balance', balance: balance.get(e.customerId) ?? 0 });
      continue;
    }
    balance.set(e.customerId, next);
    ledger.push({ id: newId(), c: e.customerId, d: step.delta, b: next, k: `${e.id}/${node.id}/${i}` });
    note(e, 'points', { delta: step.delta, balance: next });
  }
  if (ledger.length) {
    await run.tx`
      insert into points_ledger (workspace_id, id, customer_id, delta, balance, source_type, source_id, step_key, reason, at)
      select ${workspaceId}::uuid, r.id, r.c, r.d, r.b, 'flow', ${flowId}, r.k, ${step.reason ?? null}, ${run.now}::timestamptz
      from json_to_recordset(${JSON.stringify(ledger)}::json) as r(id uuid, c uuid, d bigint, b bigint, k text)
      on conflict do nothing`;
  }
}

/** What a dry run has let through limits and shown of promo pools so far, by its transaction (it writes none of it). */
const dryTallies = new WeakMap<object, Map<string, number>>();
function dryUsed(run: Run): Map<string, number> {
  let tally = dryTallies.get(run.tx);
  if (!tally) dryTallies.set(run.tx, (tally = new Map()));
  return tally;
}

/** Promo codes: each free code of the pool to one customer; when the pool runs dry the step says so and the flow goes on. */
async function promoCodes(run: Run, node: NodeOf<'steps'>, i: number, step: Extract<Step, { type: 'promo_code' }>, entries: Entry[], note: (e: Entry, key: string, value: unknown) => void): Promise<void> {
  const { workspaceId } = entries[0]!;
  if (run.dry) {
    // A dry run takes no code and locks none (a live tick meanwhile would find the pool empty):
    // it shows the free codes the customers would get, after those it has shown already.
    const shown = dryUsed(run).get(`promo/${step.pool}`) ?? 0;
    const free = await run.tx<{ code: string }[]>`
      select code from promo_codes where workspace_id = ${workspaceId} and pool = ${step.pool} and customer_id is null order by code offset ${shown} limit ${entries.length}`;
    dryUsed(run).set(`promo/${step.pool}`, shown + free.length);
    entries.forEach((e, n) => {
      const code = free[n]?.code;
      if (code) e.context = { ...e.context, promo: code };
      note(e, 'promoCode', code ? { pool: step.pool, code } : { pool: step.pool, skipped: 'pool_empty' });
    });
    return;
  }
  const wanted = entries.map((e, rn) => ({ rn: rn + 1, c: e.customerId, k: `${e.id}/${node.id}/${i}` }));
  const issued = await run.tx<{ customer_id: string; code: string; source_key: string }[]>`
    with free as materialized (
      select code, row_number() over (order by code) as rn from (
        select code from promo_codes where workspace_id = ${workspaceId} and pool = ${step.pool} and customer_id is null
        order by code limit ${entries.length} for update skip locked) f),
    want as (select * from json_to_recordset(${JSON.stringify(wanted)}::json) as r(rn int, c uuid, k text))
    update promo_codes p set customer_id = w.c, issued_at = ${run.now}, source_key = w.k
    from free f join want w on w.rn = f.rn
    where p.workspace_id = ${workspaceId} and p.pool = ${step.pool} and p.code = f.code
    returning p.customer_id, p.code, p.source_key`;
  const byKey = new Map(issued.map((r) => [r.source_key, r.code]));
  entries.forEach((e, n) => {
    const code = byKey.get(wanted[n]!.k);
    if (code) e.context = { ...e.context, promo: code };
    note(e, 'promoCode', code ? { pool: step.pool, code } : { pool: step.pool, skipped: 'pool_empty' });
  });
}
