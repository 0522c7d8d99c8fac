// The flow engine: set-based, as ARCHITECTURE.md describes. A tick claims due entries (state
// active, wake_at passed) with FOR UPDATE SKIP LOCKED, advances them node by node, a whole group
// per node type at a time, until each waits or leaves, and writes the result in the same
// transaction: entries, decisions, messages (the outbox), step effects. A worker that dies
// mid-tick rolls back, and its entries are claimed again: no step runs twice, no one is lost.
import type { PgBoss } from 'pg-boss';
import type { TransactionSql } from 'postgres';
import type { Deps } from '../deps.ts';
import { plainArray, textArray } from '../db/arrays.ts';
import { newId } from '../ids.ts';
import { nodeKind, type FlowGraph, type FlowNode } from '../modules/flows/flows.graph.ts';
import type { FlowSettings } from '../modules/flows/flows.schemas.ts';
import { handlers } from './nodes.ts';

export interface Entry {
  workspaceId: string;
  id: string;
  flowId: string;
  customerId: string;
  version: number;
  nodeId: string;
  context: Record<string, unknown>;
  enteredAt: Date;
  state: 'active' | 'done';
  wakeAt: Date;
  waitingFor: string | null;
  exitReason: string | null;
  hops: number;
  /** The context as claimed: an entry whose context is still this object is not rewritten. */
  claimedContext?: Record<string, unknown>;
  /** The nodes it had decisions at when claimed (flow_entries.visited). */
  visited?: string[];
  /** The nodes it has a decision at for the first time this tick, in order (countDecisions). */
  added?: string[];
}

export interface Decision {
  entry: Entry;
  nodeId: string;
  nodeType: string;
  branch: string | null;
  reason: Record<string, unknown>;
}

export type Outcome =
  | { go: string; reason?: Record<string, unknown> }
  | { wait: Date; waitingFor?: string | null; reason?: Record<string, unknown> }
  | { exit: string; reason?: Record<string, unknown> };

export interface LoadedGraph {
  version: number;
  graph: FlowGraph;
  settings: FlowSettings;
  byId: Map<string, FlowNode>;
  next: Map<string, string>;
}

/** What one tick (or one dry run) works with. */
export interface Run {
  tx: TransactionSql;
  deps: Pick<Deps, 'boss' | 'clock'> & { boss: PgBoss };
  now: Date;
  dry: boolean;
  flow: LoadedGraph;
  timeZone: string;
  sent: { nodeId: string; channel: string; count: number; cost: number }[];
  /** Customers a group of steps ran for (a "launch"): written once, at the end of the tick. */
  launches: Map<Entry, boolean>;
}

/** Entries that pass through more nodes than this in one tick are parked for a minute (a guard; cycles need a wait). */
const HOP_LIMIT = 500;
export const DEFAULT_BATCH = 5000;

// A launched version never changes: its parsed graph is cached for good (bounded). A draft is
// read each time: a dry run runs it as it stands (in its own transaction), and its launch writes
// the channels' default configs into it.
const graphs = new Map<string, LoadedGraph>();

export async function loadGraph(tx: TransactionSql, workspaceId: string, flowId: string, version: number, dry = false): Promise<LoadedGraph | undefined> {
  const key = `${workspaceId}/${flowId}/${version}`;
  // A dry run reads what its own transaction holds (the draft with the defaults written in, to
  // be rolled back): never from the cache, never into it.
  let g = dry ? undefined : graphs.get(key);
  if (!g) {
    const [row] = await tx<{ graph: FlowGraph; settings: FlowSettings; launched: boolean }[]>`
      select graph, settings, launched_at is not null as launched from flow_versions where workspace_id = ${workspaceId} and flow_id = ${flowId} and version = ${version}`;
    if (!row) return undefined;
    g = {
      version, graph: row.graph, settings: row.settings,
      byId: new Map(row.graph.nodes.map((n) => [n.id, n])),
      next: new Map(row.graph.edges.map((e) => [`${e.from}\u0000${e.branch ?? ''}`, e.to])),
    };
    if (!row.launched || dry) return g;
    if (graphs.size > 1000) graphs.delete(graphs.keys().next().value!);
    graphs.set(key, g);
  }
  return g;
}

