// The data of bench:audience, generated in SQL (generate_series) inside the bench database, into
// the migrated schema: one workspace with
//   - BENCH_CUSTOMERS customers (1,000,000), created over the last two years, with custom fields
//     (plan in five values, gold 8%; birthday; tier: "new" for the last BENCH_TICK_CUSTOMERS
//     created, the ones a triggered action's tick finds, "vip" or "regular" for the others;
//     first name, city);
//   - BENCH_EVENTS events (10,000,000) over the last year, in time order: page.viewed 45%,
//     product.viewed 25%, cart.updated 12%, session.started 8% from anyone, order.placed 10% from
//     one customer in ten (the buyers), so that "2+ orders in the last 30 days" matches ~2%;
//   - BENCH_ACTIONS action-template records (customer_actions, 5,000,000) for the messages of ten
//     email actions (3,000,000 messages over the last 180 days, 300,000 per action, to 200,000
//     customers each, half of whom got two): every message `sent`, 40% `opened` (90% of the
//     opens within two days, the rest 3 to 10 days later), 10% `clicked`, 16.7% `delivered`;
//     their action templates are made by ensureActionTemplates (one row per kind and action).
// Ids are time-ordered uuids (v7, like src/ids.ts) from each row's own time; rows go in in time
// order, as the application writes them. Loading drops the secondary indexes and foreign keys of
// the four big tables first and puts them back afterwards from their catalog definitions (the
// same definitions, checked), which is many times faster than maintaining them row by row; then
// VACUUM (ANALYZE), as autovacuum would leave the tables. The random generator is seeded: the same
// scale gives the same data.
import { performance } from 'node:perf_hooks';
import type postgres from 'postgres';
import { newId } from '../src/ids.ts';
import { ensureActionTemplates } from '../src/modules/messages/action-templates.ts';

/** Bumped when the generated data changes shape: a cached database of another version is regenerated. */
export const DATA_VERSION = 1;

export interface AudienceScale {
  customers: number;
  events: number;
  /** customer_actions rows. */
  actions: number;
  /** Customers with custom.tier = "new" (the triggered action's audience). */
  tickCustomers: number;
}

export interface AudienceData {
  version: number;
  scale: AudienceScale;
  workspaceId: string;
  /** The reference time of the data ("now" for the segments): data ends here. */
  now: string;
  /** The email actions the messages come from; the third segment is about the first. */
  sourceIds: string[];
  rows: Record<string, number>;
  /** Seconds per step, and in all. */
  seconds: Record<string, number>;
  generatedAt: string;
}

const DAY = 86_400_000;
const SOURCES = 10;
/** Shares of the messages with each record besides `sent`. */
const OPENED = 0.4;
const CLICKED = 0.1;
const DELIVERED = 1 / 6;
const TABLES = ['customers', 'events', 'messages', 'customer_actions'];
const META = 'bench_audience_meta';

/** A uuid v7 as SQL: the 48-bit millisecond time `ms` (a bigint expression), then 74 bits of `hex` (an md5 expression). */
const uuid7 = (ms: string, hex: string) => `(lpad(to_hex(${ms}), 12, '0') || '7' || substr(${hex}, 1, 3) || '8' || substr(${hex}, 4, 15))::uuid`;
const ts = (ms: string) => `to_timestamp((${ms}) / 1000.0)`;

/** The data of an earlier run, when it is complete. */
export async function readAudienceData(sql: postgres.Sql): Promise<AudienceData | undefined> {
  const [exists] = await sql<{ t: string | null }[]>`select to_regclass(${META}) as t`;
  if (!exists?.t) return undefined;
  const [row] = await sql<{ data: AudienceData }[]>`select data from ${sql(META)} where id = 1`;
  return row?.data;
}

