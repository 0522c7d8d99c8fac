// The flow graph (API.md): { nodes: [{ id, type, ... }], edges: [{ from, to, branch? }] }.
// TypeBox schemas for each node type (documentation and route validation) and their types.
import { Type, type Static } from 'typebox';
import { FilterField } from '../../audience/filter.ts';
import { TimeZone, Uuid } from '../../http/schemas.ts';
import { Channel } from '../channels/channels.schemas.ts';

/** Refused above this many nodes (the seed's stable interface holds 150; the engine is tested at 1000). */
export const MAX_NODES = 1000;

const NodeId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Chosen by the client, stable across versions' });
const Duration = Type.Object(
  { amount: Type.Integer({ minimum: 0, maximum: 100000 }), unit: Type.Enum(['minutes', 'hours', 'days']) },
  { additionalProperties: false },
);
const PropertyFilters = Type.Array(Type.Record(Type.String(), Type.Unknown()), { maxItems: 20, description: 'Property conditions { property, op, value } as in AudienceFilter event conditions' });
const node = <T extends string, P extends Parameters<typeof Type.Object>[0]>(type: T, props: P, description: string) =>
  Type.Object({ id: NodeId, type: Type.Literal(type), name: Type.Optional(Type.String({ maxLength: 200 })), ...props }, { additionalProperties: false, title: `${type}Node`, description });

export const EventTriggerNode = node('event_trigger', {
  eventType: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$' }),
  where: Type.Optional(PropertyFilters),
  customer: Type.Optional(FilterField('Only customers who match (the audience compiler)')),
}, 'Enter when an event of this type arrives');
export const ScheduleTriggerNode = node('schedule_trigger', {
  audience: FilterField('Who enters'),
  schedule: Type.Union([Type.Object({ at: Type.String({ format: 'date-time' }) }, { additionalProperties: false }), Type.Object({ cron: Type.String({ maxLength: 100 }), timeZone: TimeZone }, { additionalProperties: false })]),
}, 'Enter the customers of an audience at a time, once or on a recurring schedule');
export const ConditionNode = node('condition', { filter: FilterField('yes when the customer matches') }, 'Branches yes / no, evaluated for the whole batch in one query');