async function workspaceZones(tx: TransactionSql, ids: string[]): Promise<Map<string, string>> {
  const rows = await tx<{ id: string; time_zone: string }[]>`select id, time_zone from workspaces where id = any(${ids}::uuid[])`;
  return new Map(rows.map((r) => [r.id, r.time_zone]));
}

/**
 * Moves entries through their flows until each waits or leaves; returns the decisions. Effects
 * (messages, fields, points...) are written by the node handlers in `tx`; the caller writes the
 * entries and decisions (or, for a dry run, rolls everything back).
 */
export async function advance(
  tx: TransactionSql, deps: Run['deps'], entries: Entry[], options: { now: Date; dry?: boolean; sent?: Run['sent']; launches?: Run['launches'] },
): Promise<Decision[]> {
  const decisions: Decision[] = [];
  const zones = await workspaceZones(tx, [...new Set(entries.map((e) => e.workspaceId))]);
  const sent = options.sent ?? [];
  const launches = options.launches ?? new Map();
  let pending = entries;
  while (pending.length) {
    const groups = new Map<string, Entry[]>();
    for (const e of pending) {
      const key = `${e.workspaceId}/${e.flowId}/${e.version}/${e.nodeId}`;
      const group = groups.get(key);
      if (group) group.push(e);
      else groups.set(key, [e]);
    }
    const moving: Entry[] = [];
    for (const group of groups.values()) {
      const first = group[0]!;
      const flow = await loadGraph(tx, first.workspaceId, first.flowId, first.version, options.dry);
      const node = flow?.byId.get(first.nodeId);
      if (!flow || !node) {
        for (const e of group) leave(e, 'node_removed', options.now);
        continue;
      }
      const run: Run = { tx, deps, now: options.now, dry: options.dry ?? false, flow, timeZone: zones.get(first.workspaceId) ?? 'UTC', sent, launches };
      const handler = handlers[node.type] as (run: Run, node: FlowNode, entries: Entry[]) => Promise<Outcome[]>;
      const outcomes = await handler(run, node, group);
      group.forEach((e, i) => {
        const o = outcomes[i]!;
        if ('wait' in o) {
          if (o.reason) decisions.push({ entry: e, nodeId: node.id, nodeType: node.type, branch: null, reason: o.reason });
          e.wakeAt = o.wait;
          e.waitingFor = o.waitingFor ?? null;
          if (o.wait <= options.now && ++e.hops <= HOP_LIMIT) moving.push(e);
          return;
        }
        if ('exit' in o) {
          decisions.push({ entry: e, nodeId: node.id, nodeType: node.type, branch: null, reason: { exit: o.exit, ...o.reason } });
          leave(e, o.exit, options.now);
          return;
        }
        decisions.push({ entry: e, nodeId: node.id, nodeType: node.type, branch: o.go, reason: o.reason ?? {} });
        const to = flow.next.get(`${node.id}\u0000${o.go}`);
        const target = to ? flow.byId.get(to) : undefined;
        if (!target) return leave(e, 'end', options.now);
        e.nodeId = target.id;
        e.waitingFor = null;
        if (target.type === 'exit') {
          decisions.push({ entry: e, nodeId: target.id, nodeType: 'exit', branch: null, reason: { exit: 'completed' } });
          return leave(e, 'completed', options.now);
        }
        e.wakeAt = options.now;
        if (++e.hops > HOP_LIMIT) e.wakeAt = new Date(options.now.getTime() + 60_000);
        else moving.push(e);
      });
    }
    pending = moving;
  }
  return decisions;
}

function leave(e: Entry, reason: string, now: Date): void {
  e.state = 'done';
  e.exitReason = reason;
  e.waitingFor = null;
  e.wakeAt = now;
}