export async function generateAudienceData(sql: postgres.Sql, scale: AudienceScale, say: (line: string) => void): Promise<AudienceData> {
  const started = performance.now();
  const seconds: Record<string, number> = {};
  const rows: Record<string, number> = {};
  const N = scale.customers;
  const T = Math.min(scale.tickCustomers, Math.floor(N / 2));
  const E = scale.events;
  const M = Math.max(SOURCES, Math.round(scale.actions / (1 + OPENED + CLICKED + DELIVERED)));
  const perSource = Math.ceil(M / SOURCES);
  // Each action goes to K customers (none of the "new" ones), the first half of them twice.
  const pool = N - T;
  const K = Math.min(pool, Math.max(1, Math.ceil(perSource / 1.5)));
  const P = coprime(pool);
  const nowMs = Math.floor(Date.now() / 1000) * 1000;
  const workspaceId = newId();
  const sourceIds = Array.from({ length: SOURCES }, () => newId());
  const channelConfigId = newId();
  const templateId = newId();
  const C0 = nowMs - 730 * DAY;
  const CSTEP = Math.max(1, Math.floor((730 * DAY) / N));
  const E0 = nowMs - 365 * DAY;
  const ESTEP = (365 * DAY) / E;
  const M0 = nowMs - 180 * DAY;
  const MSTEP = (180 * DAY) / M;
  const customerId = (n: string) => uuid7(`(${C0}::bigint + (${n} - 1) * ${CSTEP}::bigint)`, `md5('c' || ${n})`);
  const messageId = (m: string, ms: string) => uuid7(`(${ms} - 2000)`, `md5('m' || ${m})`);

  const db = await sql.reserve();
  const step = async (name: string, label: string, work: () => Promise<unknown>) => {
    const t0 = performance.now();
    await work();
    seconds[name] = round1((performance.now() - t0) / 1000);
    say(`  ${label}: ${seconds[name]} s`);
  };
  try {
    await db`select setseed(0.4242)`;
    for (const setting of [`work_mem = '256MB'`, `maintenance_work_mem = '1GB'`, 'synchronous_commit = off']) await db.unsafe(`set ${setting}`);

    // What the migrations made, to put back exactly once the rows are in.
    const indexes = await secondaryIndexes(db);
    const foreignKeys = await foreignKeysOf(db);
    await step('dropKeys', 'secondary indexes and foreign keys dropped', async () => {
      for (const fk of foreignKeys) await db.unsafe(`alter table ${fk.table} drop constraint "${fk.name}"`);
      for (const ix of indexes) await db.unsafe(`drop index "${ix.name}"`);
    });

    await db`insert into workspaces (id, name, time_zone) values (${workspaceId}, 'bench:audience', 'UTC')`;

    await step('customers', `customers (${N.toLocaleString('en-US')})`, () =>
      db.unsafe(`
        insert into customers (workspace_id, id, external_id, email, phone, time_zone, locale, custom, created_at, updated_at)
        select '${workspaceId}'::uuid, ${customerId('n')}, 'c' || n, 'c' || n || '@bench.example.com',
          case when n % 3 = 0 then '+3361' || lpad(n::text, 7, '0') end,
          (array['Europe/Paris', 'Europe/London', 'America/New_York', 'Asia/Tokyo', null])[1 + n % 5],
          (array['en', 'fr', 'de'])[1 + n % 3],
          jsonb_build_object(
            'plan', case when r < 0.5 then 'free' when r < 0.75 then 'basic' when r < 0.87 then 'silver' when r < 0.95 then 'gold' else 'platinum' end,
            'birthday', to_char(date '1950-01-01' + floor(r2 * 20000)::int, 'YYYY-MM-DD'),
            'tier', case when n > ${N - T} then 'new' when r3 < 0.1 then 'vip' else 'regular' end,
            'first_name', (array['Ada', 'Grace', 'Alan', 'Katherine', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Dennis', 'Radia'])[1 + n % 12],
            'city', (array['Lyon', 'Porto', 'Leeds', 'Gdansk', 'Bologna', 'Ghent', 'Tartu', 'Malmo'])[1 + (n / 7) % 8]),
          ${ts(`${C0}::bigint + (n - 1) * ${CSTEP}::bigint`)}, ${ts(`${C0}::bigint + (n - 1) * ${CSTEP}::bigint`)}
        from (select n, random() as r, random() as r2, random() as r3 from generate_series(1, ${N}) n) g`),
    );

    await step('events', `events (${E.toLocaleString('en-US')})`, () =>
      db.unsafe(`
        insert into events (workspace_id, id, customer_id, type, properties, occurred_at, received_at)
        select '${workspaceId}'::uuid, ${uuid7('ms', `md5('e' || i)`)}, ${customerId('n')}, type,
          case type
            when 'order.placed' then jsonb_build_object('total', round((r2 * 977)::numeric % 200, 2), 'currency', 'EUR', 'items', 1 + i % 4)
            when 'page.viewed' then jsonb_build_object('path', '/p/' || i % 500)
            when 'product.viewed' then jsonb_build_object('sku', 'SKU-' || i % 2000)
            when 'cart.updated' then jsonb_build_object('items', 1 + i % 5)
            else jsonb_build_object('device', (array['ios', 'android', 'web'])[1 + i % 3])
          end,
          ${ts('ms')}, ${ts('ms + 1000')}
        from (
          select i, ms, r2,
            case when r < 0.10 then 'order.placed' when r < 0.55 then 'page.viewed' when r < 0.80 then 'product.viewed' when r < 0.92 then 'cart.updated' else 'session.started' end as type,
            case when r < 0.10 then 1 + 10 * floor(r2 * ${Math.max(1, Math.floor(N / 10))})::bigint else 1 + floor(r2 * ${N})::bigint end as n
          from (select i, (${E0}::bigint + floor((i + random()) * ${ESTEP}))::bigint as ms, random() as r, random() as r2 from generate_series(0, ${E - 1}) i) g
        ) x`),
    );

    await step('actionTemplates', `action templates (${SOURCES} email actions)`, () =>
      ensureActionTemplates(db, sourceIds.map((sourceId) => ({ workspaceId, sourceType: 'action', sourceId, channel: 'email' }))),
    );
    const templates = await db<{ source_id: string; kind: string; id: string }[]>`
      select source_id, kind, id from action_templates where workspace_id = ${workspaceId}`;
    const templateIds = (kind: string) => `'{${sourceIds.map((s) => templates.find((t) => t.source_id === s && t.kind === kind)!.id).join(',')}}'::uuid[]`;

    // The messages, one row each with its fate drawn once, then the messages and their records from it.
    await step('messages', `messages (${M.toLocaleString('en-US')})`, async () => {
      await db.unsafe(`drop table if exists bench_gen_messages`);
      await db.unsafe(`
        create unlogged table bench_gen_messages as
        select m, s, 1 + ((j % ${K}) * ${P}::bigint + s * 7777) % ${pool} as n, j / ${K} as entry, ms, u,
          ms + case when v < 0.9 then floor(v / 0.9 * ${2 * DAY}) else ${3 * DAY} + floor((v - 0.9) / 0.1 * ${7 * DAY}) end::bigint as open_ms,
          floor(w * 1800000)::bigint as click_after
        from (
          select m, m % ${SOURCES} as s, m / ${SOURCES} as j, (${M0}::bigint + floor((m + random()) * ${MSTEP}))::bigint as ms, random() as u, random() as v, random() as w
          from generate_series(0, ${M - 1}) m
        ) g`);
      await db.unsafe(`
        insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id,
          step_id, entry_id, status, to_address, attempts, next_attempt_at, created_at, sent_at, updated_at)
        select '${workspaceId}'::uuid, ${messageId('m', 'ms')}, ${customerId('n')}, 'email', '${channelConfigId}'::uuid, '${templateId}'::uuid, 1, 'action',
          ('{${sourceIds.join(',')}}'::text[])[s + 1], '', case when entry = 0 then '' else 'run-' || entry end,
          case when u < ${CLICKED} and open_ms + click_after <= ${nowMs} then 'clicked' when u < ${OPENED} and open_ms <= ${nowMs} then 'opened'
            when u < ${DELIVERED} then 'delivered' else 'sent' end,
          'c' || n || '@bench.example.com', 1, ${ts('ms - 2000')}, ${ts('ms - 2000')}, ${ts('ms')},
          ${ts(`greatest(ms + 5000, case when u < ${OPENED} and open_ms <= ${nowMs} then open_ms else 0 end)`)}
        from bench_gen_messages order by m`);
    });

    await step('customerActions', `customer_actions (~${scale.actions.toLocaleString('en-US')})`, async () => {
      await db.unsafe(`
        insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at, touchpoint)
        select '${workspaceId}'::uuid, ${uuid7('t', `md5(kind || m)`)},
          (case kind when 'sent' then ${templateIds('sent')} when 'delivered' then ${templateIds('delivered')} when 'opened' then ${templateIds('opened')} else ${templateIds('clicked')} end)[s + 1],
          ${customerId('n')}, ${messageId('m', 'ms')}, ${ts('t')}, '{"channel":"email"}'::jsonb
        from (
          select m, s, n, ms, 'sent' as kind, ms as t from bench_gen_messages
          union all select m, s, n, ms, 'delivered', ms + 2000 + click_after / 600 from bench_gen_messages where u < ${DELIVERED}
          union all select m, s, n, ms, 'opened', open_ms from bench_gen_messages where u < ${OPENED} and open_ms <= ${nowMs}
          union all select m, s, n, ms, 'clicked', open_ms + click_after from bench_gen_messages where u < ${CLICKED} and open_ms + click_after <= ${nowMs}
        ) x
        order by t`);
      await db.unsafe(`drop table bench_gen_messages`);
    });

    await step('restoreKeys', 'indexes and foreign keys put back', async () => {
      for (const ix of indexes) await db.unsafe(ix.def);
      for (const fk of foreignKeys) await db.unsafe(`alter table ${fk.table} add constraint "${fk.name}" ${fk.def}`);
      const [afterIndexes, afterKeys] = [await secondaryIndexes(db), await foreignKeysOf(db)];
      const same = (a: unknown[], b: unknown[]) => JSON.stringify(a) === JSON.stringify(b);
      if (!same(afterIndexes, indexes) || !same(afterKeys, foreignKeys)) throw new Error('the indexes or foreign keys put back differ from the migrated schema');
    });

    await step('vacuum', 'vacuum (analyze)', () => db.unsafe(`vacuum (analyze) workspaces, customers, events, messages, action_templates, customer_actions`));

    for (const table of [...TABLES, 'action_templates']) {
      const [row] = await db.unsafe<{ n: string }[]>(`select count(*) as n from ${table} where workspace_id = '${workspaceId}'`);
      rows[table] = Number(row!.n);
    }
    seconds.total = round1((performance.now() - started) / 1000);
    const data: AudienceData = { version: DATA_VERSION, scale, workspaceId, now: new Date(nowMs).toISOString(), sourceIds, rows, seconds, generatedAt: new Date().toISOString() };
    await db.unsafe(`create table if not exists ${META} (id int primary key, data jsonb not null)`);
    await db.unsafe(`insert into ${META} (id, data) values (1, $1::jsonb) on conflict (id) do update set data = excluded.data`, [JSON.stringify(data)]);
    return data;
  } finally {
    db.release();
  }
}

