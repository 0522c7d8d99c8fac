// Liveness, readiness and Prometheus metrics. These need no token and are not rate limited.
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { PgBoss } from 'pg-boss';
import { Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { Type } from 'typebox';
import type { Database } from '../db/client.ts';
import { problems } from '../http/problem.ts';
import { unavailable } from '../http/errors.ts';

export interface OpsOptions {
  database: Database;
  boss: PgBoss;
  queues: string[];
  /** Whether the queue has started (set by the app once pg-boss is up). */
  queueReady: () => boolean;
}

// fastify-plugin: the latency hook must see every route of the app, not only these.
export const opsRoutes = fp(async function opsRoutes(app: FastifyInstance, opts: OpsOptions) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'herald_' });
  const http = new Histogram({
    name: 'herald_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  new Gauge({
    name: 'herald_queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const queues = await opts.boss.getQueues(opts.queues).catch(() => []);
      for (const q of queues) {
        this.set({ queue: q.name, state: 'ready' }, q.readyCount);
        this.set({ queue: q.name, state: 'deferred' }, q.deferredCount);
        this.set({ queue: q.name, state: 'active' }, q.activeCount);
        this.set({ queue: q.name, state: 'failed' }, q.failedCount);
      }
    },
  });
  new Gauge({
    name: 'herald_db_connections',
    help: 'Connections of Herald processes to the database, by process kind and state (from pg_stat_activity)',
    labelNames: ['application', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const rows = await opts.database.sql<{ application_name: string; state: string | null; n: number }[]>`
        select application_name, state, count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name like 'herald%' group by 1, 2`.catch(() => []);
      for (const r of rows) this.set({ application: r.application_name, state: r.state ?? 'unknown' }, r.n);
    },
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    http.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  const Status = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) }, { additionalProperties: false });
  const common = { config: { access: 'public' as const, rateLimit: false as const } };

  app.get('/healthz', { ...common, schema: { operationId: 'healthz', tags: ['operations'], summary: 'Liveness: the process answers', response: { 200: Status } } }, async () => ({ status: 'ok' }));

  app.get('/readyz', {
    ...common,
    schema: { operationId: 'readyz', tags: ['operations'], summary: 'Readiness: the database and the job queue answer', response: { 200: Status, ...problems(503) } },
  }, async () => {
    try {
      await Promise.race([opts.database.sql`select 1`, new Promise((_, fail) => setTimeout(() => fail(new Error('timeout')), 2000).unref())]);
    } catch {
      throw unavailable('The database does not answer');
    }
    if (!opts.queueReady()) throw unavailable('The job queue is not started');
    return { status: 'ready', checks: { database: 'ok', queue: 'ok' } };
  });

  app.get('/metrics', {
    ...common,
    schema: { operationId: 'metrics', tags: ['operations'], summary: 'Prometheus metrics', produces: ['text/plain'], response: { 200: Type.String({ description: 'Prometheus text format' }) } },
  }, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}, { name: 'herald-ops' });
