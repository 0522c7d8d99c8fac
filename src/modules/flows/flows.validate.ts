// Two levels of checking a flow graph. Faults in its shape (an unknown node type, an edge to a
// missing node, a wait of -1 days, shares that do not add up...) are a 400 naming each field by
// its JSON pointer, and nothing is saved. A graph that is well formed but not finished (no
// trigger, unconnected nodes, a cycle with no wait, a missing template) is saved as a draft
// with its problems, each naming the node and field; only a graph without problems is ready.
import { CronExpressionParser } from 'cron-parser';
import type { Sql, TransactionSql } from 'postgres';
import { defaultConfigIds } from '../channels/channels.service.ts';
import { checkFilter } from '../../audience/validate.ts';
import type { FieldError } from '../../http/errors.ts';
import { fieldErrors } from '../../http/problem.ts';
import { isTimeZone } from '../../http/schemas.ts';
import { compileStrict } from '../../http/validation.ts';
import {
  AbTestNode, ConditionNode, EventTriggerNode, ExitNode, LimitationNode, MAX_NODES, ScheduleTriggerNode, SplitterNode, StepsNode, WaitNode,
  type FlowEdge, type FlowGraph, type FlowNode,
} from './flows.graph.ts';

export interface Problem {
  nodeId: string | null;
  field: string;
  detail: string;
}

const NODE_SCHEMAS = {
  event_trigger: EventTriggerNode, schedule_trigger: ScheduleTriggerNode, condition: ConditionNode, steps: StepsNode, splitter: SplitterNode,
  wait: WaitNode, ab_test: AbTestNode, limitation: LimitationNode, exit: ExitNode,
} as const;
// The filters inside nodes are checked by the audience walker, which names each bad node.
const stripFilters = (schema: unknown): unknown => JSON.parse(JSON.stringify(schema), (_k, v) => (v && typeof v === 'object' && v['x-checked-by-service'] ? {} : v));
const validators = Object.fromEntries(Object.entries(NODE_SCHEMAS).map(([type, schema]) => [type, compileStrict(stripFilters(schema) as object)]));

const checkEdge = compileStrict<FlowEdge>({ type: 'object', required: ['from', 'to'], additionalProperties: false, properties: { from: { type: 'string' }, to: { type: 'string' }, branch: { type: 'string' } } });

export const TRIGGERS = new Set(['event_trigger', 'schedule_trigger']);

