// Liquid rendering of template fields (subject, html, text, ...) with hard limits, because
// templates are written by workspace users and rendered inside the sending workers.
import { Buffer } from 'node:buffer';
import { Liquid, LiquidError, Output, Tag, filters, type Context, type TagToken, type Template, type TopLevelToken } from 'liquidjs';
import { isTimeZone } from '../../http/schemas.ts';
import { fieldPlan, renderPlan, type FieldPlan } from './render-plan.ts';

export interface RenderContext {
  customer: Record<string, unknown>;
  event?: Record<string, unknown>;
  promo_code?: string;
  points_balance?: number;
  unsubscribe_url?: string;
  view_url?: string;
  forward_url?: string;
  workspace?: { name: string };
  /** IANA time zone used by the local_date filter (the customer's, else the workspace's). */
  timeZone: string;
}

export type TemplateErrorKind = 'syntax' | 'limit' | 'render';

export class TemplateError extends Error {
  field: string;
  line: number | null;
  column: number | null;
  kind: TemplateErrorKind;
  constructor(message: string, opts: { field: string; line?: number | null; column?: number | null; kind: TemplateErrorKind; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TemplateError';
    this.field = opts.field;
    this.line = opts.line ?? null;
    this.column = opts.column ?? null;
    this.kind = opts.kind;
  }
}

export interface CompiledTemplate {
  /**
   * `parts`, when given, receives for each field with a layout (see fieldLayout) the rendered
   * pieces of that layout, whose concatenation is the field's value.
   */
  render(ctx: RenderContext, parts?: Record<string, string[]>): Promise<Record<string, string>>;
  /** Merge tags the fields read from the context, e.g. 'customer.first_name', sorted. */
  variables: string[];
}

/** Longest accepted field source; matches the largest Liquid field the template schemas allow (html/mjml). */
export const PARSE_LIMIT_CHARS = 500_000;
/** Render time for one whole message (all fields together), so N fields cannot each take the maximum. */
export const RENDER_BUDGET_MS = 200;
/** Characters liquidjs may allocate (ranges, appends, output) while rendering one field. */
export const MEMORY_LIMIT_CHARS = 10_000_000;
/** Largest rendered field; anything bigger is not a sendable message. */
export const OUTPUT_LIMIT_BYTES = 1024 * 1024;

// Templates never load other templates: the tags fail at parse time with a clear message, and the
// empty in-memory `templates` map is a second fence in case a future tag reaches the loader.
class DisabledTag extends Tag {
  constructor(token: TagToken, remainTokens: TopLevelToken[], liquid: Liquid) {
    super(token, remainTokens, liquid);
    throw new Error(`{% ${token.name} %} is not supported: a template cannot load other templates`);
  }
  render(): void {}
}

const options = {
  templates: {},
  parseLimit: PARSE_LIMIT_CHARS,
  renderLimit: RENDER_BUDGET_MS,
  memoryLimit: MEMORY_LIMIT_CHARS,
  strictFilters: true,
  strictVariables: false,
  ownPropertyOnly: true,
  jsTruthy: false,
  // Host-independent output: the built-in `date` filter shows UTC in English unless told otherwise.
  timezoneOffset: 0,
  locale: 'en-US',
};
// Two engines: HTML fields escape what merge tags output (a custom field holding `<script>` stays
// text; `| raw` opts out), plain-text fields (subject, SMS, push) do not.
const liquid = new Liquid(options);
const htmlLiquid = new Liquid({ ...options, outputEscape: 'escape' });
const HTML_FIELDS = new Set(['html']);
const engineFor = (field: string) => (HTML_FIELDS.has(field) ? htmlLiquid : liquid);
for (const engine of [liquid, htmlLiquid]) for (const name of ['include', 'render', 'layout']) engine.registerTag(name, DisabledTag);

// liquidjs hands filters the scope object we passed to render(), so the time zone rides along
// without becoming a variable templates could read or overwrite.
const zoneOfScope = new WeakMap<object, string>();
const builtinDate = filters['date'];
if (typeof builtinDate !== 'function') throw new Error('liquidjs no longer exposes its date filter');

const localDate = function localDate(this: { context: Context }, value: unknown, format?: unknown) {
  const zone = zoneOfScope.get(this.context.environments) ?? 'UTC';
  if (!isTimeZone(zone)) throw new Error(`local_date: unknown time zone "${zone}"`);
  // A bare calendar date (a birthday) names a day, not an instant: converting its UTC midnight into a
  // zone west of UTC would print the day before.
  const calendarDay = typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value.trim());
  return builtinDate.call(this as never, value, format, calendarDay ? 0 : zone);
};
for (const engine of [liquid, htmlLiquid]) engine.registerFilter('local_date', localDate);

