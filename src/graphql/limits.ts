// What a query may ask for, checked before any resolver runs (validation rules, on HTTP and on
// the WebSocket alike): depth (mercurius's queryDepth), cost, aliases, `first`, introspection.
import { GraphQLError, Kind, NoSchemaIntrospectionCustomRule, type DocumentNode, type FragmentDefinitionNode, type SelectionSetNode, type ValidationRule, type ValueNode } from 'graphql';
import { MAX_FIRST } from '../modules/customers/customers.graphql.ts';

export const MAX_DEPTH = 8;
/** A field costs 1; a field with `first` multiplies what it selects by `first` (20 when not given). */
export const MAX_COST = 25_000;
export const MAX_ALIASES = 30;
const DEFAULT_FIRST = 20;

type Variables = Record<string, unknown> | undefined | null;

function intOf(value: ValueNode | undefined, variables: Variables): number | undefined {
  if (!value) return undefined;
  if (value.kind === Kind.INT) return Number(value.value);
  if (value.kind === Kind.VARIABLE) {
    const v = variables?.[value.name.value];
    return typeof v === 'number' ? v : undefined;
  }
  return undefined;
}

/** The cost of a document, and its aliases and `first` values. Fragment cycles count once (the standard rule refuses them). */
export function measure(document: DocumentNode, variables: Variables): { cost: number; aliases: number; firsts: number[]; variableFirsts: number } {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  let aliases = 0;
  let variableFirsts = 0;
  const firsts: number[] = [];
  const cost = (set: SelectionSetNode | undefined, stack: string[]): number => {
    if (!set) return 0;
    let total = 0;
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) {
        if (s.alias) aliases++;
        const arg = s.arguments?.find((a) => a.name.value === 'first')?.value;
        if (arg?.kind === Kind.VARIABLE) variableFirsts++;
        const first = intOf(arg, variables);
        if (first !== undefined) firsts.push(first);
        const times = s.arguments?.some((a) => a.name.value === 'first') || first !== undefined ? Math.max(first ?? DEFAULT_FIRST, 1) : 1;
        total += 1 + times * cost(s.selectionSet, stack);
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        total += cost(s.selectionSet, stack);
      } else {
        const name = s.name.value;
        if (stack.includes(name)) continue;
        total += cost(fragments.get(name)?.selectionSet, [...stack, name]);
      }
      if (total > MAX_COST * 10) return total; // far over the limit: stop counting
    }
    return total;
  };
  let total = 0;
  for (const d of document.definitions) if (d.kind === Kind.OPERATION_DEFINITION) total += cost(d.selectionSet, []);
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
 * validation rules run once per query text (mercurius caches them) and count such a `first`
 * as 20; this runs before execution, so nothing is resolved either way.
 */
export function variableLimits(document: DocumentNode, variables: Variables): string[] {
  const cached = measured.get(document);
  const m = cached ?? measure(document, undefined);
  if (!cached) measured.set(document, m);
  return m.variableFirsts ? problems(measure(document, variables)) : [];
}
const measured = new WeakMap<DocumentNode, ReturnType<typeof measure>>();

const limitRule = (variables: Variables): ValidationRule => (context) => ({
  Document: {
    leave(document) {
      for (const message of problems(measure(document, variables))) context.reportError(new GraphQLError(message));
    },
  },
});

export function validationRules(variables: Variables, introspection: boolean): ValidationRule[] {
  return introspection ? [limitRule(variables)] : [limitRule(variables), NoSchemaIntrospectionCustomRule];
}
