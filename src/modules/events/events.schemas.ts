import { Type, type Static } from 'typebox';
import { Timestamp, Uuid } from '../../http/schemas.ts';

export const MAX_BATCH = 1000;

export const EventInput = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Your id for the event: posting it again is a no-op' })),
    customerId: Type.Optional(Uuid),
    externalId: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'An unknown externalId creates the customer' })),
    type: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$', description: 'e.g. registration, order.placed' }),
    properties: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Unknown(), { maxProperties: 500 })),
    occurredAt: Type.Optional(Timestamp),
  },
  { title: 'EventInput', additionalProperties: false, description: 'One event; name the customer by customerId or externalId' },
);
export type EventInput = Static<typeof EventInput>;

export const EventBatch = Type.Object(
  { events: Type.Array(EventInput, { minItems: 1, maxItems: MAX_BATCH }) },
  { additionalProperties: false, title: 'EventBatch' },
);

export const PostEventsBody = Type.Union([EventInput, EventBatch]);
export type PostEventsBody = Static<typeof PostEventsBody>;

export const EventStatus = Type.Enum(['created', 'duplicate']);

export const IngestResult = Type.Object(
  {
    accepted: Type.Integer({ description: 'Events stored by this request' }),
    duplicates: Type.Integer({ description: 'Events whose id was already stored' }),
    events: Type.Array(
      Type.Object({ id: Uuid, clientId: Type.Union([Type.String(), Type.Null()]), customerId: Uuid, status: EventStatus }, { additionalProperties: false }),
      { description: 'In the order posted' },
    ),
  },
  { $id: 'IngestResult', additionalProperties: false },
);
export type IngestResult = Static<typeof IngestResult>;

export const Event = Type.Object(
  {
    id: Uuid,
    clientId: Type.Union([Type.String(), Type.Null()]),
    customerId: Uuid,
    type: Type.String(),
    properties: Type.Record(Type.String(), Type.Unknown()),
    occurredAt: Timestamp,
    receivedAt: Timestamp,
  },
  { $id: 'Event', additionalProperties: false },
);
export type Event = Static<typeof Event>;