type Segments = Array<string | number>;
const segmentsOf = new WeakMap<CompiledTemplate, Segments[]>();
const layoutsOf = new WeakMap<CompiledTemplate, Map<string, ReadonlyArray<string | null>>>();
const plannedOf = new WeakMap<CompiledTemplate, string[]>();

/** The fields rendered by a plan (render-plan.ts) rather than by liquidjs, unless a value declines it. */
export function plannedFields(compiled: CompiledTemplate): string[] {
  return plannedOf.get(compiled) ?? [];
}

/**
 * An HTML field made only of static text and escaped merge tags (no Liquid tags, no `| raw`): its
 * static pieces, null where a merge tag's (escaped) output goes. Undefined for any other field.
 */
export function fieldLayout(compiled: CompiledTemplate, field: string): ReadonlyArray<string | null> | undefined {
  return layoutsOf.get(compiled)?.get(field);
}

// Between the pieces of a layout when rendering it, so that one render gives the pieces apart.
const PIECE_SEPARATOR = '\u0000';

function layoutOf(templates: Template[]): Array<string | null> | undefined {
  if (templates.length === 0) return undefined;
  const layout: Array<string | null> = [];
  for (const t of templates) {
    if (t instanceof Output) {
      // Escaped unless the last filter is `raw` (as liquidjs decides).
      const last = t.value.filters[t.value.filters.length - 1];
      if (!last || last.raw || last.name === 'raw') return undefined;
      layout.push(null);
    } else if (!(t instanceof Tag) && typeof (t as { str?: unknown }).str === 'string') {
      const str = (t as unknown as { str: string }).str;
      if (str.includes(PIECE_SEPARATOR)) return undefined;
      layout.push(str);
    } else {
      return undefined;
    }
  }
  return layout;
}

function toTemplateError(field: string, e: unknown): TemplateError {
  if (e instanceof TemplateError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const base = LiquidError.is(err) ? (err.originalError?.message ?? err.message) : err.message;
  const message = (base.split('\n')[0] ?? base).replace(/, line:\d+, col:\d+$/, '');
  let line: number | null = null;
  let column: number | null = null;
  if (LiquidError.is(err) && err.token) [line, column] = err.token.getPosition() as [number, number];
  const kind: TemplateErrorKind = /limit exceeded/.test(message)
    ? 'limit'
    : err.name === 'ParseError' || err.name === 'TokenizationError'
      ? 'syntax'
      : 'render';
  const where = line === null ? '' : ` (line ${line}, column ${column})`;
  return new TemplateError(`${field}: ${message}${where}`, { field, line, column, kind, cause: err });
}

// Dynamic lookups (customer[key]) are cut at the dynamic part: the analysis lists `key` on its own.
function staticSegments(raw: ReadonlyArray<unknown>): Segments {
  const out: Segments = [];
  for (const s of raw) {
    if (typeof s !== 'string' && typeof s !== 'number') break;
    out.push(s);
  }
  return out;
}

function scopeOf(ctx: RenderContext): Record<string, unknown> {
  const { timeZone: _zone, ...vars } = ctx;
  const scope: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) scope[k] = v;
  return scope;
}

/** One field through liquidjs, in pieces when it has a layout and `parts` asks for them. */
function renderLiquid(
  field: string, templates: Template[], engine: Liquid, separated: Template[] | undefined, scope: Record<string, unknown>,
  parts: Record<string, string[]> | undefined, deadline: number,
): string {
  try {
    // Synchronous: no filter is asynchronous, the time limit still applies, and the
    // promise machinery of async rendering was a sixth of the send workers' CPU.
    if (parts && separated) {
      const pieces = String(engine.renderSync(separated, scope, { renderLimit: Math.max(1, Math.floor(deadline - performance.now())) })).split(PIECE_SEPARATOR);
      // A value holding the separator itself: rendered again the ordinary way, without pieces.
      if (pieces.length === templates.length) {
        parts[field] = pieces;
        return pieces.join('');
      }
    }
    return String(engine.renderSync(templates, scope, { renderLimit: Math.max(1, Math.floor(deadline - performance.now())) }));
  } catch (e) {
    throw toTemplateError(field, e);
  }
}

/**
 * Parses every field; throws a TemplateError naming the first bad field and where in it.
 * `interpreterOnly`: every field through liquidjs, no plans (the reference the tests compare with).
 */
