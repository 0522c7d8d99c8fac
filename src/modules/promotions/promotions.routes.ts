// Promo code pools that flow steps draw from: each code goes to one customer only.
import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import type { App } from '../../http/types.ts';

const tags = ['flows'];
const Pool = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,100}$' });
const PoolCounts = Type.Object({ pool: Type.String(), total: Type.Integer(), issued: Type.Integer(), free: Type.Integer() }, { $id: 'PromoPool', additionalProperties: false });

async function counts(deps: Deps, workspaceId: string, pool: string) {
  const [row] = await deps.database.sql<{ total: number; issued: number }[]>`
    select count(*)::int as total, count(customer_id)::int as issued from promo_codes where workspace_id = ${workspaceId} and pool = ${pool}`;
  return { pool, total: row!.total, issued: row!.issued, free: row!.total - row!.issued };
}

export { PoolCounts };

export async function promotionRoutes(app: App, deps: Deps) {
  app.post('/v1/promo-codes', {
    config: { access: 'write' },
    schema: {
      operationId: 'addPromoCodes', tags, summary: 'Add codes to a pool (codes already in it are ignored)',
      body: Type.Object({ pool: Pool, codes: Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { minItems: 1, maxItems: 10000, uniqueItems: true }) }, { additionalProperties: false }),
      response: { 200: Type.Unsafe(Type.Ref('PromoPool')), ...problems(400, 401, 403) },
    },
  }, async (request) => {
    const workspaceId = workspaceOf(request);
    const { pool, codes } = request.body as { pool: string; codes: string[] };
    await deps.database.sql`
      insert into promo_codes (workspace_id, pool, code) select ${workspaceId}::uuid, ${pool}, unnest(${codes}::text[]) on conflict do nothing`;
    return counts(deps, workspaceId, pool);
  });

  app.get('/v1/promo-codes/:pool', {
    config: { access: 'read' },
    schema: {
      operationId: 'getPromoPool', tags, summary: 'How many codes a pool holds, has issued and has left',
      params: Type.Object({ pool: Pool }, { additionalProperties: false }),
      response: { 200: Type.Unsafe(Type.Ref('PromoPool')), ...problems(400, 401, 403) },
    },
  }, async (request) => counts(deps, workspaceOf(request), (request.params as { pool: string }).pool));
}