/** The output ports of a node: '' is the default one. */
export function portsOf(node: FlowNode): string[] {
  switch (node.type) {
    case 'exit': return [];
    case 'condition': return ['yes', 'no'];
    case 'splitter': return [...node.branches.map((b) => b.key), ...(node.mode === 'conditions' && node.otherwise ? [node.otherwise] : [])];
    case 'ab_test': return [...node.variants.map((v) => v.key), ...(node.control ? ['control'] : [])];
    case 'wait': return node.mode === 'event' ? ['event', 'timeout'] : [''];
    case 'limitation': return ['', 'overflow'];
    default: return [''];
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Shape and field checks: every fault by pointer. */
export function checkGraph(graph: unknown, at = '/graph'): FieldError[] {
  const errors: FieldError[] = [];
  const fail = (pointer: string, detail: string) => errors.push({ pointer, detail });
  if (!isObject(graph) || !Array.isArray(graph.nodes) || !Array.isArray(graph.edges)) return [{ pointer: at, detail: 'must be { nodes: [...], edges: [...] }' }];
  for (const key of Object.keys(graph)) if (key !== 'nodes' && key !== 'edges') fail(`${at}/${key}`, 'is not a known field');
  if (graph.nodes.length > MAX_NODES) return [{ pointer: `${at}/nodes`, detail: `a flow may hold at most ${MAX_NODES} nodes` }];
  const ids = new Map<string, FlowNode>();
  graph.nodes.forEach((raw, i) => {
    const p = `${at}/nodes/${i}`;
    if (!isObject(raw)) return fail(p, 'must be a node object');
    const validate = typeof raw.type === 'string' && Object.hasOwn(validators, raw.type) ? validators[raw.type] : undefined;
    if (!validate) return fail(`${p}/type`, `unknown node type; one of ${Object.keys(NODE_SCHEMAS).join(', ')}`);
    if (!validate(raw)) return errors.push(...fieldErrors(validate.errors as never, 'body').map((e) => ({ ...e, pointer: `${p}${e.pointer}` })));
    const node = raw as unknown as FlowNode;
    if (ids.has(node.id)) fail(`${p}/id`, `"${node.id}" is used by another node`);
    ids.set(node.id, node);
    checkNode(node, p, fail);
  });
  const taken = new Set<string>();
  (graph.edges as unknown[]).forEach((raw, i) => {
    const p = `${at}/edges/${i}`;
    if (!checkEdge(raw)) return fail(p, 'must be { from, to, branch? }');
    const from = ids.get(raw.from);
    if (!from) fail(`${p}/from`, `no node "${raw.from}"`);
    if (!ids.has(raw.to)) fail(`${p}/to`, `no node "${raw.to}"`);
    if (from) {
      const ports = portsOf(from);
      const branch = raw.branch ?? '';
      if (!ports.includes(branch)) fail(`${p}/branch`, ports.length ? `a ${from.type} node's branches are ${ports.map((b) => (b === '' ? '(none)' : b)).join(', ')}` : 'an exit node leads nowhere');
      else if (taken.has(`${raw.from}\u0000${branch}`)) fail(`${p}/branch`, 'another edge already leaves this node by this branch');
      taken.add(`${raw.from}\u0000${branch}`);
    }
  });
  return errors;
}

function checkNode(node: FlowNode, p: string, fail: (pointer: string, detail: string) => void): void {
  const filter = (value: unknown, pointer: string) => {
    for (const e of checkFilter(value, pointer).errors) fail(e.pointer, e.detail);
  };
  const properties = (where: unknown[] | undefined, pointer: string) => {
    if (!where) return;
    for (const e of checkFilter({ type: 'event', name: 'x', where }, '').errors) fail(pointer + e.pointer.replace(/^\/where/, ''), e.detail);
  };
  switch (node.type) {
    case 'event_trigger':
      properties(node.where, `${p}/where`);
      if (node.customer !== undefined) filter(node.customer, `${p}/customer`);
      break;
    case 'schedule_trigger':
      filter(node.audience, `${p}/audience`);
      if ('cron' in node.schedule) {
        if (!isTimeZone(node.schedule.timeZone)) fail(`${p}/schedule/timeZone`, `"${node.schedule.timeZone}" is not an IANA time zone`);
        else {
          try {
            if (node.schedule.cron.trim().split(/\s+/).length !== 5) throw new Error('five fields');
            CronExpressionParser.parse(node.schedule.cron, { tz: node.schedule.timeZone });
          } catch {
            fail(`${p}/schedule/cron`, 'is not a cron expression of five fields');
          }
        }
      }
      break;
    case 'condition':
      filter(node.filter, `${p}/filter`);
      break;
    case 'splitter': {
      const keys = new Set<string>();
      node.branches.forEach((b, i) => {
        if (keys.has(b.key)) fail(`${p}/branches/${i}/key`, `"${b.key}" is used twice`);
        keys.add(b.key);
        if (node.mode === 'percent' && b.percent === undefined) fail(`${p}/branches/${i}/percent`, 'is required in percent mode');
        if (node.mode === 'conditions') {
          if (b.filter === undefined) fail(`${p}/branches/${i}/filter`, 'is required in conditions mode');
          else filter(b.filter, `${p}/branches/${i}/filter`);
        }
      });
      if (node.mode === 'percent') {
        const total = node.branches.reduce((s, b) => s + (b.percent ?? 0), 0);
        if (Math.abs(total - 100) > 1e-9) fail(`${p}/branches`, `the percentages add up to ${total}, not 100`);
      }
      if (node.otherwise && keys.has(node.otherwise)) fail(`${p}/otherwise`, 'must differ from the branch keys');
      break;
    }
    case 'ab_test': {
      const total = node.variants.reduce((s, v) => s + v.share, 0) + (node.control ?? 0);
      if (Math.abs(total - 100) > 1e-9) fail(`${p}/variants`, `the shares and the control add up to ${total}, not 100`);
      const keys = node.variants.map((v) => v.key);
      keys.forEach((k, i) => {
        if (keys.indexOf(k) !== i || k === 'control') fail(`${p}/variants/${i}/key`, k === 'control' ? '"control" names the control group' : `"${k}" is used twice`);
      });
      break;
    }
    case 'wait':
      checkWait(node, p, fail, properties);
      break;
    default:
  }
}

function checkWait(node: Extract<FlowNode, { type: 'wait' }>, p: string, fail: (pointer: string, detail: string) => void, properties: (w: unknown[] | undefined, at: string) => void): void {
  const need = (key: keyof typeof node, why: string) => {
    if (node[key] === undefined) fail(`${p}/${key}`, why);
  };
  if (node.mode === 'fixed') need('duration', 'a fixed delay needs a duration');
  if (node.mode === 'dynamic') {
    need('source', 'a dynamic delay needs the source of its date (customer or event)');
    need('field', 'a dynamic delay needs the field holding its date');
    if (node.source === 'customer' && node.field && !/^(custom(\.[A-Za-z0-9_-]{1,64}){1,5}|createdAt)$/.test(node.field)) fail(`${p}/field`, 'must be custom.<path> or createdAt');
  }
  if (node.mode === 'timed') {
    if (!node.days?.length) fail(`${p}/days`, 'a timed delay needs at least one weekday to leave on');
    if (!node.from || !node.to) fail(`${p}/${node.from ? 'to' : 'from'}`, 'a timed delay needs the hours to leave within (from, to)');
    else if (node.from >= node.to) fail(`${p}/to`, 'must be after from: the window would hold no hour');
  }
  if (node.mode === 'event') {
    need('eventType', 'wait for which event?');
    need('timeout', 'a wait for an event needs a timeout');
    properties(node.where, `${p}/where`);
  }
}

/** What keeps a well-formed graph from being ready: each problem names its node and field. */
export async function graphProblems(sql: Sql | TransactionSql, workspaceId: string, graph: FlowGraph, now: Date): Promise<Problem[]> {
  const problems: Problem[] = [];
  // A one-off schedule already past would never enter anyone: launched, the flow would sit idle.
  for (const node of graph.nodes) {
    if (node.type === 'schedule_trigger' && 'at' in node.schedule && new Date(node.schedule.at) <= now) {
      problems.push({ nodeId: node.id, field: 'schedule/at', detail: 'is in the past: the flow would never enter anyone (give a time to come, or a cron)' });
    }
  }
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const incoming = new Map<string, number>();
  const out = new Map<string, FlowEdge[]>();
  for (const e of graph.edges) {
    incoming.set(e.to, (incoming.get(e.to) ?? 0) + 1);
    out.set(e.from, [...(out.get(e.from) ?? []), e]);
  }
  if (!graph.nodes.some((n) => TRIGGERS.has(n.type))) problems.push({ nodeId: null, field: 'nodes', detail: 'a flow needs a trigger (event_trigger or schedule_trigger)' });
  for (const node of graph.nodes) {
    if (TRIGGERS.has(node.type) && incoming.get(node.id)) problems.push({ nodeId: node.id, field: 'edges', detail: 'nothing may lead into a trigger' });
    if (!TRIGGERS.has(node.type) && !incoming.get(node.id)) problems.push({ nodeId: node.id, field: 'edges', detail: 'no edge leads to this node: it is unconnected' });
    const taken = new Set((out.get(node.id) ?? []).map((e) => e.branch ?? ''));
    for (const port of portsOf(node)) if (!taken.has(port)) problems.push({ nodeId: node.id, field: port ? `branch:${port}` : 'next', detail: port ? `the "${port}" branch leads nowhere` : 'leads nowhere: connect it (to an exit node to end)' });
    if (node.type === 'steps' && node.steps.length === 0) problems.push({ nodeId: node.id, field: 'steps', detail: 'a group of steps needs at least one step' });
  }
  // A cycle must pass through a wait, or a customer could loop forever within one tick.
  const state = new Map<string, 1 | 2>();
  const visit = (id: string, path: string[]): void => {
    state.set(id, 1);
    for (const e of out.get(id) ?? []) {
      const next = byId.get(e.to);
      if (!next || next.type === 'wait') continue;
      if (state.get(e.to) === 1) {
        const cycle = [...path.slice(path.indexOf(e.to)), e.to];
        problems.push({ nodeId: e.to, field: 'edges', detail: `a cycle with no wait: ${cycle.join(' -> ')}` });
      } else if (!state.has(e.to)) visit(e.to, [...path, e.to]);
    }
    state.set(id, 2);
  };
  for (const node of graph.nodes) if (!state.has(node.id) && node.type !== 'wait') visit(node.id, [node.id]);

  const sends = graph.nodes.flatMap((n) => (n.type === 'steps' ? n.steps.map((s, i) => ({ node: n.id, i, s })) : [])).filter((x) => x.s.type === 'send');
  if (sends.length) {
    const templates = await sql<{ id: string; channel: string }[]>`select id, channel from templates where workspace_id = ${workspaceId} and deleted_at is null and id = any(${sends.map((x) => (x.s as { templateId: string }).templateId)}::uuid[])`;
    const configs = await sql<{ id: string; channel: string }[]>`
      select id, channel from channel_configs where workspace_id = ${workspaceId} and deleted_at is null
        and id = any(${sends.flatMap((x) => (x.s.type === 'send' && x.s.channelConfigId ? [x.s.channelConfigId] : []))}::uuid[])`;
    // The channels' defaults, for the steps that name no config (launch writes them in).
    const defaults = await defaultConfigIds(sql, workspaceId, [...new Set(sends.flatMap((x) => (x.s.type === 'send' && !x.s.channelConfigId ? [x.s.channel] : [])))]);
    for (const { node, i, s } of sends) {
      if (s.type !== 'send') continue;
      const t = templates.find((r) => r.id === s.templateId);
      const c = s.channelConfigId ? configs.find((r) => r.id === s.channelConfigId) : defaults.has(s.channel) ? { channel: s.channel } : undefined;
      if (!t) problems.push({ nodeId: node, field: `steps/${i}/templateId`, detail: 'the template does not exist' });
      else if (t.channel !== s.channel) problems.push({ nodeId: node, field: `steps/${i}/templateId`, detail: `the template is for ${t.channel}, the step sends ${s.channel}` });
      if (!c) problems.push({ nodeId: node, field: `steps/${i}/channelConfigId`, detail: s.channelConfigId ? 'the channel config does not exist' : `is required: the workspace has no default ${s.channel} config` });
      else if (c.channel !== s.channel) problems.push({ nodeId: node, field: `steps/${i}/channelConfigId`, detail: `the channel config is for ${c.channel}, the step sends ${s.channel}` });
    }
  }
  return problems;
}
