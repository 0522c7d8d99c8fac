// Idempotency-Key on POST (API.md): the first answer is kept for 24 hours; the same key with the
// same request replays it, with another request it is a 422, and while the first is still being
// answered a retry gets 409. 5xx and 429 answers are not kept, so a retry runs again.
import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { and, eq, isNull, lt } from 'drizzle-orm';
import { idempotencyKeys } from '../db/schema/index.ts';
import type { Deps } from '../deps.ts';
import type { JobDefinition } from '../jobs/queue.ts';
import { conflict, invalid, unprocessable } from './errors.ts';

const TTL_MS = 24 * 3600_000;
/** A first request that has not answered after this long is presumed dead; its key is taken over. */
const IN_FLIGHT_LEASE_MS = 60_000;
const NIL_WORKSPACE = '00000000-0000-0000-0000-000000000000';

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: { workspaceId: string; key: string } | null;
  }
  interface FastifyContextConfig {
    /** false for routes whose body is a stream (it cannot be hashed before it is read). */
    idempotent?: boolean;
  }
}

export const idempotencyPlugin = fp(
  async (app: FastifyInstance, opts: { deps: Pick<Deps, 'db' | 'clock'> }) => {
    const { db, clock } = opts.deps;
    app.decorateRequest('idempotency', null);

    app.addHook('preHandler', async (request, reply) => {
      const key = request.headers['idempotency-key'];
      if (request.method !== 'POST' || key === undefined || !request.principal || request.routeOptions.config.idempotent === false) return;
      if (typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key)) {
        throw invalid('Idempotency-Key must be 1 to 255 visible ASCII characters', [{ pointer: '/headers/idempotency-key', detail: 'is malformed' }]);
      }
      const workspaceId = request.principal.kind === 'key' ? request.principal.workspaceId : NIL_WORKSPACE;
      const route = `${request.method} ${request.url}`;
      const requestHash = createHash('sha256').update(JSON.stringify(request.body ?? null)).digest('hex');
      const now = clock.now();
      const where = and(eq(idempotencyKeys.workspaceId, workspaceId), eq(idempotencyKeys.key, key));

      for (let attempt = 0; attempt < 2; attempt++) {
        const claimed = await db.insert(idempotencyKeys).values({ workspaceId, key, route, requestHash, createdAt: now }).onConflictDoNothing().returning({ key: idempotencyKeys.key });
        if (claimed.length) {
          request.idempotency = { workspaceId, key };
          return;
        }
        const [prior] = await db.select().from(idempotencyKeys).where(where);
        if (!prior) continue; // deleted in between: claim again
        if (now.getTime() - prior.createdAt.getTime() > TTL_MS) {
          await db.delete(idempotencyKeys).where(and(where, eq(idempotencyKeys.createdAt, prior.createdAt)));
          continue;
        }
        if (prior.route !== route || prior.requestHash !== requestHash) {
          throw unprocessable('This Idempotency-Key was already used with a different request', [{ pointer: '/headers/idempotency-key', detail: 'reused with another body or route' }]);
        }
        if (prior.statusCode === null) {
          if (now.getTime() - prior.createdAt.getTime() < IN_FLIGHT_LEASE_MS) throw conflict('A request with this Idempotency-Key is still being answered');
          const taken = await db.update(idempotencyKeys).set({ createdAt: now }).where(and(where, isNull(idempotencyKeys.statusCode), eq(idempotencyKeys.createdAt, prior.createdAt))).returning({ key: idempotencyKeys.key });
          if (!taken.length) throw conflict('A request with this Idempotency-Key is still being answered');
          request.idempotency = { workspaceId, key };
          return;
        }
        reply.header('idempotent-replayed', 'true').code(prior.statusCode);
        if (prior.contentType) reply.type(prior.contentType);
        return reply.send(prior.responseBody ?? '');
      }
      throw conflict('The Idempotency-Key is contended; retry');
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const held = request.idempotency;
      if (!held) return payload;
      request.idempotency = null;
      const where = and(eq(idempotencyKeys.workspaceId, held.workspaceId), eq(idempotencyKeys.key, held.key));
      if (reply.statusCode >= 500 || reply.statusCode === 429 || (payload !== null && payload !== undefined && typeof payload !== 'string')) {
        await db.delete(idempotencyKeys).where(where);
      } else {
        const contentType = reply.getHeader('content-type');
        await db
          .update(idempotencyKeys)
          .set({ statusCode: reply.statusCode, contentType: typeof contentType === 'string' ? contentType : null, responseBody: (payload as string | undefined) ?? '' })
          .where(where);
      }
      return payload;
    });
  },
  { name: 'herald-idempotency', dependencies: ['herald-auth'] },
);

export const idempotencyCleanupJob: JobDefinition = {
  name: 'idempotency-cleanup',
  queue: { retryLimit: 1, expireInSeconds: 300 },
  cron: '17 * * * *',
  handler: async (deps) => {
    await deps.db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, new Date(deps.clock.now().getTime() - TTL_MS)));
  },
};
