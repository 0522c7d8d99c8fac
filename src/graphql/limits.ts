// What a query may ask for, checked before any resolver runs (validation rules, on HTTP and on
// the WebSocket alike): depth (mercurius's queryDepth), cost, aliases, `first`, introspection.
import { getNamedType, GraphQLError, Kind, NoSchemaIntrospectionCustomRule, type DocumentNode, type FragmentDefinitionNode, type GraphQLNamedType, type GraphQLSchema, type SelectionSetNode, type ValidationRule, type ValueNode } from 'graphql';
import { MAX_FIRST } from '../modules/customers/customers.graphql.ts';

export const MAX_DEPTH = 8;
/**
 * A field costs 1 (or its weight, below); a field with `first` multiplies what it selects by
 * `first` (20 when not given), a list without one by its bound (below).
 */
export const MAX_COST = 25_000;
export const MAX_ALIASES = 30;
const DEFAULT_FIRST = 20;
/** Fields that run a query of their own over many rows when resolved: an audience count, a flow's stats, an action's report. */
const WEIGHTS: Record<string, number> = { 'Segment.count': 500, 'Flow.stats': 500, 'Action.report': 500 };
/** Lists without `first`, by what they can hold: a customer's segments (up to 200 evaluated), a flow's versions, a source's action templates. */
const LIST_BOUNDS: Record<string, number> = { 'Customer.segments': 200, 'Flow.versions': 100, 'Query.actionTemplates': 50 };

type Variables = Record<string, unknown> | undefined | null;

function intOf(value: ValueNode | undefined, variables: Variables, defaults: Map<string, ValueNode>): number | undefined {
  if (!value) return undefined;
  if (value.kind === Kind.INT) return Number(value.value);
  if (value.kind === Kind.VARIABLE) {
    const v = variables?.[value.name.value];
    if (typeof v === 'number') return v;
    // Not given: the variable's default, if it has one (`$n: Int = 100`), else the field's.
    const fallback = defaults.get(value.name.value);
    return fallback?.kind === Kind.INT ? Number(fallback.value) : undefined;
  }
  return undefined;
}

/**
 * The cost of a document, and its aliases and `first` values, with the schema's types for the
 * fields' weights and bounds (a field of another type by the same name costs 1). Fragment cycles
 * count once (the standard rule refuses them).
 */
export function measure(document: DocumentNode, variables: Variables, schema: GraphQLSchema): { cost: number; aliases: number; firsts: number[]; variableFirsts: number } {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const defaults = new Map<string, ValueNode>();
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    for (const v of d.variableDefinitions ?? []) if (v.defaultValue) defaults.set(v.variable.name.value, v.defaultValue);
  }
  let aliases = 0;
  let variableFirsts = 0;
  const firsts: number[] = [];
  const typeNamed = (name: string | undefined) => (name ? schema.getType(name) : undefined);
  const cost = (set: SelectionSetNode | undefined, parent: GraphQLNamedType | undefined | null, stack: string[]): number => {
    if (!set) return 0;
    let total = 0;
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) {
        if (s.alias) aliases++;
        const arg = s.arguments?.find((a) => a.name.value === 'first')?.value;
        if (arg?.kind === Kind.VARIABLE) variableFirsts++;
        const first = intOf(arg, variables, defaults);
        if (first !== undefined) firsts.push(first);
        const key = `${parent?.name ?? ''}.${s.name.value}`;
        const field = parent && 'getFields' in parent ? parent.getFields()[s.name.value] : undefined;
        const times = arg !== undefined ? Math.max(first ?? DEFAULT_FIRST, 1) : s.selectionSet ? (LIST_BOUNDS[key] ?? 1) : 1;
        total += (WEIGHTS[key] ?? 1) + times * cost(s.selectionSet, field ? getNamedType(field.type) : undefined, stack);
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        total += cost(s.selectionSet, s.typeCondition ? typeNamed(s.typeCondition.name.value) : parent, stack);
      } else {
        const name = s.name.value;
        if (stack.includes(name)) continue;
        const fragment = fragments.get(name);
        total += cost(fragment?.selectionSet, typeNamed(fragment?.typeCondition.name.value), [...stack, name]);
      }
      if (total > MAX_COST * 10) return total; // far over the limit: stop counting
    }
    return total;
  };
  let total = 0;
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = d.operation === 'query' ? schema.getQueryType() : d.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
    total += cost(d.selectionSet, root, []);
  }
  return { cost: total, aliases, firsts, variableFirsts };
}

function problems(m: ReturnType<typeof measure>): string[] {
  const out: string[] = [];
  if (m.cost > MAX_COST) out.push(`The query costs ${m.cost}, more than the limit of ${MAX_COST}: ask for fewer items or fields`);
  if (m.aliases > MAX_ALIASES) out.push(`The query uses ${m.aliases} aliases, more than the limit of ${MAX_ALIASES}`);
  const over = m.firsts.find((f) => f < 0 || f > MAX_FIRST);
  if (over !== undefined) out.push(`first must be between 0 and ${MAX_FIRST} (got ${over})`);
  return out;
}

/**
 * The limits again with the variables, for documents whose `first` comes from a variable. The
 * validation rules run once per query text (mercurius caches them) and count such a `first` as
 * its default (the variable's, else 20); this runs before execution, so nothing is resolved
 * either way.
 */
export function variableLimits(document: DocumentNode, variables: Variables, schema: GraphQLSchema): string[] {
  const cached = measured.get(document);
  const m = cached ?? measure(document, undefined, schema);
  if (!cached) measured.set(document, m);
  return m.variableFirsts ? problems(measure(document, variables, schema)) : [];
}
const measured = new WeakMap<DocumentNode, ReturnType<typeof measure>>();

/** Every variable taken at the largest `first` allowed. */
const LARGEST = new Proxy({}, { get: () => MAX_FIRST }) as Record<string, unknown>;

/**
 * The limits of a subscription, whose variables the WebSocket path does not hand to the check:
 * every `first` given by a variable is taken at its largest.
 */
export function subscriptionLimits(document: DocumentNode, schema: GraphQLSchema): string[] {
  return problems(measure(document, LARGEST, schema));
}

const limitRule = (variables: Variables): ValidationRule => (context) => ({
  Document: {
    leave(document) {
      for (const message of problems(measure(document, variables, context.getSchema()))) context.reportError(new GraphQLError(message));
    },
  },
});

export function validationRules(variables: Variables, introspection: boolean): ValidationRule[] {
  return introspection ? [limitRule(variables)] : [limitRule(variables), NoSchemaIntrospectionCustomRule];
}
