import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp, TimeZone, Uuid } from '../../http/schemas.ts';

export const Channel = Type.Enum(['email', 'sms', 'mobile_push', 'web_push'], { description: 'A messaging channel' });
export type Channel = Static<typeof Channel>;
export const ConsentStatus = Type.Enum(['subscribed', 'unsubscribed', 'pending_confirmation']);
export type ConsentStatus = Static<typeof ConsentStatus>;

const ExternalId = Type.String({ minLength: 1, maxLength: 255, description: 'Your id for the customer; unique in the workspace' });
const Email = Type.String({ format: 'email', maxLength: 320, description: 'Stored lower-cased' });
const Phone = Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$', description: 'E.164, e.g. +33612345678' });
const Locale = Type.String({ pattern: '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$', maxLength: 35, description: 'BCP 47, e.g. fr-FR' });
const Custom = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  maxProperties: 200,
  description: 'Custom fields. On PATCH the object is merged (RFC 7396): a null value removes the field',
});

export const CustomerFields = {
  externalId: Type.Optional(ExternalId),
  email: Type.Optional(Email),
  phone: Type.Optional(Phone),
  timeZone: Type.Optional(TimeZone),
  locale: Type.Optional(Locale),
  custom: Type.Optional(Custom),
};

export const CreateCustomerBody = Type.Object(CustomerFields, { additionalProperties: false });
export type CreateCustomerBody = Static<typeof CreateCustomerBody>;

const nullable = <T extends Parameters<typeof Type.Optional>[0]>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));
export const PatchCustomerBody = Type.Object(
  {
    externalId: nullable(ExternalId),
    email: nullable(Email),
    phone: nullable(Phone),
    timeZone: nullable(TimeZone),
    locale: nullable(Locale),
    custom: Type.Optional(Custom),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type PatchCustomerBody = Static<typeof PatchCustomerBody>;

const CustomerProperties = {
  id: Uuid,
  externalId: Type.Union([Type.String(), Type.Null()]),
  email: Type.Union([Type.String(), Type.Null()]),
  phone: Type.Union([Type.String(), Type.Null()]),
  timeZone: Type.Union([Type.String(), Type.Null()]),
  locale: Type.Union([Type.String(), Type.Null()]),
  custom: Type.Record(Type.String(), Type.Unknown()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
};
export const Customer = Type.Object(CustomerProperties, { $id: 'Customer', additionalProperties: false });
export type Customer = Static<typeof Customer>;

export const ConsentChange = Type.Object(
  { fromStatus: Type.Union([ConsentStatus, Type.Null()]), toStatus: ConsentStatus, source: Type.String(), changedAt: Timestamp },
  { additionalProperties: false },
);
export const Consent = Type.Object(
  {
    channel: Channel,
    status: ConsentStatus,
    source: Type.String(),
    updatedAt: Timestamp,
    history: Type.Array(ConsentChange, { description: 'The latest changes, newest first (at most 20)' }),
  },
  { $id: 'Consent', additionalProperties: false },
);
export type Consent = Static<typeof Consent>;

export const PushSubscription = Type.Object(
  {
    id: Uuid,
    customerId: Uuid,
    kind: Type.Enum(['web_push', 'mobile_push']),
    endpoint: Type.Union([Type.String(), Type.Null()], { description: 'Web push: the push service endpoint' }),
    token: Type.Union([Type.String(), Type.Null()], { description: 'Mobile push: the device token' }),
    platform: Type.Union([Type.String(), Type.Null()]),
    createdAt: Timestamp,
  },
  { $id: 'PushSubscription', additionalProperties: false },
);
export type PushSubscription = Static<typeof PushSubscription>;

export const CustomerDetail = Type.Object(
  { ...CustomerProperties, consents: Type.Array(Consent), pushSubscriptions: Type.Array(PushSubscription) },
  { $id: 'CustomerDetail', additionalProperties: false },
);
export type CustomerDetail = Static<typeof CustomerDetail>;

export const ListCustomersQuery = Type.Object(
  {
    ...PageQuery,
    email: Type.Optional(Type.String({ maxLength: 320 })),
    externalId: Type.Optional(Type.String({ maxLength: 255 })),
    updatedSince: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type ListCustomersQuery = Static<typeof ListCustomersQuery>;

export const ConsentParams = Type.Object({ id: Uuid, channel: Channel }, { additionalProperties: false });
export type ConsentParams = Static<typeof ConsentParams>;

export const PutConsentBody = Type.Object(
  { status: ConsentStatus, source: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Who made the change (default "api")' })) },
  { additionalProperties: false },
);
export type PutConsentBody = Static<typeof PutConsentBody>;

export const CreatePushSubscriptionBody = Type.Union([
  Type.Object(
    {
      kind: Type.Literal('web_push'),
      endpoint: Type.String({ format: 'uri', pattern: '^https://', maxLength: 2048 }),
      keys: Type.Object({ p256dh: Type.String({ minLength: 1, maxLength: 256 }), auth: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
    },
    { additionalProperties: false, title: 'WebPushSubscription' },
  ),
  Type.Object(
    {
      kind: Type.Literal('mobile_push'),
      token: Type.String({ minLength: 1, maxLength: 4096 }),
      platform: Type.Enum(['ios', 'android']),
    },
    { additionalProperties: false, title: 'MobilePushSubscription' },
  ),
]);
export type CreatePushSubscriptionBody = Static<typeof CreatePushSubscriptionBody>;
