// The audience filter tree: one JSON shape for segments, action audiences, flow conditions and
// flow entry filters. Its TypeScript types, and the JSON Schema that documents it in OpenAPI.
// Requests are checked by validate.ts (precise JSON pointers), not by this schema.
import { Type } from 'typebox';

export const UNITS = ['minutes', 'hours', 'days', 'weeks'] as const;
export type Unit = (typeof UNITS)[number];
export interface Duration {
  amount: number;
  unit: Unit;
}

export const VALUE_OPS = [
  'eq', 'neq', 'in', 'notIn', 'contains', 'notContains', 'startsWith', 'exists', 'notExists',
  'gt', 'gte', 'lt', 'lte', 'withinLast', 'withinNext', 'moreThanAgo', 'anniversaryWithinNext',
] as const;
export type ValueOp = (typeof VALUE_OPS)[number];
export type Scalar = string | number | boolean;

/** A test of one value: a customer field, or a property of an event. */
export interface ValueTest {
  op: ValueOp;
  value?: Scalar | Scalar[];
  duration?: Duration;
}
export interface FieldCondition extends ValueTest {
  type: 'field';
  field: string;
}
export interface PropertyCondition extends ValueTest {
  property: string;
}

export const COUNT_OPS = ['gte', 'gt', 'eq', 'lte', 'lt'] as const;
export interface EventCondition {
  type: 'event';
  name: string;
  where?: PropertyCondition[];
  count?: { op: (typeof COUNT_OPS)[number]; value: number };
  within?: Duration;
}

export const ACTION_TEMPLATE_KINDS = ['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed'] as const;
export type ActionTemplateKind = (typeof ACTION_TEMPLATE_KINDS)[number];
export const SOURCE_TYPES = ['action', 'flow', 'test'] as const;
export interface ActionCondition {
  type: 'action';
  actionTemplateId?: string;
  sourceType?: (typeof SOURCE_TYPES)[number];
  sourceId?: string;
  kind?: ActionTemplateKind;
  within?: Duration;
  without?: { kind: ActionTemplateKind; within?: Duration };
}

export const CONSENT_CHANNELS = ['email', 'sms', 'web_push', 'mobile_push'] as const;
export const CONSENT_STATUSES = ['subscribed', 'unsubscribed', 'pending_confirmation'] as const;
export interface ConsentCondition {
  type: 'consent';
  channel: (typeof CONSENT_CHANNELS)[number];
  status: (typeof CONSENT_STATUSES)[number];
}
export interface SegmentCondition {
  type: 'segment';
  segmentId: string;
}

export type Condition = FieldCondition | EventCondition | ActionCondition | ConsentCondition | SegmentCondition;
export type Filter = { all: Filter[] } | { any: Filter[] } | { not: Filter } | Condition;

/** Customer columns a field condition (and a preview column) may name, besides `custom.<path>`. */
export const TEXT_FIELDS = { email: 'email', phone: 'phone', externalId: 'external_id', timeZone: 'time_zone', locale: 'locale' } as const;
export const TIME_FIELDS = { createdAt: 'created_at', updatedAt: 'updated_at' } as const;
export const CUSTOM_PATH = /^custom(\.[A-Za-z0-9_-]{1,64}){1,5}$/;
export const PROPERTY_PATH = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,4}$/;

// ---- the documented JSON Schema (OpenAPI component AudienceFilter) -------------------------------

const DurationDoc = Type.Object(
  { amount: Type.Integer({ minimum: 0, maximum: 100000 }), unit: Type.Enum([...UNITS]) },
  { additionalProperties: false, description: 'A length of time, e.g. { "amount": 30, "unit": "days" }' },
);
const ScalarDoc = Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean()]);
const valueTest = {
  op: Type.Enum([...VALUE_OPS], {
    description:
      'eq/neq/in/notIn compare values (neq and notIn also match a missing value); contains/notContains (a substring, case-insensitive, or an element of a list) and startsWith (case-insensitive) take text; ' +
      'exists/notExists take no value; gt/gte/lt/lte take a number or an ISO date-time; withinLast/withinNext/moreThanAgo take a duration relative to now; ' +
      'anniversaryWithinNext takes a duration in days or weeks and matches a YYYY-MM-DD date whose month and day fall between today and today + duration in the customer\'s time zone (birthdays)',
  }),
  value: Type.Optional(Type.Union([ScalarDoc, Type.Array(ScalarDoc, { maxItems: 1000 })])),
  duration: Type.Optional(DurationDoc),
};

