import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp, Uuid } from '../../http/schemas.ts';

export const Provider = Type.Enum(['sendgrid', 'twilio', 'web_push', 'fcm', 'webhook', 'sandbox'], {
  description: 'sendgrid (email), twilio (sms), web_push (VAPID), fcm (mobile push, HTTP v1), webhook (the "Web API" channel), sandbox (records, sends nothing)',
});
export type Provider = Static<typeof Provider>;
export const Channel = Type.Enum(['email', 'sms', 'web_push', 'mobile_push', 'webhook']);
export type Channel = Static<typeof Channel>;

export const PROVIDER_CHANNEL: Record<Exclude<Provider, 'sandbox'>, Channel> = { sendgrid: 'email', twilio: 'sms', web_push: 'web_push', fcm: 'mobile_push', webhook: 'webhook' };

const BaseUrl = Type.String({ format: 'uri', pattern: '^https?://', maxLength: 500, description: 'Override of the provider API base URL (for a proxy or a local mock)' });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const DEFAULT_MEANS = 'The channel\'s default config: used by actions, flow send steps and test sends that name no channelConfigId. ';
const IsDefault = Type.Boolean({ description: `${DEFAULT_MEANS}true takes it from the channel's previous default. Omitted: true when the channel has no default yet` });
const SetDefault = Type.Boolean({ description: `${DEFAULT_MEANS}true takes it from the channel's previous default; false leaves the channel without one. Omitted: unchanged` });

/** Settings (kept in clear, returned) and secrets (sealed, never returned) per provider. */
export const ProviderSchemas = {
  sendgrid: {
    settings: Type.Object(
      {
        fromEmail: Type.String({ format: 'email', maxLength: 320 }),
        fromName: Type.Optional(Type.String({ maxLength: 200 })),
        replyTo: Type.Optional(Type.String({ format: 'email', maxLength: 320 })),
        apiBaseUrl: Type.Optional(BaseUrl),
        eventWebhookPublicKey: Type.Optional(Type.String({ maxLength: 500, description: 'The Event Webhook verification key (base64 DER) from SendGrid' })),
      },
      { additionalProperties: false },
    ),
    secrets: Type.Object({ apiKey: Type.String({ minLength: 1, maxLength: 500 }) }, { additionalProperties: false }),
  },
  twilio: {
    settings: Type.Object(
      { accountSid: Type.String({ pattern: '^AC[0-9a-fA-F]{32}$' }), from: Type.String({ minLength: 1, maxLength: 50, description: 'E.164 number or sender id' }), apiBaseUrl: Type.Optional(BaseUrl) },
      { additionalProperties: false },
    ),
    secrets: Type.Object({ authToken: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
  },
  web_push: {
    settings: Type.Object(
      {
        subject: Type.String({ pattern: '^(mailto:|https://)', maxLength: 300, description: 'VAPID subject: mailto: or https: contact' }),
        vapidPublicKey: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{80,100}$', description: 'Generated with the private key when both are omitted' })),
      },
      { additionalProperties: false },
    ),
    secrets: Type.Object({ vapidPrivateKey: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{40,50}$' })) }, { additionalProperties: false }),
  },
  fcm: {
    settings: Type.Object({ projectId: Type.String({ pattern: '^[a-z][a-z0-9-]{3,62}$' }), apiBaseUrl: Type.Optional(BaseUrl) }, { additionalProperties: false }),
    secrets: Type.Object({ accessToken: Type.String({ minLength: 1, maxLength: 4000, description: 'An OAuth 2 access token for the FCM HTTP v1 API' }) }, { additionalProperties: false }),
  },
  webhook: {
    settings: Type.Object({}, { additionalProperties: false }),
    secrets: Type.Object({ signingSecret: Type.Optional(Type.String({ pattern: '^whsec_[A-Za-z0-9+/=]{24,200}$', description: 'Standard Webhooks secret; generated when omitted' })) }, { additionalProperties: false }),
  },
  sandbox: {
    settings: Type.Object(
      { fromEmail: Type.Optional(Type.String({ format: 'email', maxLength: 320 })), fromName: Type.Optional(Type.String({ maxLength: 200 })) },
      { additionalProperties: false, description: 'An email sandbox may name a sender, like a real email config' },
    ),
    secrets: Type.Object({}, { additionalProperties: false }),
  },
} as const;

const createVariant = <P extends Provider>(provider: P) =>
  Type.Object(
    {
      name: Name,
      provider: Type.Literal(provider),
      ...(provider === 'sandbox' ? { channel: Channel } : {}),
      settings: provider === 'webhook' || provider === 'sandbox' ? Type.Optional(ProviderSchemas[provider].settings) : ProviderSchemas[provider].settings,
      secrets: ['web_push', 'webhook', 'sandbox'].includes(provider) ? Type.Optional(ProviderSchemas[provider].secrets) : ProviderSchemas[provider].secrets,
      isDefault: Type.Optional(IsDefault),
    },
    { additionalProperties: false, title: `Create${provider}Config` },
  );

export const CreateChannelConfigBody = Type.Union((['sendgrid', 'twilio', 'web_push', 'fcm', 'webhook', 'sandbox'] as const).map(createVariant));
export interface CreateChannelConfigBody {
  name: string;
  provider: Provider;
  channel?: Channel;
  settings?: Record<string, unknown>;
  secrets?: Record<string, string>;
  isDefault?: boolean;
}

export const UpdateChannelConfigBody = Type.Object(
  {
    name: Type.Optional(Name),
    settings: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'The whole new settings of the provider' })),
    secrets: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Secrets to replace; those not named are kept' })),
    isDefault: Type.Optional(SetDefault),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateChannelConfigBody = Static<typeof UpdateChannelConfigBody>;

export const ChannelConfig = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    provider: Provider,
    channel: Channel,
    settings: Type.Record(Type.String(), Type.Unknown()),
    secretsSet: Type.Array(Type.String(), { description: 'Names of the secrets that are set; their values are never returned' }),
    isDefault: Type.Boolean({ description: 'The channel\'s default config (used where no channelConfigId is given)' }),
    generatedSecrets: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Secrets Herald generated (a webhook signing secret), shown in this answer only' })),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'ChannelConfig', additionalProperties: false },
);
export type ChannelConfig = Static<typeof ChannelConfig>;

export const ListChannelConfigsQuery = Type.Object({ ...PageQuery, channel: Type.Optional(Channel) }, { additionalProperties: false });
export type ListChannelConfigsQuery = Static<typeof ListChannelConfigsQuery>;
