// Migrations that move existing rows, run on a database holding rows from before them: the
// migrations up to the one before are applied from a copy of the folder whose journal stops
// there, rows are written the way that schema had them, then Herald's own runMigrations applies
// the rest.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import { createDatabase } from '../src/db/client.ts';
import { MIGRATIONS_FOLDER, runMigrations } from '../src/db/migrate.ts';
import { newId } from '../src/ids.ts';
import { assignActions } from '../src/modules/messages/action-templates.ts';
import { createTestDatabase } from './helpers/db.ts';

/** Applies the migrations before `tag` only. */
async function migrateBefore(url: string, tag: string): Promise<void> {
  const folder = mkdtempSync(join(tmpdir(), 'herald-migrations-'));
  try {
    cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
    const journalPath = join(folder, 'meta', '_journal.json');
    const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
    const at = journal.entries.findIndex((e) => e.tag === tag);
    if (at < 0) throw new Error(`no migration ${tag}`);
    journal.entries = journal.entries.slice(0, at);
    writeFileSync(journalPath, JSON.stringify(journal));
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(drizzle(sql), { migrationsFolder: folder });
    } finally {
      await sql.end();
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/** A database of its own with the migrations before `tag` applied, and a connection to it; both go when the test ends. */
async function databaseBefore(t: Test, tag: string) {
  const db = await createTestDatabase();
  t.teardown(db.drop);
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  t.teardown(() => sql.end());
  await sql`drop schema public cascade; drop schema if exists drizzle cascade; create schema public`.simple();
  await migrateBefore(db.url, tag);
  return { db, sql };
}

t.test('0011 message_queue: queued and sending messages get their queue rows, the others none', async (t) => {
  const { db, sql } = await databaseBefore(t, '0011_message_queue');

  const ws = newId();
  const customer = newId();
  await sql`insert into workspaces (id, name) values (${ws}, 'before 0011')`;
  await sql`insert into customers (workspace_id, id, external_id, email) values (${ws}, ${customer}, 'c', 'c@example.com')`;
  const due = new Date('2026-11-20T10:00:00Z');
  const lease = new Date('2026-11-20T10:00:20Z');
  const marked = new Date('2026-11-20T09:59:00Z');
  const rows = [
    { id: newId(), status: 'queued', next: due, updated: due },
    // Claimed: its due time is the claim's lease.
    { id: newId(), status: 'queued', next: lease, updated: due },
    { id: newId(), status: 'sending', next: due, updated: marked },
    { id: newId(), status: 'sent', next: due, updated: due },
    { id: newId(), status: 'unknown', next: due, updated: due },
  ];
  for (const [i, r] of rows.entries()) {
    await sql`
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id, status, next_attempt_at, updated_at)
      values (${ws}, ${r.id}, ${customer}, 'email', ${newId()}, ${newId()}, 1, 'action', 'a', ${String(i)}, ${r.status}, ${r.next}, ${r.updated})`;
  }

  await runMigrations(db.url);
  const queue = await sql<{ message_id: string; due_at: Date; sending: boolean }[]>`select message_id, due_at, sending from message_queue where workspace_id = ${ws}`;
  const byId = new Map(queue.map((q) => [q.message_id, q]));
  t.equal(queue.length, 3, 'one row per message queued or being sent');
  t.same(byId.get(rows[0]!.id), { message_id: rows[0]!.id, due_at: due, sending: false }, 'queued: due when it was');
  t.same(byId.get(rows[1]!.id), { message_id: rows[1]!.id, due_at: lease, sending: false }, 'claimed: due when its lease ends');
  t.same(byId.get(rows[2]!.id), { message_id: rows[2]!.id, due_at: new Date(marked.getTime() + 5 * 60_000), sending: true }, 'sending: its mark lasts five minutes from the mark');
  t.notOk(byId.has(rows[3]!.id) || byId.has(rows[4]!.id), 'sent and unknown messages are not queued');
  const indexes = (await sql<{ indexname: string }[]>`select indexname from pg_indexes where tablename = 'messages'`).map((r) => r.indexname).sort();
  t.same(indexes, ['messages_customer_idx', 'messages_once_idx', 'messages_workspace_id_id_pk'], 'no index of messages depends on what a send changes');
  const [options] = await sql<{ reloptions: string[] }[]>`select reloptions from pg_class where relname = 'messages'`;
  t.same(options!.reloptions, ['fillfactor=80']);
  await sql`delete from customers where workspace_id = ${ws}`;
  t.equal((await sql`select 1 from message_queue where workspace_id = ${ws}`).length, 0, 'a customer deleted takes its queue rows with its messages');
});

t.test('0012, 0015: customer_actions and message_queue without foreign keys still never outlive their message, nor name one that is not there', async (t) => {
  const db = await createTestDatabase();
  t.teardown(db.drop);
  // Herald's own client (JSON goes as text, as assignActions expects).
  const database = createDatabase(db.url, { max: 2 });
  t.teardown(() => database.close());
  const sql = database.sql;
  const ws = newId();
  const [kept, gone] = [newId(), newId()];
  await sql`insert into workspaces (id, name) values (${ws}, 'after 0012')`;
  await sql`insert into customers (workspace_id, id, external_id) values (${ws}, ${kept}, 'kept'), (${ws}, ${gone}, 'gone')`;
  const messageOf = new Map<string, string>();
  for (const customer of [kept, gone]) {
    const id = newId();
    messageOf.set(customer, id);
    await sql`
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, status)
      values (${ws}, ${id}, ${customer}, 'email', ${newId()}, ${newId()}, 1, 'action', 'a', 'sent')`;
  }
  await sql`insert into action_templates (workspace_id, id, source_type, source_id, kind, channel) values (${ws}, ${newId()}, 'action', 'a', 'sent', 'email'), (${ws}, ${newId()}, 'action', 'a', 'opened', 'email')`;
  const assign = (customer: string, messageId: string, kind: string) =>
    assignActions(sql, [{ workspaceId: ws, messageId, customerId: customer, sourceType: 'action', sourceId: 'a', kind, occurredAt: new Date() }]);
  for (const customer of [kept, gone]) for (const kind of ['sent', 'opened']) t.equal(await assign(customer, messageOf.get(customer)!, kind), 1);
  t.equal(await assign(kept, newId(), 'sent'), 0, 'not for a message that does not exist');

  const count = async (customer: string) => (await sql<{ n: number }[]>`select count(*)::int as n from customer_actions where workspace_id = ${ws} and customer_id = ${customer}`)[0]!.n;
  await sql`delete from customers where workspace_id = ${ws} and id = ${gone}`;
  t.equal(await count(gone), 0, "a deleted customer's messages take their actions with them");
  t.equal(await count(kept), 2, "another customer's stay");
  await sql`insert into message_queue (workspace_id, message_id, due_at) values (${ws}, ${messageOf.get(kept)!}, now())`;
  await sql`delete from messages where workspace_id = ${ws} and id = ${messageOf.get(kept)!}`;
  t.equal(await count(kept), 0, 'so does a message deleted by itself');
  t.equal((await sql`select 1 from message_queue where workspace_id = ${ws}`).length, 0, 'and its queue row');

  // A message being deleted in another transaction: the assignment waits for it and then assigns nothing.
  const id = newId();
  await sql`
    insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, status)
    values (${ws}, ${id}, ${kept}, 'email', ${newId()}, ${newId()}, 1, 'action', 'a', 'sent')`;
  let assigned: Promise<number> | undefined;
  await sql.begin(async (tx) => {
    await tx`delete from messages where workspace_id = ${ws} and id = ${id}`;
    assigned = assign(kept, id, 'sent');
    await new Promise((r) => setTimeout(r, 100));
  });
  t.equal(await assigned!, 0, 'nothing for a message deleted meanwhile');
  t.equal(await count(kept), 0);
});

t.test('0017 flow_node_counts: the stats so far are counted from the decisions, entries under way learn where they have been', async (t) => {
  const { db, sql } = await databaseBefore(t, '0017_flow_node_counts');

  const ws = newId();
  const flow = newId();
  const at = new Date('2026-11-20T10:00:00Z');
  await sql`insert into workspaces (id, name) values (${ws}, 'before 0017')`;
  const [waiting, done] = [newId(), newId()];
  await sql`
    insert into flow_entries (workspace_id, id, flow_id, customer_id, version, node_id, state, wake_at, entered_at, updated_at)
    values (${ws}, ${waiting}, ${flow}, ${newId()}, 1, 'w', 'active', ${at}, ${at}, ${at}), (${ws}, ${done}, ${flow}, ${newId()}, 1, 'end', 'done', ${at}, ${at}, ${at})`;
  // The waiting entry: start and its arrival at w in one tick; the other went through w twice (a cycle) and ended.
  const decide = (entry: string, nodes: string[], branches: (string | null)[]) => sql`
    insert into flow_decisions (workspace_id, id, flow_id, version, entry_id, customer_id, node_ids, node_types, branches, reasons, at)
    values (${ws}, ${newId()}, ${flow}, 1, ${entry}, ${newId()}, ${nodes}, ${nodes.map(() => 'x')}, ${branches as string[]}, ${sql.json(nodes.map(() => ({})))}, ${at})`;
  await decide(waiting, ['start', 'w'], ['', null]);
  await decide(done, ['start', 'w'], ['', null]);
  await decide(done, ['w', 'w'], ['timeout', null]);
  await decide(done, ['w', 'end'], ['event', null]);

  await runMigrations(db.url);
  const counts = await sql<{ node_id: string; branch: string | null; entered: number; decisions: number }[]>`
    select node_id, branch, sum(entered)::int as entered, sum(decisions)::int as decisions from flow_node_counts where flow_id = ${flow} group by 1, 2 order by 1, 2 nulls first`;
  t.same(counts, [
    { node_id: 'end', branch: null, entered: 1, decisions: 1 },
    { node_id: 'start', branch: null, entered: 2, decisions: 0 },
    { node_id: 'start', branch: '', entered: 0, decisions: 2 },
    { node_id: 'w', branch: null, entered: 2, decisions: 3 },
    { node_id: 'w', branch: 'event', entered: 0, decisions: 1 },
    { node_id: 'w', branch: 'timeout', entered: 0, decisions: 1 },
  ], 'entered: distinct entries per node; decisions per node and branch');
  const visited = await sql<{ id: string; visited: string[] }[]>`select id, visited from flow_entries where flow_id = ${flow}`;
  t.same(visited.find((e) => e.id === waiting)?.visited.sort(), ['start', 'w'], 'the entry under way knows its nodes');
  t.same(visited.find((e) => e.id === done)?.visited, [], 'a done entry never moves again: left empty');
});

t.test('0019 action templates per step and channel: the flow-wide set becomes its first step\'s (ids kept), every step and every step messages came from gets a set, assignments move to their own step\'s', async (t) => {
  const { db, sql } = await databaseBefore(t, '0019_action_templates_per_step');

  const ws = newId();
  const flow = newId();
  const customer = newId();
  await sql`insert into workspaces (id, name) values (${ws}, 'before 0019')`;
  await sql`insert into customers (workspace_id, id, external_id, email) values (${ws}, ${customer}, 'c', 'c@example.com')`;
  const send = (channel: string) => ({ type: 'send', channel, channelConfigId: newId(), templateId: newId() });
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'x' },
      { id: 'mail', type: 'steps', steps: [{ type: 'update_fields', set: { a: 1 } }, send('email')] },
      { id: 'text', type: 'steps', steps: [send('sms')] },
      { id: 'again', type: 'steps', steps: [send('email')] },
    ],
    edges: [],
  };
  const at = new Date('2026-11-20T10:00:00Z');
  await sql`insert into flows (workspace_id, id, name, status, active_version, created_at, updated_at) values (${ws}, ${flow}, 'f', 'active', 1, ${at}, ${at})`;
  await sql`insert into flow_versions (workspace_id, flow_id, version, graph, drafted_at, launched_at) values (${ws}, ${flow}, 1, ${sql.json(graph)}, ${at}, ${at})`;
  // Before: one set for the flow, of its first channel; a message of each step (and of a step
  // an earlier version had), each assigned that set's 'sent'.
  const old: Record<string, string> = {};
  for (const kind of ['sent', 'delivered', 'opened']) {
    old[kind] = newId();
    await sql`insert into action_templates (workspace_id, id, source_type, source_id, kind, channel) values (${ws}, ${old[kind]!}, 'flow', ${flow}, ${kind}, 'email')`;
  }
  const messages: Record<string, string> = {};
  for (const [step, channel] of [['mail/1', 'email'], ['text/0', 'sms'], ['again/0', 'email'], ['gone/0', 'email']] as const) {
    messages[step] = newId();
    await sql`
      insert into messages (workspace_id, id, customer_id, channel, channel_config_id, template_id, template_version, source_type, source_id, step_id, status)
      values (${ws}, ${messages[step]!}, ${customer}, ${channel}, ${newId()}, ${newId()}, 1, 'flow', ${flow}, ${step}, 'sent')`;
    await sql`insert into customer_actions (workspace_id, id, action_template_id, customer_id, message_id, occurred_at) values (${ws}, ${newId()}, ${old.sent!}, ${customer}, ${messages[step]!}, ${at})`;
  }

  await runMigrations(db.url);
  const templates = await sql<{ id: string; step_id: string; kind: string; channel: string }[]>`select id, step_id, kind, channel from action_templates where source_id = ${flow}`;
  const setOf = (step: string) => templates.filter((x) => x.step_id === step).map((x) => `${x.channel}:${x.kind}`).sort();
  const email = ['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed'].map((k) => `email:${k}`).sort();
  t.same(setOf('mail/1'), email, 'the first email step: the whole email set');
  t.same(setOf('again/0'), email, 'the second email step: its own');
  t.same(setOf('text/0'), ['sms:delivered', 'sms:failed', 'sms:not_sent', 'sms:sent', 'sms:unsubscribed'], 'the SMS step: the SMS set');
  t.same(setOf('gone/0'), email, 'a step of an earlier version its messages came from: a set, for their late events');
  t.same(setOf(''), [], 'no flow-wide set is left');
  for (const kind of ['sent', 'delivered', 'opened']) t.match(templates.find((x) => x.id === old[kind]), { step_id: 'mail/1', kind }, `the old ${kind} template is the first email step's: its id still works`);
  const assigned = await sql<{ message_id: string; step_id: string; channel: string; kind: string }[]>`
    select ca.message_id, at.step_id, at.channel, at.kind from customer_actions ca join action_templates at on at.workspace_id = ca.workspace_id and at.id = ca.action_template_id where at.source_id = ${flow}`;
  t.equal(assigned.length, 4, 'moved, not copied: each action once');
  for (const [step, channel] of [['mail/1', 'email'], ['text/0', 'sms'], ['again/0', 'email'], ['gone/0', 'email']] as const) {
    t.same(assigned.filter((a) => a.message_id === messages[step]).map((a) => `${a.step_id} ${a.channel} ${a.kind}`), [`${step} ${channel} sent`], `${step}: its own step's and channel's 'sent'`);
  }
});