interface ClaimedRow {
  visited: string[];
  workspace_id: string;
  id: string;
  flow_id: string;
  customer_id: string;
  version: number;
  node_id: string;
  context: Record<string, unknown>;
  entered_at: Date;
  wake_at: Date;
}

/** How long an active entry of a paused flow (made on an old view of it) waits before it is looked at again. */
export const STRAY_RECHECK_MS = 30_000;

/**
 * The claimed entries that may run now. An entry of a flow that is paused, deleted or on another
 * version than the one it was made for (made by a process whose flow index was up to 5 s old, or
 * by an ingest that committed just after a pause or a launch) is set right instead: left to wait
 * while its flow is paused, ended with `flow_deleted`, moved to the active version (due again at
 * once), or ended with `node_removed` when its node is not there or not the same kind of node.
 * One small read a tick.
 */
async function settleStrays(tx: TransactionSql, rows: ClaimedRow[], now: Date): Promise<ClaimedRow[]> {
  const keys = [...new Map(rows.map((r) => [`${r.workspace_id}/${r.flow_id}`, r])).values()];
  const flows = await tx<{ workspace_id: string; id: string; status: string; active_version: number | null; deleted: boolean }[]>`
    select f.workspace_id, f.id, f.status, f.active_version, f.deleted_at is not null as deleted from flows f
    join unnest(${plainArray(keys.map((r) => r.workspace_id))}::uuid[], ${plainArray(keys.map((r) => r.flow_id))}::uuid[]) as u(w, id) on f.workspace_id = u.w and f.id = u.id`;
  const byKey = new Map(flows.map((f) => [`${f.workspace_id}/${f.id}`, f]));
  const paused: ClaimedRow[] = [];
  const ended: { r: ClaimedRow; reason: string }[] = [];
  const moved: { r: ClaimedRow; version: number }[] = [];
  const runnable: ClaimedRow[] = [];
  for (const r of rows) {
    const f = byKey.get(`${r.workspace_id}/${r.flow_id}`);
    if (f && !f.deleted && f.status === 'active' && f.active_version === r.version) runnable.push(r);
    else if (!f || f.deleted || !f.active_version) ended.push({ r, reason: 'flow_deleted' });
    else if (f.active_version !== r.version) {
      // Moved to the node of the same id only when it is the same kind of node (an entry made at
      // an old trigger must not start at whatever bears its id now, past the new trigger's rules).
      const [from, to] = await Promise.all([loadGraph(tx, r.workspace_id, r.flow_id, r.version), loadGraph(tx, r.workspace_id, r.flow_id, f.active_version)]);
      const was = from?.byId.get(r.node_id);
      const is = to?.byId.get(r.node_id);
      if (was && is && nodeKind(was) === nodeKind(is)) moved.push({ r, version: f.active_version });
      else ended.push({ r, reason: 'node_removed' });
    } else if (f.status === 'paused') paused.push(r);
    else runnable.push(r);
  }
  // Each row by its whole key: the primary key's (workspace_id, id), flow_customers' (workspace, flow, customer).
  // Not set 'paused' here: a resume committing while this tick runs would not see it (it resumes
  // the paused entries it sees) and the entry would stay paused in an active flow. It stays
  // active and is looked at again after STRAY_RECHECK_MS.
  if (paused.length) {
    await tx`
      update flow_entries e set wake_at = ${new Date(now.getTime() + STRAY_RECHECK_MS)}, updated_at = ${now}
      from unnest(${plainArray(paused.map((r) => r.workspace_id))}::uuid[], ${plainArray(paused.map((r) => r.id))}::uuid[]) as u(w, id)
      where e.workspace_id = u.w and e.id = u.id and e.state = 'active'`;
  }
  if (moved.length) {
    await tx`
      update flow_entries e set version = m.version, updated_at = ${now}
      from unnest(${plainArray(moved.map((m) => m.r.workspace_id))}::uuid[], ${plainArray(moved.map((m) => m.r.id))}::uuid[], ${plainArray(moved.map((m) => m.version))}::int[]) as m(w, id, version)
      where e.workspace_id = m.w and e.id = m.id`;
  }
  if (ended.length) {
    await tx`
      update flow_entries e set state = 'done', exit_reason = x.reason, exited_at = ${now}, updated_at = ${now}, waiting_for = null
      from unnest(${plainArray(ended.map((x) => x.r.workspace_id))}::uuid[], ${plainArray(ended.map((x) => x.r.id))}::uuid[], ${textArray(ended.map((x) => x.reason))}::text[]) as x(w, id, reason)
      where e.workspace_id = x.w and e.id = x.id`;
    await tx`
      update flow_customers fc set active_entry_id = null
      from unnest(${plainArray(ended.map((x) => x.r.workspace_id))}::uuid[], ${plainArray(ended.map((x) => x.r.flow_id))}::uuid[], ${plainArray(ended.map((x) => x.r.customer_id))}::uuid[], ${plainArray(ended.map((x) => x.r.id))}::uuid[]) as x(w, f, c, id)
      where fc.workspace_id = x.w and fc.flow_id = x.f and fc.customer_id = x.c and fc.active_entry_id = x.id`;
  }
  return runnable;
}