/** The indexes of the big tables that back no constraint (the primary keys stay), in a stable order. */
async function secondaryIndexes(db: postgres.Sql | postgres.ReservedSql) {
  return db<{ table: string; name: string; def: string }[]>`
    select t.relname as table, i.relname as name, pg_get_indexdef(i.oid) as def
    from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
    where t.relnamespace = 'public'::regnamespace and t.relname = any(${TABLES}::text[])
      and not exists (select 1 from pg_constraint c where c.conindid = i.oid)
    order by 1, 2`;
}

/** The foreign keys from the big tables. */
async function foreignKeysOf(db: postgres.Sql | postgres.ReservedSql) {
  return db<{ table: string; name: string; def: string }[]>`
    select c.conrelid::regclass::text as table, c.conname as name, pg_get_constraintdef(c.oid) as def
    from pg_constraint c
    where c.contype = 'f' and c.connamespace = 'public'::regnamespace and c.conrelid::regclass::text = any(${TABLES}::text[])
    order by 1, 2`;
}

/** A multiplier coprime with `n`, so that i -> i * P mod n is a permutation. */
function coprime(n: number): number {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  for (const p of [7919, 104729, 1299709, 15485863]) if (gcd(p, n) === 1) return p;
  let p = 7;
  while (gcd(p, n) !== 1) p += 2;
  return p;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
