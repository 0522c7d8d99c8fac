// The send queue's own vacuum (queue-maintenance.ts): only when its dead rows pile up, one
// process at a time, and it does leave the table clean.
import t from 'tap';
import { createDatabase } from '../src/db/client.ts';
import { newId } from '../src/ids.ts';
import { QUEUE_VACUUM, vacuumQueueIfBloated } from '../src/modules/messages/queue-maintenance.ts';
import { eventually } from './helpers/app.ts';
import { createTestDatabase } from './helpers/db.ts';

const db = await createTestDatabase();
t.teardown(db.drop);
const database = createDatabase(db.url, { max: 3 });
t.teardown(() => database.close());
const { sql } = database;

interface Stats { live: number; dead: number; vacuums: number }
const stats = async () =>
  (await sql<Stats[]>`select n_live_tup::int as live, n_dead_tup::int as dead, vacuum_count::int as vacuums from pg_stat_user_tables where relid = 'message_queue'::regclass`)[0]!;

t.test('migration 0014 asks autovacuum to keep up with the queue', async (t) => {
  const [row] = await sql<{ reloptions: string[] }[]>`select reloptions from pg_class where oid = 'message_queue'::regclass`;
  t.match(row!.reloptions, ['autovacuum_vacuum_scale_factor=0', 'autovacuum_vacuum_threshold=10000', 'autovacuum_vacuum_cost_delay=0']);
});

t.test('vacuumed when its dead rows outnumber the live ones by far, and only then', async (t) => {
  // Autovacuum (on in a default PostgreSQL, the embedded one) must not clean up before this test does.
  await sql`alter table message_queue set (autovacuum_enabled = false)`;
  const ws = newId();
  const customer = newId();
  await sql`insert into workspaces (id, name) values (${ws}, 'queue')`;
  await sql`insert into customers (workspace_id, id, external_id) values (${ws}, ${customer}, 'c')`;
  await sql`
    with m as (
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id, status)
      select ${ws}::uuid, gen_random_uuid(), ${customer}::uuid, 'email', gen_random_uuid(), gen_random_uuid(), 1, 'action', 'a', g::text, 'queued' from generate_series(1, 20000) g
      returning workspace_id, id
    )
    insert into message_queue (workspace_id, message_id, due_at) select workspace_id, id, now() from m`;
  // What claims and marks do: every row moved three times (three dead versions each).
  for (let i = 0; i < 3; i++) await sql`update message_queue set due_at = due_at + interval '1 second' where workspace_id = ${ws}`;
  const bloated = await eventually(async () => {
    const s = await stats();
    return s.dead >= 60_000 ? s : undefined;
  });
  t.ok(bloated.live >= 20_000 && bloated.dead >= 60_000, `${bloated.dead} dead rows for ${bloated.live} live ones`);

  t.equal(await vacuumQueueIfBloated(sql, { ...QUEUE_VACUUM, minDead: 100_000 }), false, 'fewer dead rows than the floor: left to autovacuum');
  t.equal(await vacuumQueueIfBloated(sql, { ...QUEUE_VACUUM, ratio: 4 }), false, 'not that many more dead rows than live ones');
  // Another process holds the lock: this one does not wait for it, nor vacuum twice.
  const other = await sql.reserve();
  t.teardown(() => other.release());
  await other`select pg_advisory_lock(7265503)`;
  t.equal(await vacuumQueueIfBloated(sql), false, 'another process is vacuuming it');
  await other`select pg_advisory_unlock(7265503)`;
  t.equal((await stats()).vacuums, bloated.vacuums, 'no vacuum so far');

  t.equal(await vacuumQueueIfBloated(sql), true, 'vacuumed');
  const after = await eventually(async () => {
    const s = await stats();
    return s.vacuums > bloated.vacuums ? s : undefined;
  });
  t.ok(after.dead < 1000, `${after.dead} dead rows left`);
  t.equal(await vacuumQueueIfBloated(sql), false, 'clean: nothing to do');
});