export function compileFields(fields: Record<string, string>, options: { interpreterOnly?: boolean } = {}): CompiledTemplate {
  // [field, templates, engine, the templates with a separator between pieces when the field has a
  // layout, the field's plan when it is only static text and plain merge tags]
  const parsed: Array<[string, Template[], Liquid, Template[] | undefined, FieldPlan | undefined]> = [];
  const found = new Map<string, Segments>();
  const layouts = new Map<string, ReadonlyArray<string | null>>();
  const planned: string[] = [];
  for (const [field, source] of Object.entries(fields)) {
    let templates: Template[];
    const engine = engineFor(field);
    try {
      templates = engine.parse(source);
      for (const raw of engine.globalVariableSegmentsSync(templates)) {
        const segs = staticSegments(raw);
        if (segs.length > 0) found.set(segs.join('.'), segs);
      }
    } catch (e) {
      throw toTemplateError(field, e);
    }
    const layout = HTML_FIELDS.has(field) ? layoutOf(templates) : undefined;
    let separated: Template[] | undefined;
    if (layout) {
      layouts.set(field, layout);
      const separator = engine.parse(PIECE_SEPARATOR);
      separated = templates.flatMap((t, i) => (i === 0 ? [t] : [...separator, t]));
    }
    const plan = options.interpreterOnly ? undefined : fieldPlan(templates, engine);
    if (plan) planned.push(field);
    parsed.push([field, templates, engine, separated, plan]);
  }
  const variables = [...found.keys()].sort();
  const compiled: CompiledTemplate = {
    variables,
    async render(ctx, parts) {
      const scope = scopeOf(ctx);
      // For local_date, which only liquidjs calls: set when a field goes through it (a WeakMap
      // entry per message was a cost of its own).
      let zoned = false;
      const deadline = performance.now() + RENDER_BUDGET_MS;
      const out: Record<string, string> = {};
      for (const [field, templates, engine, separated, plan] of parsed) {
        const left = Math.floor(deadline - performance.now());
        if (left <= 0) throw new TemplateError(`${field}: template render limit exceeded`, { field, kind: 'limit' });
        // Static text and plain merge tags: no interpreter (render-plan.ts), unless the plan declines.
        const pieces = plan && renderPlan(plan, scope, MEMORY_LIMIT_CHARS);
        if (pieces && separated && parts) parts[field] = pieces;
        if (!pieces && !zoned) {
          zoneOfScope.set(scope, ctx.timeZone);
          zoned = true;
        }
        const text = pieces ? pieces.join('') : renderLiquid(field, templates, engine, separated, scope, parts, deadline);
        // A UTF-16 unit is at most 3 bytes of UTF-8: most fields need no count.
        if (text.length * 3 > OUTPUT_LIMIT_BYTES && Buffer.byteLength(text, 'utf8') > OUTPUT_LIMIT_BYTES) {
          throw new TemplateError(`${field}: rendered output is over ${OUTPUT_LIMIT_BYTES} bytes`, { field, kind: 'limit' });
        }
        out[field] = text;
      }
      return out;
    },
  };
  segmentsOf.set(compiled, [...found.values()]);
  layoutsOf.set(compiled, layouts);
  plannedOf.set(compiled, planned);
  return compiled;
}

// Mirrors how liquidjs reads a path (own properties only, first/last/size on arrays and strings).
function lookup(root: unknown, segs: Segments): unknown {
  let cur: unknown = root;
  for (const seg of segs) {
    if (cur === null || cur === undefined) return undefined;
    if ((Array.isArray(cur) || typeof cur === 'string') && seg === 'size') cur = cur.length;
    else if (Array.isArray(cur) && seg === 'first') cur = cur[0];
    else if (Array.isArray(cur) && seg === 'last') cur = cur[cur.length - 1];
    else if (Array.isArray(cur) && typeof seg === 'number') cur = cur.at(seg);
    else if (typeof cur === 'object' && Object.hasOwn(cur, seg)) cur = (cur as Record<string | number, unknown>)[seg];
    else return undefined;
  }
  return cur;
}

/**
 * Merge tags whose value is undefined or null in ctx. A tag written with `| default: ...` is still
 * reported: the analysis does not look at filters, and the caller may want to know the fallback was used.
 */
export function missingVariables(compiled: CompiledTemplate, ctx: RenderContext): string[] {
  const scope = scopeOf(ctx);
  const all = segmentsOf.get(compiled) ?? compiled.variables.map((v) => v.split('.'));
  return all.filter((segs) => lookup(scope, segs) == null).map((segs) => segs.join('.'));
}

/** The `customer` object templates see: snake_case profile fields, custom fields at the top level, and `custom`. */
export function customerContext(customer: {
  id: string;
  externalId: string | null;
  email: string | null;
  phone: string | null;
  timeZone: string | null;
  locale: string | null;
  custom: Record<string, unknown>;
  createdAt: string;
}): Record<string, unknown> {
  return {
    ...customer.custom,
    id: customer.id,
    external_id: customer.externalId,
    email: customer.email,
    phone: customer.phone,
    time_zone: customer.timeZone,
    locale: customer.locale,
    created_at: customer.createdAt,
    custom: customer.custom,
  };
}
