// The merge tags that come from the customer's records rather than the customer row:
// `points_balance` (the balance on the newest row of their points ledger, 0 without one) and
// `promo_code` (the newest code issued to them: a flow's promo code step issues it before its
// send steps run; the flow's own is also `event.promo_code`). Read only for templates that use
// them, for a batch of customers at once.
import type { Sql } from 'postgres';

export interface MergeData {
  promo_code?: string;
  points_balance?: number;
}

/** The merge tags of `variables` this module fills. */
export function mergeDataWanted(variables: readonly string[]): { promo: boolean; points: boolean } {
  return { promo: variables.includes('promo_code'), points: variables.includes('points_balance') };
}

/** Per `${workspaceId}/${customerId}`: the merge data asked for. */
export async function loadMergeData(sql: Sql, customers: readonly (readonly [string, string])[], wanted: { promo: boolean; points: boolean }): Promise<Map<string, MergeData>> {
  const out = new Map<string, MergeData>();
  if (!customers.length || (!wanted.promo && !wanted.points)) return out;
  const ws = customers.map((c) => c[0]);
  const ids = customers.map((c) => c[1]);
  const entry = (w: string, c: string) => {
    let d = out.get(`${w}/${c}`);
    if (!d) out.set(`${w}/${c}`, (d = {}));
    return d;
  };
  const [points, promos] = await Promise.all([
    wanted.points
      ? sql<{ workspace_id: string; customer_id: string; balance: string }[]>`
          select distinct on (p.workspace_id, p.customer_id) p.workspace_id, p.customer_id, p.balance from points_ledger p
          join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on p.workspace_id = u.w and p.customer_id = u.id
          order by p.workspace_id, p.customer_id, p.at desc, p.id desc`
      : [],
    wanted.promo
      ? sql<{ workspace_id: string; customer_id: string; code: string }[]>`
          select distinct on (p.workspace_id, p.customer_id) p.workspace_id, p.customer_id, p.code from promo_codes p
          join unnest(${ws}::uuid[], ${ids}::uuid[]) u(w, id) on p.workspace_id = u.w and p.customer_id = u.id
          order by p.workspace_id, p.customer_id, p.issued_at desc nulls last, p.code`
      : [],
  ]);
  if (wanted.points) for (const [w, c] of customers) entry(w, c).points_balance = 0;
  for (const r of points) entry(r.workspace_id, r.customer_id).points_balance = Number(r.balance);
  for (const r of promos) entry(r.workspace_id, r.customer_id).promo_code = r.code;
  return out;
}