/** One tick: claims up to `batch` due entries, advances them, writes everything in one transaction. Returns how many it claimed. */
export async function tick(deps: Pick<Deps, 'database' | 'boss' | 'clock'>, batch = DEFAULT_BATCH): Promise<number> {
  const now = deps.clock.now();
  return deps.database.sql.begin(async (tx) => {
    const rows = await tx<ClaimedRow[]>`
      select workspace_id, id, flow_id, customer_id, version, node_id, context, entered_at, wake_at, visited from flow_entries
      where state = 'active' and wake_at <= ${now} order by wake_at limit ${batch} for update skip locked`;
    if (!rows.length) return 0;
    const runnable = await settleStrays(tx, rows, now);
    const entries: Entry[] = runnable.map((r) => ({
      workspaceId: r.workspace_id, id: r.id, flowId: r.flow_id, customerId: r.customer_id, version: r.version, nodeId: r.node_id,
      context: r.context, enteredAt: r.entered_at, state: 'active', wakeAt: r.wake_at, waitingFor: null, exitReason: null, hops: 0, claimedContext: r.context, visited: r.visited,
    }));
    const launches: Run['launches'] = new Map();
    const decisions = await advance(tx, deps, entries, { now, launches });
    const counts = countDecisions(decisions);
    await writeEntries(tx, entries, launches, now);
    await writeDecisions(tx, decisions, now);
    await writeCounts(tx, counts);
    return rows.length;
  });
}

/**
 * Runs ticks until nothing is due, or until the deadline (ms since the epoch) passes. `onFull` is
 * told when a tick claimed a whole batch (more is probably due).
 */
export async function drainFlows(deps: Pick<Deps, 'database' | 'boss' | 'clock'>, batch = DEFAULT_BATCH, until = Infinity, onFull?: () => void): Promise<number> {
  let total = 0;
  for (let n = await tick(deps, batch); n > 0 && Date.now() < until; n = await tick(deps, batch)) {
    total += n;
    if (n >= batch) onFull?.();
  }
  return total;
}