export const AudienceFilter = Type.Unsafe<Filter>({
  $id: 'AudienceFilter',
  title: 'AudienceFilter',
  description:
    'A filter tree over customers: { "all": [...] }, { "any": [...] }, { "not": {...} } or a condition told apart by "type". At most 10 levels deep and 200 nodes. ' +
    'Errors name the JSON pointer of each bad node.',
  anyOf: [
    Type.Object({ all: Type.Array(Type.Ref('AudienceFilter'), { minItems: 1, maxItems: 50 }) }, { additionalProperties: false, title: 'All' }),
    Type.Object({ any: Type.Array(Type.Ref('AudienceFilter'), { minItems: 1, maxItems: 50 }) }, { additionalProperties: false, title: 'Any' }),
    Type.Object({ not: Type.Ref('AudienceFilter') }, { additionalProperties: false, title: 'Not' }),
    Type.Object(
      { type: Type.Literal('field'), field: Type.String({ description: `One of ${[...Object.keys(TEXT_FIELDS), ...Object.keys(TIME_FIELDS)].join(', ')}, or custom.<path> (dots for nested keys)` }), ...valueTest },
      { additionalProperties: false, title: 'FieldCondition' },
    ),
    Type.Object(
      {
        type: Type.Literal('event'),
        name: Type.String({ minLength: 1, maxLength: 200, description: 'The event type' }),
        where: Type.Optional(Type.Array(Type.Object({ property: Type.String({ description: 'A property path (dots for nested keys)' }), ...valueTest }, { additionalProperties: false }), { maxItems: 20 })),
        count: Type.Optional(Type.Object({ op: Type.Enum([...COUNT_OPS]), value: Type.Integer({ minimum: 0, maximum: 1000000 }) }, { additionalProperties: false, description: 'How many such events (default: at least 1)' })),
        within: Type.Optional(Type.Ref('AudienceDuration')),
      },
      { additionalProperties: false, title: 'EventCondition', description: 'Customers with (count op value) events of this type, with these properties, in the last `within`' },
    ),
    Type.Object(
      {
        type: Type.Literal('action'),
        actionTemplateId: Type.Optional(Type.String({ format: 'uuid' })),
        sourceType: Type.Optional(Type.Enum([...SOURCE_TYPES])),
        sourceId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
        kind: Type.Optional(Type.Enum([...ACTION_TEMPLATE_KINDS])),
        within: Type.Optional(Type.Ref('AudienceDuration')),
        without: Type.Optional(
          Type.Object(
            { kind: Type.Enum([...ACTION_TEMPLATE_KINDS]), within: Type.Optional(Type.Ref('AudienceDuration')) },
            { additionalProperties: false, description: 'and that same message did not get this action template (within the duration after the first one, which must have passed)' },
          ),
        ),
      },
      { additionalProperties: false, title: 'ActionCondition', description: 'Customers who got an action template: by actionTemplateId, or by sourceType + sourceId + kind' },
    ),
    Type.Object(
      { type: Type.Literal('consent'), channel: Type.Enum([...CONSENT_CHANNELS]), status: Type.Enum([...CONSENT_STATUSES]) },
      { additionalProperties: false, title: 'ConsentCondition', description: 'Consent on a channel; a customer with no recorded consent counts as subscribed' },
    ),
    Type.Object({ type: Type.Literal('segment'), segmentId: Type.String({ format: 'uuid' }) }, { additionalProperties: false, title: 'SegmentCondition', description: 'Members of a saved segment (no cycles)' }),
  ],
});

export const AudienceDuration = Type.Unsafe<Duration>({ ...DurationDoc, $id: 'AudienceDuration' });

/**
 * The schema a route puts where a filter goes: documented as AudienceFilter, checked by the
 * service (validate.ts) rather than by the route's validator, which would drown a bad node in
 * every branch of the union (see http/validation.ts).
 */
export const FilterField = (description: string) => Type.Unsafe<Filter>({ $ref: 'AudienceFilter', description, 'x-checked-by-service': true });
