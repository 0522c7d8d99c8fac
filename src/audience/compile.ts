// The one compiler from filter trees to SQL. It yields a predicate over `customers c` with its
// parameters ($1 is always the workspace id). Two modes, one meaning:
// - 'all' (segments, actions: everyone who matches): event and action-template conditions
//   become uncorrelated `c.id in (select customer_id ... group by ... having ...)`, which the
//   planner runs as one scan of the index range and a hash join;
// - 'subset' (a flow batch: which of these N customers match): the same conditions become
//   correlated EXISTS / limited counts, which probe each customer's own index range.
// Every value is a parameter; custom-field paths are parameters too. See README.md here.
import {
  TEXT_FIELDS, TIME_FIELDS,
  type ActionCondition, type Duration, type EventCondition, type FieldCondition, type Filter, type PropertyCondition, type ValueTest,
} from './filter.ts';

export type Mode = 'all' | 'subset';

export interface CompileContext {
  mode: Mode;
  /** The saved segments a filter refers to, already loaded and checked for cycles. */
  segments: Map<string, Filter>;
}

export interface Compiled {
  /** A boolean SQL expression over `customers c`. */
  where: string;
  /** $1 is the workspace id, then the filter's values (and now, the workspace's time zone where used). */
  params: unknown[];
}

const interval = (d: Duration) => `${d.amount} ${d.unit}`;
const likeEscape = (s: string) => s.replace(/[\\%_]/g, (m) => `\\${m}`);

class Builder {
  readonly params: unknown[];
  readonly ctx: CompileContext;
  readonly #values: { now: string; timeZone: string };
  #now?: string;
  #timeZone?: string;
  constructor(workspaceId: string, now: Date, timeZone: string, ctx: CompileContext) {
    this.params = [workspaceId];
    this.ctx = ctx;
    this.#values = { now: now.toISOString(), timeZone };
  }