// Both writers send columns as arrays for unnest(): about half the cost of JSON records for a
// tick's decisions (measured), and the array literals are built by src/db/arrays.ts (the
// driver's own escaping was a quarter of a tick's CPU). '' stands for null where '' is no
// value. Times go as ISO text.
async function writeEntries(tx: TransactionSql, entries: Entry[], launches: Run['launches'], now: Date): Promise<void> {
  // Handlers replace an entry's context when they change it: unchanged ones are not sent back.
  // The nodes an entry reached for the first time are kept only while it is under way: a done
  // entry is never claimed again (bench:flow: writing them for every entry cost ~9%).
  const col = <T>(f: (e: Entry) => T) => entries.map(f);
  await tx`
    update flow_entries f set node_id = u.node_id, state = u.state, visited = case when u.added = '' then f.visited else f.visited || u.added::text[] end, wake_at = u.wake_at::timestamptz, waiting_for = nullif(u.waiting_for, ''),
      context = coalesce(nullif(u.context, '')::jsonb, f.context), exit_reason = nullif(u.exit_reason, ''), exited_at = case when u.state = 'done' then ${now}::timestamptz end, updated_at = ${now}
    from unnest(${plainArray(col((e) => e.workspaceId))}::uuid[], ${plainArray(col((e) => e.id))}::uuid[], ${plainArray(col((e) => e.nodeId))}::text[], ${plainArray(col((e) => e.state))}::text[],
      ${plainArray(col((e) => e.wakeAt.toISOString()))}::text[], ${textArray(col((e) => e.waitingFor ?? ''))}::text[], ${textArray(col((e) => (e.context === e.claimedContext ? '' : JSON.stringify(e.context))))}::text[],
      ${textArray(col((e) => e.exitReason ?? ''))}::text[], ${textArray(col((e) => (e.added && e.state !== 'done' ? textArray(e.added) : '')))}::text[])
      as u(workspace_id, id, node_id, state, wake_at, waiting_for, context, exit_reason, added)
    where f.workspace_id = u.workspace_id and f.id = u.id`;
  // Each customer's flow_customers row is written once per tick: the launch (re-entry counts
  // from it) and the end of its in-flight entry together. A customer can have several entries
  // done in one tick (one admitted, others refused): the one in flight is cleared, whichever.
  const customers = new Map<string, { w: string; f: string; c: string; launched: boolean; once: boolean; done: string[] }>();
  const of = (e: Entry) => {
    const key = `${e.workspaceId}/${e.flowId}/${e.customerId}`;
    let row = customers.get(key);
    if (!row) customers.set(key, (row = { w: e.workspaceId, f: e.flowId, c: e.customerId, launched: false, once: false, done: [] }));
    return row;
  };
  for (const [e, once] of launches) {
    const row = of(e);
    row.launched = true;
    row.once ||= once;
  }
  for (const e of entries) if (e.state === 'done') of(e).done.push(e.id);
  if (customers.size) {
    const rows = [...customers.values()];
    await tx`
      update flow_customers fc set
        last_launch_at = case when u.launched = 1 then ${now}::timestamptz else fc.last_launch_at end, once_done = fc.once_done or u.once = 1,
        active_entry_id = case when fc.active_entry_id = any(string_to_array(nullif(u.done, ''), ',')::uuid[]) then null else fc.active_entry_id end
      from unnest(${plainArray(rows.map((r) => r.w))}::uuid[], ${plainArray(rows.map((r) => r.f))}::uuid[], ${plainArray(rows.map((r) => r.c))}::uuid[],
        ${plainArray(rows.map((r) => (r.launched ? 1 : 0)))}::int[], ${plainArray(rows.map((r) => (r.once ? 1 : 0)))}::int[], ${textArray(rows.map((r) => r.done.join(',')))}::text[])
        as u(w, f, c, launched, once, done)
      where fc.workspace_id = u.w and fc.flow_id = u.f and fc.customer_id = u.c`;
  }
}

/** One row of flow_node_counts in the making: a node's first visits, or its decisions with one branch. */
interface NodeCount {
  workspaceId: string;
  flowId: string;
  nodeId: string;
  branch: string | null;
  entered: number;
  decisions: number;
}

/**
 * A tick's contribution to its flows' stats: per node, the entries there for the first time
 * (an entry's visited nodes, plus those it reached earlier in this tick; a wait's leaving and a
 * cycle's return are not new), and per node and branch, the decisions. Notes each entry's new
 * nodes in `added`, for writeEntries.
 */
