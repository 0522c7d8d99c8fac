import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp, Uuid } from '../../http/schemas.ts';

export const MessageStatusSchema = Type.Enum(['queued', 'sending', 'sent', 'unknown', 'delivered', 'bounced', 'opened', 'clicked', 'complained', 'unsubscribed', 'not_sent', 'failed']);

export const Message = Type.Object(
  {
    id: Uuid,
    customerId: Uuid,
    channel: Type.String(),
    channelConfigId: Uuid,
    templateId: Uuid,
    templateVersion: Type.Integer(),
    source: Type.Object({ type: Type.String(), id: Type.String(), stepId: Type.String(), entryId: Type.String() }, { additionalProperties: false }),
    status: MessageStatusSchema,
    reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it was not sent, failed, or is unknown' }),
    toAddress: Type.Union([Type.String(), Type.Null()]),
    providerMessageId: Type.Union([Type.String(), Type.Null()]),
    attempts: Type.Integer(),
    rendered: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()], { description: 'The personalised content as sent ("view"): for an email, subject, from, replyTo, preheader, html, text and links (the original URLs, by tracked link index). An html that can no longer be rebuilt from its template version (stored as its merge-tag values) is left out and `htmlUnavailable` says why.' }),
    createdAt: Timestamp,
    sentAt: Type.Union([Timestamp, Type.Null()]),
    updatedAt: Timestamp,
    events: Type.Array(Type.Object({ kind: Type.String(), occurredAt: Timestamp, data: Type.Record(Type.String(), Type.Unknown()) }, { additionalProperties: false })),
  },
  { $id: 'Message', additionalProperties: false },
);
export type Message = Static<typeof Message>;

export const ActionTemplate = Type.Object(
  {
    id: Uuid,
    sourceType: Type.String(),
    sourceId: Type.String(),
    stepId: Type.String({ description: "A flow's send step (`node/index`, the messages' `source.stepId`): each send step of a flow has its own set, for its channel. Empty for actions." }),
    kind: Type.String({ description: 'sent, delivered, opened, clicked, unsubscribed, forwarded, bounced, complained, not_sent, failed' }),
    channel: Type.String(),
    customers: Type.Integer({ description: 'Customers assigned this action template' }),
    createdAt: Timestamp,
  },
  { $id: 'ActionTemplate', additionalProperties: false },
);
export type ActionTemplate = Static<typeof ActionTemplate>;

export const ListActionTemplatesQuery = Type.Object({ sourceType: Type.String({ minLength: 1, maxLength: 50 }), sourceId: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
export type ListActionTemplatesQuery = Static<typeof ListActionTemplatesQuery>;

export const ActionTemplateCustomer = Type.Object(
  {
    customerId: Uuid,
    externalId: Type.Union([Type.String(), Type.Null()]),
    email: Type.Union([Type.String(), Type.Null()]),
    messageId: Uuid,
    occurredAt: Timestamp,
    touchpoint: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

export const TimelineEntry = Type.Object(
  {
    kind: Type.Enum(['event', 'message', 'action', 'flow']),
    id: Uuid,
    at: Timestamp,
    data: Type.Record(Type.String(), Type.Unknown(), {
      description: 'event: {type, properties}; message: {channel, status, reason, source, templateId, templateVersion, toAddress, sentAt}; action: {kind, messageId, sourceType, sourceId, touchpoint}; flow: {flowId, version, entryId, nodeId, nodeType, branch, reason} (a decision of the flow engine)',
    }),
  },
  { $id: 'TimelineEntry', additionalProperties: false },
);
export type TimelineEntry = Static<typeof TimelineEntry>;
export const TimelineQuery = Type.Object({ ...PageQuery, kinds: Type.Optional(Type.String({ pattern: '^(event|message|action|flow)(,(event|message|action|flow))*$', description: 'Comma-separated kinds to include' })) }, { additionalProperties: false });
export type TimelineQuery = Static<typeof TimelineQuery>;

export const TestSendBody = Type.Object(
  {
    channelConfigId: Type.Optional(Type.String({ format: 'uuid', description: 'Omitted: the default config of the template\'s channel' })),
    to: Type.String({ minLength: 1, maxLength: 2048, description: 'An email address, a phone number, a device token, or a web-push endpoint' }),
    keys: Type.Optional(Type.Object({ p256dh: Type.String(), auth: Type.String() }, { additionalProperties: false, description: 'Web push: the subscription keys' })),
    customerId: Type.Optional(Uuid),
    sample: Type.Optional(Type.Object({ customer: Type.Optional(Type.Record(Type.String(), Type.Unknown())), event: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }, { additionalProperties: false })),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);
export type TestSendBody = Static<typeof TestSendBody>;

export const TestSendResult = Type.Object(
  {
    messageId: Type.Union([Uuid, Type.Null()], { description: 'The message recorded for the customer (source type "test"); null for sample data, which is sent untracked' }),
    outcome: Type.Enum(['sent', 'rejected', 'retry', 'unknown', 'gone', 'unsubscribed']),
    providerMessageId: Type.Union([Type.String(), Type.Null()]),
    reason: Type.Union([Type.String(), Type.Null()]),
    rendered: Type.Record(Type.String(), Type.Unknown()),
  },
  { $id: 'TestSendResult', additionalProperties: false },
);
export type TestSendResult = Static<typeof TestSendResult>;
