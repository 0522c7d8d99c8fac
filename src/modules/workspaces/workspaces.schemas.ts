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

export const Workspace = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    timeZone: Type.String(),
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
