// Plain merge tags without the Liquid interpreter. Most fields of a real template are static text
// and tags like `{{ customer.first_name | default: "there" }}`; liquidjs evaluates each one
// through half a dozen generators, and that was three quarters of the send workers' rendering
// time. A field made only of static text and such tags gets a plan at compile time: its static
// pieces, and for each tag the path it reads, its `default` and whether it is escaped. The plan
// renders a message with the same result as liquidjs, or declines (a value it does not handle, a
// field whose output could reach the memory limit) and the field goes through liquidjs as before.
import { Output, Tag, type Liquid, type Template } from 'liquidjs';

/** A merge tag the plan evaluates itself. */
interface PlainTag {
  /** Keys read from the scope, e.g. ['customer', 'first_name']. */
  path: string[];
  /** `| default: <literal>`: what an empty, nil or false value renders as (escaped as liquidjs would). */
  whenEmpty: string | null;
  /** The HTML engine's output escape applies. */
  escape: boolean;
}

/** Static text, or a tag; the concatenation of their renderings is the field. */
export type FieldPlan = Array<string | PlainTag>;

// Kinds of liquidjs tokens (TokenKind): a word (`first_name`), a quoted string, a number.
const WORD = 256;
const QUOTED = 1024;
const NUMBER = 1;
const PROPERTY_ACCESS = 128;
// liquidjs reads these keys specially (size of arrays, strings and objects; first and last elements).
const SPECIAL_KEYS = new Set(['size', 'first', 'last']);

interface LiquidToken {
  kind: number;
  content?: unknown;
  props?: LiquidToken[];
  variable?: unknown;
}

function plainTag(output: Output, engine: Liquid): PlainTag | undefined {
  const value = output.value as unknown as { initial: { postfix: LiquidToken[] }; filters: Array<{ name: string; args: unknown[]; handler: unknown; raw: boolean }> };
  const [token, ...more] = value.initial.postfix;
  if (!token || more.length || token.kind !== PROPERTY_ACCESS || token.variable || !token.props?.length) return undefined;
  const path: string[] = [];
  for (const prop of token.props) {
    if ((prop.kind !== WORD && prop.kind !== QUOTED) || typeof prop.content !== 'string' || SPECIAL_KEYS.has(prop.content)) return undefined;
    path.push(prop.content);
  }
  const filters = [...value.filters];
  const escapeFilter = (engine.options as { outputEscape?: unknown }).outputEscape;
  const escape = escapeFilter !== undefined && filters.at(-1)?.handler === escapeFilter && !filters.at(-1)?.raw;
  if (escape) filters.pop();
  else if (escapeFilter !== undefined) return undefined;
  if (filters.length > 1) return undefined;
  const [fallback] = filters;
  if (fallback) {
    const [arg, ...rest] = fallback.args as LiquidToken[];
    if (fallback.name !== 'default' || !arg || rest.length || Array.isArray(arg) || (arg.kind !== QUOTED && arg.kind !== NUMBER)) return undefined;
  }
  // The tag with nothing in scope renders exactly what an empty value gets (its default, escaped).
  const whenEmpty = fallback ? String(engine.renderSync([output], {})) : null;
  return { path, whenEmpty, escape };
}

/** The plan of a field, or undefined when anything in it is more than static text and plain tags. */
export function fieldPlan(templates: Template[], engine: Liquid): FieldPlan | undefined {
  const plan: FieldPlan = [];
  for (const t of templates) {
    if (t instanceof Output) {
      const tag = plainTag(t, engine);
      if (!tag) return undefined;
      plan.push(tag);
    } else if (!(t instanceof Tag) && typeof (t as { str?: unknown }).str === 'string') {
      // Static text (liquidjs's HTML template, not exported as a class).
      plan.push((t as unknown as { str: string }).str);
    } else return undefined;
  }
  return plan;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' };
const SPECIAL = /[&<>"']/;
const SPECIALS = /[&<>"']/g;
const escapeHtml = (s: string) => (SPECIAL.test(s) ? s.replace(SPECIALS, (c) => ESCAPES[c]!) : s);

// What liquidjs reads for a path of plain keys from JSON data: own properties of plain objects; a
// nil stops the walk. Anything else (arrays, strings, class instances) is left to liquidjs.
const DECLINE = Symbol('decline');
function read(scope: Record<string, unknown>, path: string[]): unknown {
  let cur: unknown = scope;
  for (const key of path) {
    if (cur === null || cur === undefined) return cur;
    if (typeof cur !== 'object' || Array.isArray(cur)) return DECLINE;
    const proto = Object.getPrototypeOf(cur);
    if (proto !== Object.prototype && proto !== null) return DECLINE;
    cur = Object.hasOwn(cur, key) ? (cur as Record<string, unknown>)[key] : undefined;
  }
  return cur;
}

/**
 * The field's pieces for this scope (one per plan entry), or undefined when liquidjs must render
 * it: a value that is not a string, number, boolean or nil, or more escaped characters than
 * `memoryLimit` (liquidjs's allocation limit, whose error it then raises itself).
 */
export function renderPlan(plan: FieldPlan, scope: Record<string, unknown>, memoryLimit: number): string[] | undefined {
  const pieces: string[] = new Array(plan.length);
  let charged = 0;
  for (let i = 0; i < plan.length; i++) {
    const entry = plan[i]!;
    if (typeof entry === 'string') {
      pieces[i] = entry;
      continue;
    }
    const value = read(scope, entry.path);
    let text: string;
    if (typeof value === 'string') text = value;
    else if (value === null || value === undefined) text = '';
    else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
    else return undefined;
    // liquidjs's default: an empty string, nil or false takes the default (0 does not).
    if (entry.whenEmpty !== null && (text === '' || value === false)) {
      text = entry.whenEmpty;
      if (entry.escape) charged += text.length;
    } else if (entry.escape) {
      charged += text.length;
      text = escapeHtml(text);
    }
    if (charged > memoryLimit) return undefined;
    pieces[i] = text;
  }
  return pieces;
}
