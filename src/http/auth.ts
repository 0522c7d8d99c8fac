// Bearer authentication for /v1: the operator's root token, or a workspace API key with scopes.
// Keys are looked up by the SHA-256 of the token and cached briefly; a revocation is broadcast
// with NOTIFY so that every process drops the key at once (the runtime listens for it).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Database } from '../db/client.ts';
import { forbidden, unauthorized } from './errors.ts';
import { findKeyByHash } from '../modules/workspaces/workspaces.service.ts';

export const Scope = { read: 'read', write: 'write' } as const;
export type Scope = (typeof Scope)[keyof typeof Scope];

export type Principal =
  | { kind: 'root' }
  | { kind: 'key'; workspaceId: string; keyId: string; scopes: string[] };

/** What a route needs: the root token, a workspace key (scope read or write), or either. */
export type Access = 'root' | 'root-or-workspace' | Scope | 'public';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Drops a key from this process's cache (other processes hear it through NOTIFY). */
    forgetApiKey(keyId: string): void;
    /** Drops every cached key: revocations may have been missed (the listener was reconnecting). */
    forgetApiKeys(): void;
    /** Calls `listener` when a key is dropped (its id), or every key (null): long-lived connections authorised by a key (GraphQL subscriptions) check it again. */
    onApiKeyForgotten(listener: (keyId: string | null) => void): void;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
}

interface CachedKey {
  workspaceId: string;
  keyId: string;
  scopes: string[];
  expiresAt: Date | null;
  cachedAt: number;
}

const CACHE_MS = 30_000;

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export const authPlugin = fp(
  async (app: FastifyInstance, opts: { database: Database; rootToken: string; now: () => Date }) => {
    const rootDigest = createHash('sha256').update(opts.rootToken).digest();
    const cache = new Map<string, CachedKey>();
    const listeners = new Set<(keyId: string | null) => void>();
    const forget = (keyId: string) => {
      for (const [hash, entry] of cache) if (entry.keyId === keyId) cache.delete(hash);
      for (const l of listeners) l(keyId);
    };
    app.decorate('forgetApiKey', forget);
    app.decorate('forgetApiKeys', () => {
      cache.clear();
      for (const l of listeners) l(null);
    });
    app.decorate('onApiKeyForgotten', (listener: (keyId: string | null) => void) => {
      listeners.add(listener);
    });

    async function resolve(token: string): Promise<Principal | null> {
      const digest = createHash('sha256').update(token).digest();
      if (timingSafeEqual(digest, rootDigest)) return { kind: 'root' };
      const hash = digest.toString('hex');
      let entry = cache.get(hash);
      if (!entry || Date.now() - entry.cachedAt > CACHE_MS) {
        const row = await findKeyByHash(opts.database.db, hash);
        if (!row) {
          cache.delete(hash);
          return null;
        }
        entry = { workspaceId: row.workspaceId, keyId: row.id, scopes: row.scopes, expiresAt: row.expiresAt, cachedAt: Date.now() };
        if (cache.size > 10_000) cache.clear();
        cache.set(hash, entry);
      }
      if (entry.expiresAt && entry.expiresAt <= opts.now()) return null;
      return { kind: 'key', workspaceId: entry.workspaceId, keyId: entry.keyId, scopes: entry.scopes };
    }

    app.decorateRequest('principal', null);
    app.addHook('onRequest', async (request) => {
      // mercurius's routes carry no config: GraphQL reads need a key with the read scope.
      const access = request.routeOptions.config.access ?? (request.routeOptions.url === '/graphql' ? 'read' : undefined);
      if (!access || access === 'public') return;
      const header = request.headers.authorization;
      const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!match?.[1]) throw unauthorized('Send Authorization: Bearer <token>');
      const principal = await resolve(match[1]);
      if (!principal) throw unauthorized('The token is unknown, expired or revoked');
      request.principal = principal;
      if (access === 'root' && principal.kind !== 'root') throw forbidden('Only the root token may do this');
      if ((access === 'read' || access === 'write') && principal.kind !== 'key') {
        throw forbidden('The root token manages workspaces; use a workspace API key for workspace data');
      }
      if ((access === 'read' || access === 'write') && principal.kind === 'key' && !principal.scopes.includes(access)) {
        throw forbidden(`This API key lacks the "${access}" scope`);
      }
    });
  },
  { name: 'herald-auth', dependencies: ['herald-problem'] },
);

/** The workspace of the calling key; routes with access read/write always have one. */
export function workspaceOf(request: FastifyRequest): string {
  const p = request.principal;
  if (p?.kind !== 'key') throw forbidden('A workspace API key is required');
  return p.workspaceId;
}