t.test('0020 channel config defaults: each channel\'s oldest live config becomes its default, deleted ones never', async (t) => {
  const { db, sql } = await databaseBefore(t, '0020_channel_config_defaults');
  const ws = newId();
  const other = newId();
  await sql`insert into workspaces (id, name) values (${ws}, 'before 0020'), (${other}, 'another')`;
  const config = async (workspace: string, name: string, channel: string, createdAt: string, deleted = false) => {
    const id = newId();
    await sql`
      insert into channel_configs (workspace_id, id, name, provider, channel, settings, created_at, updated_at, deleted_at)
      values (${workspace}, ${id}, ${name}, 'sandbox', ${channel}, '{}'::jsonb, ${createdAt}, ${createdAt}, ${deleted ? createdAt : null})`;
    return name;
  };
  await config(ws, 'deleted email, oldest', 'email', '2026-01-01T00:00:00Z', true);
  await config(ws, 'email, second', 'email', '2026-02-01T00:00:00Z');
  await config(ws, 'email, third', 'email', '2026-03-01T00:00:00Z');
  await config(ws, 'sms', 'sms', '2026-04-01T00:00:00Z');
  await config(other, 'other email', 'email', '2026-05-01T00:00:00Z');

  await runMigrations(db.url);
  const defaults = await sql<{ name: string }[]>`select name from channel_configs where is_default order by name`;
  t.same(defaults.map((r) => r.name), ['email, second', 'other email', 'sms'], 'one per workspace and channel: the oldest live one');
  // The index holds one live default per channel.
  await t.rejects(sql`update channel_configs set is_default = true where workspace_id = ${ws} and name = 'email, third'`, /channel_configs_default_idx/, 'a second live default is refused');
  await sql`update channel_configs set is_default = true where workspace_id = ${ws} and name = 'deleted email, oldest'`;
  t.pass('a deleted config may keep the flag: it is outside the index');
});