function countDecisions(decisions: Decision[]): NodeCount[] {
  // Flow id -> node id -> branch (null too) -> count: Map lookups on the strings the rows and the
  // graph already hold (a key string built per decision was a tenth of a tick's CPU, bench:flow).
  const byFlow = new Map<string, Map<string, Map<string | null, NodeCount>>>();
  const list: NodeCount[] = [];
  const at = (e: Entry, nodeId: string, branch: string | null) => {
    let nodes = byFlow.get(e.flowId);
    if (!nodes) byFlow.set(e.flowId, (nodes = new Map()));
    let branches = nodes.get(nodeId);
    if (!branches) nodes.set(nodeId, (branches = new Map()));
    let c = branches.get(branch);
    if (!c) {
      branches.set(branch, (c = { workspaceId: e.workspaceId, flowId: e.flowId, nodeId, branch, entered: 0, decisions: 0 }));
      list.push(c);
    }
    return c;
  };
  for (const d of decisions) {
    const e = d.entry;
    if (!e.visited?.includes(d.nodeId) && !e.added?.includes(d.nodeId)) {
      (e.added ??= []).push(d.nodeId);
      at(e, d.nodeId, null).entered++;
    }
    at(e, d.nodeId, d.branch).decisions++;
  }
  return list;
}

async function writeCounts(tx: TransactionSql, counts: NodeCount[]): Promise<void> {
  if (!counts.length) return;
  const col = <T>(f: (c: NodeCount) => T) => counts.map(f);
  await tx`
    insert into flow_node_counts (workspace_id, id, flow_id, node_id, branch, entered, decisions)
    select u.w, u.id, u.f, u.n, u.b, u.entered, u.decisions
    from unnest(${plainArray(col((c) => c.workspaceId))}::uuid[], ${plainArray(col(() => newId()))}::uuid[], ${plainArray(col((c) => c.flowId))}::uuid[],
      ${textArray(col((c) => c.nodeId))}::text[], ${textArray(col((c) => c.branch))}::text[], ${plainArray(col((c) => c.entered))}::bigint[], ${plainArray(col((c) => c.decisions))}::bigint[])
      as u(w, id, f, n, b, entered, decisions)`;
}

async function writeDecisions(tx: TransactionSql, decisions: Decision[], now: Date): Promise<void> {
  // One row per entry: its decisions of this tick in the order they were made.
  const byEntry = new Map<Entry, Decision[]>();
  for (const d of decisions) {
    const list = byEntry.get(d.entry);
    if (list) list.push(d);
    else byEntry.set(d.entry, [d]);
  }
  const rows = [...byEntry];
  for (let i = 0; i < rows.length; i += 5000) {
    const part = rows.slice(i, i + 5000);
    const col = <T>(f: (e: Entry, list: Decision[]) => T) => part.map(([e, list]) => f(e, list));
    // Ids from this process are increasing: rows made in one tick keep their order on the timeline.
    // Per-row arrays go as arrays of array literals (cast one by one); the reasons as one JSON
    // array of arrays, zipped with the columns by ROWS FROM.
    await tx`
      insert into flow_decisions (workspace_id, id, flow_id, version, entry_id, customer_id, node_ids, node_types, branches, reasons, at)
      select u.w, u.id, u.f, u.v, u.e, u.c, u.n::text[], u.t::text[], u.b::text[], u.r, ${now}
      from rows from (unnest(${plainArray(col((e) => e.workspaceId))}::uuid[]), unnest(${plainArray(col(() => newId()))}::uuid[]), unnest(${plainArray(col((e) => e.flowId))}::uuid[]),
        unnest(${plainArray(col((e) => e.version))}::int[]), unnest(${plainArray(col((e) => e.id))}::uuid[]), unnest(${plainArray(col((e) => e.customerId))}::uuid[]),
        unnest(${textArray(col((_, l) => textArray(l.map((d) => d.nodeId))))}::text[]), unnest(${textArray(col((_, l) => textArray(l.map((d) => d.nodeType))))}::text[]),
        unnest(${textArray(col((_, l) => textArray(l.map((d) => d.branch))))}::text[]), jsonb_array_elements(${JSON.stringify(col((_, l) => l.map((d) => d.reason)))}::jsonb)) as u(w, id, f, v, e, c, n, t, b, r)`;
  }
}
