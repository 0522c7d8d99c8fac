import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp, TimeZone, Uuid } from '../../http/schemas.ts';
import { Action, ActionRun } from './actions.schemas.ts';

export const ReportQuery = Type.Object(
  {
    conversionEvent: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$', description: 'The event that counts as a conversion (no conversion chart without it)' })),
    conversionWindowHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 2160, default: 72, description: 'How long after a message its conversion counts' })),
    interval: Type.Optional(Type.Enum(['day', 'hour'], { default: 'day' })),
    timeZone: Type.Optional(TimeZone),
  },
  { additionalProperties: false },
);
export type ReportQuery = Static<typeof ReportQuery>;

export const ActionReport = Type.Object(
  {
    action: Type.Unsafe<Static<typeof Action>>(Type.Ref('Action')),
    funnel: Type.Object(
      {
        messages: Type.Integer(),
        byStatus: Type.Record(Type.String(), Type.Integer(), { description: 'Messages per current status' }),
        actionTemplates: Type.Array(Type.Object({ id: Uuid, kind: Type.String(), channel: Type.String({ description: 'An action whose channel was edited has a set per channel it sent on' }), customers: Type.Integer({ description: 'Customers who got it' }) }, { additionalProperties: false })),
        notSent: Type.Record(Type.String(), Type.Integer(), { description: 'Messages not sent, per reason' }),
      },
      { additionalProperties: false },
    ),
    conversion: Type.Union([
      Type.Object(
        {
          event: Type.String(), windowHours: Type.Integer(), interval: Type.String(), timeZone: Type.String(),
          sent: Type.Integer(), converted: Type.Integer(), rate: Type.Number(),
          series: Type.Array(Type.Object({ at: Timestamp, sent: Type.Integer(), converted: Type.Integer() }, { additionalProperties: false }), { description: 'Per day or hour of sending' }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    runs: Type.Array(Type.Unsafe<Static<typeof ActionRun>>(Type.Ref('ActionRun')), { description: 'The latest 100 runs, newest first' }),
  },
  { $id: 'ActionReport', additionalProperties: false },
);
export type ActionReport = Static<typeof ActionReport>;

export const TrackingQuery = Type.Object(
  {
    ...PageQuery,
    columns: Type.Optional(Type.String({
      maxLength: 2000,
      description: 'Comma-separated: messageId, customerId, status, reason, toAddress, createdAt, sentAt, runId; customer fields (email, phone, externalId, timeZone, locale, updatedAt, custom.<path>); and action template kinds (sent, delivered, opened, clicked, unsubscribed, forwarded, bounced, complained, not_sent, failed) for the time each was assigned',
    })),
  },
  { additionalProperties: false },
);
export type TrackingQuery = Static<typeof TrackingQuery>;

export const TrackingPage = Type.Object(
  {
    columns: Type.Array(Type.String()),
    data: Type.Array(Type.Object({ messageId: Uuid, customerId: Uuid, values: Type.Record(Type.String(), Type.Unknown()) }, { additionalProperties: false })),
    nextCursor: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'TrackingPage', additionalProperties: false, description: 'One row per message of the action, by message id' },
);