  /** The clock's now and the workspace's time zone, as parameters added on first use (PostgreSQL refuses unused ones). */
  get now(): string {
    return (this.#now ??= this.p(this.#values.now, 'timestamptz'));
  }
  get timeZone(): string {
    return (this.#timeZone ??= this.p(this.#values.timeZone, 'text'));
  }

  p(value: unknown, cast: string): string {
    this.params.push(value);
    return `$${this.params.length}::${cast}`;
  }

  filter(node: Filter, stack: string[] = []): string {
    if ('all' in node) return `(${node.all.map((f) => this.filter(f, stack)).join(' and ')})`;
    if ('any' in node) return `(${node.any.map((f) => this.filter(f, stack)).join(' or ')})`;
    if ('not' in node) return `(not ${this.filter(node.not, stack)})`;
    switch (node.type) {
      case 'field': return this.field(node);
      case 'event': return this.event(node);
      case 'action': return this.action(node);
      case 'consent':
        return node.status === 'subscribed'
          ? `(not exists (select 1 from customer_consents cc where cc.workspace_id = c.workspace_id and cc.customer_id = c.id and cc.channel = ${this.p(node.channel, 'text')} and cc.status <> 'subscribed'))`
          : `(exists (select 1 from customer_consents cc where cc.workspace_id = c.workspace_id and cc.customer_id = c.id and cc.channel = ${this.p(node.channel, 'text')} and cc.status = ${this.p(node.status, 'text')}))`;
      case 'segment': {
        const id = node.segmentId.toLowerCase();
        const inner = this.ctx.segments.get(id);
        // The service loads every segment and refuses cycles before compiling; this is the guard of last resort.
        if (!inner || stack.includes(id)) throw new Error(`segment ${id} is missing or cyclic`);
        return this.filter(inner, [...stack, id]);
      }
    }
  }

  // ---- values -------------------------------------------------------------------------------------

  field(node: FieldCondition): string {
    if (Object.hasOwn(TEXT_FIELDS, node.field)) return `coalesce(${this.textTest(`c.${TEXT_FIELDS[node.field as keyof typeof TEXT_FIELDS]}`, node)}, false)`;
    if (Object.hasOwn(TIME_FIELDS, node.field)) return `coalesce(${this.timeTest(`c.${TIME_FIELDS[node.field as keyof typeof TIME_FIELDS]}`, node)}, false)`;
    return `coalesce(${this.jsonTest('c.custom', node.field.split('.').slice(1), node)}, false)`;
  }

  textTest(col: string, t: ValueTest): string {
    const v = t.value;
    switch (t.op) {
      case 'eq': return `${col} = ${this.p(v, 'text')}`;
      case 'neq': return `${col} is distinct from ${this.p(v, 'text')}`;
      case 'in': return `${col} in (select jsonb_array_elements_text(${this.p(JSON.stringify(v), 'jsonb')}))`;
      case 'notIn': return `(${col} is null or ${col} not in (select jsonb_array_elements_text(${this.p(JSON.stringify(v), 'jsonb')})))`;
      case 'contains': return `${col} ilike ${this.p(`%${likeEscape(String(v))}%`, 'text')}`;
      case 'notContains': return `(${col} is null or ${col} not ilike ${this.p(`%${likeEscape(String(v))}%`, 'text')})`;
      case 'startsWith': return `${col} ilike ${this.p(`${likeEscape(String(v))}%`, 'text')}`;
      case 'exists': return `${col} is not null`;
      case 'notExists': return `${col} is null`;
      default: throw new Error(`operator ${t.op} on a text field`);
    }
  }

  timeTest(ts: string, t: ValueTest): string {
    switch (t.op) {
      case 'gt': return `${ts} > ${this.p(t.value, 'timestamptz')}`;
      case 'gte': return `${ts} >= ${this.p(t.value, 'timestamptz')}`;
      case 'lt': return `${ts} < ${this.p(t.value, 'timestamptz')}`;
      case 'lte': return `${ts} <= ${this.p(t.value, 'timestamptz')}`;
      case 'withinLast': return `(${ts} between ${this.now} - ${this.p(interval(t.duration!), 'interval')} and ${this.now})`;
      case 'withinNext': return `(${ts} between ${this.now} and ${this.now} + ${this.p(interval(t.duration!), 'interval')})`;
      case 'moreThanAgo': return `${ts} < ${this.now} - ${this.p(interval(t.duration!), 'interval')}`;
      case 'exists': return `${ts} is not null`;
      case 'notExists': return `${ts} is null`;
      default: throw new Error(`operator ${t.op} on a time field`);
    }
  }

  /** A test of the JSON value at `path` under `base` (a customer's custom fields, an event's properties). */
  jsonTest(base: string, path: string[], t: ValueTest): string {
    if ((t.op === 'eq' || t.op === 'neq') && !Array.isArray(t.value)) return this.jsonEquals(base, path, t);
    const keys = path.map((k) => this.p(k, 'text'));
    const j = keys.reduce((expr, k) => `${expr} -> ${k}`, base);
    const text = `(${j} #>> '{}')`;
    const isString = `jsonb_typeof(${j}) = 'string'`;
    const v = t.value;
    switch (t.op) {
      case 'eq':
      case 'neq': return this.jsonEquals(base, path, t);
      case 'in': return `${this.p(JSON.stringify(v), 'jsonb')} @> jsonb_build_array(${j})`;
      case 'notIn': return `not coalesce(${this.p(JSON.stringify(v), 'jsonb')} @> jsonb_build_array(${j}), false)`;
      case 'contains': return this.jsonContains(j, text, String(v));
      case 'notContains': return `not coalesce(${this.jsonContains(j, text, String(v))}, false)`;
      case 'startsWith': return `case when ${isString} then ${text} ilike ${this.p(`${likeEscape(String(v))}%`, 'text')} else false end`;
      case 'exists': return `coalesce(jsonb_typeof(${j}), 'null') <> 'null'`;
      case 'notExists': return `coalesce(jsonb_typeof(${j}), 'null') = 'null'`;
      case 'anniversaryWithinNext': return this.anniversary(`case when ${isString} and ${text} ~ '^\\d{4}-\\d{2}-\\d{2}' then substr(${text}, 6, 2) || substr(${text}, 9, 2) end`, t.duration!);
      default:
        if (typeof v === 'number') return `case when jsonb_typeof(${j}) = 'number' then (${j})::numeric end ${cmp(t.op)} ${this.p(String(v), 'numeric')}`;
        return this.timeTest(`case when ${isString} then herald_to_timestamptz(${text}) end`, t);
    }
  }

  /**
   * Containment (`custom @> {"plan":"gold"}`) means the same as `custom -> 'plan' = '"gold"'` for
   * a scalar and costs less per row (bench:audience); the path is data inside the parameter.
   */
  jsonEquals(base: string, path: string[], t: ValueTest): string {
    const nested = path.reduceRight<unknown>((value, key) => ({ [key]: value }), t.value);
    const contains = `${base} @> ${this.p(JSON.stringify(nested), 'jsonb')}`;
    return t.op === 'eq' ? contains : `not ${contains}`;
  }

  jsonContains(j: string, text: string, v: string): string {
    return `case jsonb_typeof(${j}) when 'string' then ${text} ilike ${this.p(`%${likeEscape(v)}%`, 'text')} when 'array' then ${j} @> ${this.p(JSON.stringify([v]), 'jsonb')} else false end`;
  }

  /** Month and day (MMDD) between today and today + duration, in the customer's time zone (or the workspace's). */
  anniversary(mmdd: string, d: Duration): string {
    const days = d.unit === 'weeks' ? d.amount * 7 : d.amount;
    if (days >= 365) return `(${mmdd}) is not null`;
    const today = `((${this.now} at time zone coalesce(c.time_zone, ${this.timeZone}))::date)`;
    const from = `to_char(${today}, 'MMDD')`;
    const to = `to_char(${today} + ${this.p(String(days), 'int')}, 'MMDD')`;
    return `(case when ${from} <= ${to} then (${mmdd}) between ${from} and ${to} else (${mmdd}) >= ${from} or (${mmdd}) <= ${to} end)`;
  }

  // ---- events and action templates ---------------------------------------------------------------

  eventWhere(node: EventCondition): string[] {
    const where = [`e.type = ${this.p(node.name, 'text')}`];
    if (node.within) where.push(`e.occurred_at >= ${this.now} - ${this.p(interval(node.within), 'interval')}`);
    for (const w of node.where ?? []) where.push(`coalesce(${this.property(w)}, false)`);
    return where;
  }

  event(node: EventCondition): string {
    const where = this.eventWhere(node);
    const atLeast = (k: number) => {
      if (k <= 0) return 'true';
      if (this.ctx.mode === 'subset') {
        const scan = `from events e where e.workspace_id = c.workspace_id and e.customer_id = c.id and ${where.join(' and ')}`;
        return k === 1 ? `exists (select 1 ${scan})` : `((select count(*) from (select 1 ${scan} limit ${k}) z) >= ${k})`;
      }
      const scan = `select e.customer_id from events e where e.workspace_id = $1::uuid and ${where.join(' and ')}`;
      return k === 1 ? `c.id in (${scan})` : `c.id in (${scan} group by e.customer_id having count(*) >= ${this.p(String(k), 'int')})`;
    };
    const { op, value } = node.count ?? { op: 'gte', value: 1 };
    switch (op) {
      case 'gte': return `(${atLeast(value)})`;
      case 'gt': return `(${atLeast(value + 1)})`;
      case 'eq': return `(${atLeast(value)} and not ${atLeast(value + 1)})`;
      case 'lte': return `(not ${atLeast(value + 1)})`;
      case 'lt': return `(not ${atLeast(value)})`;
    }
  }

  property(w: PropertyCondition): string {
    return this.jsonTest('e.properties', w.property.split('.'), w);
  }

  actionWhere(node: ActionCondition): string[] {
    // A source can have several templates of a kind (a flow: one set per send step and channel).
    const templates = node.actionTemplateId
      ? `(${this.p(node.actionTemplateId, 'uuid')})`
      : `(select at.id from action_templates at where at.workspace_id = $1::uuid and at.source_type = ${this.p(node.sourceType, 'text')} and at.source_id = ${this.p(node.sourceId, 'text')} and at.kind = ${this.p(node.kind, 'text')})`;
    const where = [`ca.action_template_id in ${templates}`];
    if (node.within) where.push(`ca.occurred_at >= ${this.now} - ${this.p(interval(node.within), 'interval')}`);
    if (node.without) {
      // The other kind among the same source's templates: the message (cb.message_id below) picks its own step's.
      const other = `(select n.id from action_templates p join action_templates n on n.workspace_id = p.workspace_id and n.source_type = p.source_type and n.source_id = p.source_id and n.kind = ${this.p(node.without.kind, 'text')} where p.workspace_id = $1::uuid and p.id in ${templates})`;
      let inWindow = '';
      if (node.without.within) {
        const w = this.p(interval(node.without.within), 'interval');
        // "not opened within 3 days of it": only messages whose 3 days are over can qualify.
        where.push(`ca.occurred_at <= ${this.now} - ${w}`);
        inWindow = ` and cb.occurred_at <= ca.occurred_at + ${w}`;
      }
      where.push(`not exists (select 1 from customer_actions cb where cb.workspace_id = ca.workspace_id and cb.action_template_id in ${other} and cb.message_id = ca.message_id${inWindow})`);
    }
    return where;
  }

  action(node: ActionCondition): string {
    const where = this.actionWhere(node);
    if (this.ctx.mode === 'subset') return `exists (select 1 from customer_actions ca where ca.workspace_id = c.workspace_id and ca.customer_id = c.id and ${where.join(' and ')})`;
    return `c.id in (select ca.customer_id from customer_actions ca where ca.workspace_id = $1::uuid and ${where.join(' and ')})`;
  }

  /**
   * A count that needs no row of customers: a filter that is one event condition ("at least k")
   * or one action-template condition. Foreign keys guarantee those customers exist, and
   * skipping a lookup per match was two thirds of the time (bench:audience).
   */
  directCount(filter: Filter): string | null {
    if ('all' in filter || 'any' in filter || 'not' in filter) return null;
    if (filter.type === 'action') return `select count(distinct ca.customer_id) as n from customer_actions ca where ca.workspace_id = $1::uuid and ${this.actionWhere(filter).join(' and ')}`;
    if (filter.type !== 'event') return null;
    const { op, value } = filter.count ?? { op: 'gte', value: 1 };
    const k = op === 'gte' ? value : op === 'gt' ? value + 1 : 0;
    if (k < 1) return null;
    const scan = `from events e where e.workspace_id = $1::uuid and ${this.eventWhere(filter).join(' and ')}`;
    return k === 1
      ? `select count(distinct e.customer_id) as n ${scan}`
      : `select count(*) as n from (select e.customer_id ${scan} group by e.customer_id having count(*) >= ${this.p(String(k), 'int')}) s`;
  }
}

function cmp(op: string): string {
  return ({ gt: '>', gte: '>=', lt: '<', lte: '<=' } as Record<string, string>)[op]!;
}

/** The whole count query of a filter that can be counted without reading customers, or null. */
export function compileDirectCount(filter: Filter, input: { workspaceId: string; now: Date; timeZone: string }): Compiled | null {
  const b = new Builder(input.workspaceId, input.now, input.timeZone, { mode: 'all', segments: new Map() });
  const query = b.directCount(filter);
  return query ? { where: query, params: b.params } : null;
}

/** Compiles a checked filter (validate.ts) to a predicate over `customers c`. */
export function compileFilter(filter: Filter, input: { workspaceId: string; now: Date; timeZone: string }, ctx: CompileContext): Compiled {
  const b = new Builder(input.workspaceId, input.now, input.timeZone, ctx);
  const where = b.filter(filter);
  return { where, params: b.params };
}

/** Compiles property conditions of an event (a flow trigger's or wait's `where`) to a predicate over `events e`. */
export function compileProperties(where: PropertyCondition[], input: { workspaceId: string; now: Date; timeZone: string }): Compiled {
  const b = new Builder(input.workspaceId, input.now, input.timeZone, { mode: 'subset', segments: new Map() });
  const parts = where.map((w) => `coalesce(${b.property(w)}, false)`);
  return { where: parts.length ? parts.join(' and ') : 'true', params: b.params };
}
