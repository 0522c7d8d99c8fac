import { Type, type Static } from 'typebox';
import { Timestamp, TimeZone, Uuid } from '../../http/schemas.ts';

export const ApiKeyScope = Type.Enum(['read', 'write']);

export const ApiKey = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    prefix: Type.String({ description: 'The visible start of the token, to recognise it' }),
    scopes: Type.Array(ApiKeyScope),
    createdAt: Timestamp,
    expiresAt: Type.Union([Timestamp, Type.Null()]),
    revokedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'ApiKey', additionalProperties: false },
);
export type ApiKey = Static<typeof ApiKey>;

export const CreatedApiKey = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    prefix: Type.String(),
    scopes: Type.Array(ApiKeyScope),
    createdAt: Timestamp,
    expiresAt: Type.Union([Timestamp, Type.Null()]),
    revokedAt: Type.Null(),
    token: Type.String({ description: 'The secret token, shown this once: only its hash is stored' }),
  },
  { $id: 'CreatedApiKey', additionalProperties: false },
);
export type CreatedApiKey = Static<typeof CreatedApiKey>;

const Clock = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM, local to the customer' });
const Cap = Type.Object(
  { perDay: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })), perWeek: Type.Optional(Type.Integer({ minimum: 0, maximum: 10000 })) },
  { additionalProperties: false },
);

/** Sending rules of a workspace, applied by the send workers just before each provider call. */
export const WorkspaceSettings = Type.Object(
  {
    quietHours: Type.Optional(
      Type.Object(
        {
          start: Clock,
          end: Clock,
          behavior: Type.Enum(['skip', 'defer'], { description: 'skip: not sent (reason quiet_hours); defer: sent when the window ends' }),
          channels: Type.Optional(Type.Array(Type.Enum(['email', 'sms', 'web_push', 'mobile_push']), { uniqueItems: true, description: 'Default: sms, web_push, mobile_push' })),
        },
        { additionalProperties: false, description: "Hours in the customer's time zone (else the workspace's) when nothing is sent" },
      ),
    ),
    frequencyCaps: Type.Optional(
      Type.Object(
        { email: Type.Optional(Cap), sms: Type.Optional(Cap), web_push: Type.Optional(Cap), mobile_push: Type.Optional(Cap) },
        { additionalProperties: false, description: 'At most this many messages per customer per rolling day / week, per channel' },
      ),
    ),
    defaultSender: Type.Optional(Type.Object({ email: Type.String({ format: 'email', maxLength: 320 }), name: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false })),
    allowPrivateNetworkTargets: Type.Optional(Type.Boolean({ description: 'Let webhooks and provider base URLs reach private and loopback addresses (testing only)' })),
  },
  { additionalProperties: false },
);
export type WorkspaceSettings = Static<typeof WorkspaceSettings>;

export const UpdateWorkspaceBody = Type.Object(
  { name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), timeZone: Type.Optional(TimeZone), settings: Type.Optional(WorkspaceSettings) },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateWorkspaceBody = Static<typeof UpdateWorkspaceBody>;

export const Workspace = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    timeZone: Type.String(),
    settings: WorkspaceSettings,
    createdAt: Timestamp,
    apiKeys: Type.Array(ApiKey, { description: 'Keys of the workspace (never their tokens)' }),
  },
  { $id: 'Workspace', additionalProperties: false },
);
export type Workspace = Static<typeof Workspace>;

export const CreateWorkspaceBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    timeZone: Type.Optional(TimeZone),
    settings: Type.Optional(WorkspaceSettings),
  },
  { additionalProperties: false },
);
export type CreateWorkspaceBody = Static<typeof CreateWorkspaceBody>;

export const CreateApiKeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    scopes: Type.Array(ApiKeyScope, { minItems: 1, uniqueItems: true }),
    expiresAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type CreateApiKeyBody = Static<typeof CreateApiKeyBody>;

export const ApiKeyParams = Type.Object({ id: Uuid, keyId: Uuid }, { additionalProperties: false });
export type ApiKeyParams = Static<typeof ApiKeyParams>;