export const Step = Type.Union([
  Type.Object({ type: Type.Literal('send'), channel: Channel, channelConfigId: Type.Optional(Type.String({ format: 'uuid', description: 'Omitted: the channel\'s default config, written into the version when it is launched' })), templateId: Uuid, cost: Type.Optional(Type.Number({ minimum: 0, description: 'Cost of one message, for budgets and the dry run' })) }, { additionalProperties: false, title: 'SendStep' }),
  Type.Object({ type: Type.Literal('update_fields'), set: Type.Record(Type.String(), Type.Unknown(), { description: 'Custom fields to merge (RFC 7396: null removes)' }) }, { additionalProperties: false, title: 'UpdateFieldsStep' }),
  Type.Object({ type: Type.Literal('consent'), channel: Type.Enum(['email', 'sms', 'web_push', 'mobile_push']), status: Type.Enum(['subscribed', 'unsubscribed']) }, { additionalProperties: false, title: 'ConsentStep' }),
  Type.Object({ type: Type.Literal('points'), delta: Type.Integer({ minimum: -1000000000, maximum: 1000000000 }), allowNegative: Type.Optional(Type.Boolean({ default: false })), reason: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false, title: 'PointsStep' }),
  Type.Object({ type: Type.Literal('promo_code'), pool: Type.String({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false, title: 'PromoCodeStep' }),
]);
export type Step = Static<typeof Step>;
export const StepsNode = node('steps', { steps: Type.Array(Step, { maxItems: 20 }) }, 'A group of steps run together: running it is a "launch" of the flow for the customer');

export const SplitterNode = node('splitter', {
  mode: Type.Enum(['percent', 'conditions']),
  branches: Type.Array(
    Type.Object({ key: Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' }), percent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })), filter: Type.Optional(FilterField('conditions mode: the first branch that matches')) }, { additionalProperties: false }),
    { minItems: 1, maxItems: 20 },
  ),
  otherwise: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$', description: 'conditions mode: the branch of those who match none' })),
}, 'Route by percentages (deterministic per customer) or by the first matching condition');

export const WaitNode = node('wait', {
  mode: Type.Enum(['fixed', 'dynamic', 'timed', 'event']),
  duration: Type.Optional(Duration),
  source: Type.Optional(Type.Enum(['customer', 'event'], { description: 'dynamic: the date is a customer field or a property of the triggering event' })),
  field: Type.Optional(Type.String({ maxLength: 200, description: 'dynamic: custom.<path> or createdAt for customers, a property path for events' })),
  offset: Type.Optional(Type.Object({ amount: Type.Integer({ minimum: -100000, maximum: 100000 }), unit: Type.Enum(['minutes', 'hours', 'days']) }, { additionalProperties: false })),
  days: Type.Optional(Type.Array(Type.Enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']), { maxItems: 7, description: 'timed: weekdays to leave on' })),
  from: Type.Optional(Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$', description: 'timed: leave from (local time)' })),
  to: Type.Optional(Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$|^24:00$', description: 'timed: leave before (local time)' })),
  eventType: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$', description: 'event: the event to wait for' })),
  where: Type.Optional(PropertyFilters),
  timeout: Type.Optional(Duration),
}, 'fixed delay; dynamic delay (a date on the customer or the event, with an offset); timed delay (leave only within hours on weekdays, in the customer\'s time zone); wait for an event with a timeout (branches event / timeout)');

export const AbTestNode = node('ab_test', {
  variants: Type.Array(Type.Object({ key: Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' }), share: Type.Number({ exclusiveMinimum: 0, maximum: 100 }) }, { additionalProperties: false }), { minItems: 1, maxItems: 10 }),
  control: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Share held back (branch control); variants and control add up to 100' })),
}, 'Variants with shares and an optional control group, deterministic per customer');

export const LimitationNode = node('limitation', {
  limit: Type.Union([
    Type.Object({ kind: Type.Literal('budget'), total: Type.Number({ exclusiveMinimum: 0 }), costPerCustomer: Type.Number({ exclusiveMinimum: 0, description: 'What each customer who passes costs (a paid message)' }) }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('customers'), max: Type.Integer({ minimum: 1 }), period: Duration }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('promotions'), total: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
  ]),
}, 'A cap shared by all customers of the flow; those over it take the overflow branch');

export const ExitNode = node('exit', {}, 'The end');

export const FlowNode = Type.Union([EventTriggerNode, ScheduleTriggerNode, ConditionNode, StepsNode, SplitterNode, WaitNode, AbTestNode, LimitationNode, ExitNode]);
export type FlowNode = Static<typeof FlowNode>;
export type NodeOf<T extends FlowNode['type']> = Extract<FlowNode, { type: T }>;

export const FlowEdge = Type.Object(
  { from: NodeId, to: NodeId, branch: Type.Optional(Type.String({ maxLength: 40, description: 'yes/no, a variant or branch key, event/timeout, overflow' })) },
  { additionalProperties: false },
);
export type FlowEdge = Static<typeof FlowEdge>;

export const FlowGraph = Type.Object(
  { nodes: Type.Array(FlowNode, { maxItems: 10000 }), edges: Type.Array(FlowEdge, { maxItems: 20000 }) },
  { $id: 'FlowGraph', additionalProperties: false, description: `At most ${MAX_NODES} nodes` },
);
export type FlowGraph = Static<typeof FlowGraph>;

/** What a customer at a node is held to: its type, for a trigger its event, for a wait its mode and awaited event. */
export function nodeKind(n: FlowGraph['nodes'][number]): string {
  if (n.type === 'wait') return `wait/${n.mode}/${n.mode === 'event' ? (n.eventType ?? '') : ''}`;
  if (n.type === 'event_trigger') return `event_trigger/${n.eventType}`;
  return n.type;
}
