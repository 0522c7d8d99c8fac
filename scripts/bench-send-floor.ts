// The durable send floor for bench:send: the least work a send pipeline with Herald's guarantees
// does per email, written by hand, in a process of its own. Each email is a row inserted in
// batches (as the outbox does), claimed in batches with FOR UPDATE SKIP LOCKED under a lease, marked
// as being sent in a committed statement before its request (so a crash leaves an unknown outcome,
// never a blind resend), sent to the SendGrid mock with keep-alive connections (a prebuilt body of
// the size Herald sends: no render), and its outcome written in a committed statement after the
// answer. Marks and outcomes that arrive together share a statement, as Herald's ledger does; the
// table is vacuumed every 2 s. Nothing else: no content stored, no action templates, no consent or caps, no retries.
//
// What it tells: how many emails per second this machine can send with a durable mark and outcome
// around each request, beside the mock's ceiling (a bare request). Herald's figure is read against
// both. Run by bench-send.ts as a child (IPC question 'run'); not a script of its own.
import postgres from 'postgres';
import { Pool } from 'undici';
import { announce } from './bench-harness.ts';

interface FloorRun {
  url: string;
  mockUrl: string;
  apiKey: string;
  body: string;
  messages: number;
  insertBatch: number;
  loops: number;
  concurrency: number;
  claimBatch: number;
}

const LEASE_MS = 20_000;
const SENDING_MS = 5 * 60_000;

/** Open until the child is stopped: a backend's CPU is read from /proc while it lives. */
const opened: { sql?: postgres.Sql; pool?: Pool } = {};

async function run(options: FloorRun): Promise<{ seconds: number; sent: number; failed: number }> {
  const sql = (opened.sql = postgres(options.url, { max: options.loops + 2, onnotice: () => {} }));
  const pool = (opened.pool = new Pool(options.mockUrl, { connections: options.loops * options.concurrency, keepAliveTimeout: 30_000 }));
  await sql`drop table if exists floor_outbox`;
  await sql`create table floor_outbox (
    id bigint primary key, due_at timestamptz not null, claimed_until timestamptz, sending boolean not null default false,
    status text not null default 'queued', provider_id text, sent_at timestamptz
  ) with (fillfactor = 80)`;
  // Only the status is in the index's predicate: a claim (claimed_until) and a mark (sending)
  // change no indexed column and are HOT updates; the outcome takes the row out of the index.
  await sql`create index floor_outbox_due on floor_outbox (due_at) where status = 'queued'`;
  const headers = { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' };
  let firstCommit: number | undefined;
  let inserted = 0;
  const insert = (async () => {
    for (let from = 0; from < options.messages; from += options.insertBatch) {
      const n = Math.min(options.insertBatch, options.messages - from);
      await sql`insert into floor_outbox (id, due_at) select g, now() from generate_series(${from + 1}::bigint, ${from + n}::bigint) g`;
      firstCommit ??= performance.now();
      inserted += n;
    }
  })();
  while (firstCommit === undefined) await new Promise((r) => setTimeout(r, 1));
  const start = firstCommit;
  let sent = 0;
  let failed = 0;

  // One coalescing writer per loop: the marks and outcomes pending go in the next statement.
  const writer = () => {
    let marks: Array<{ id: number; done: () => void }> = [];
    let outcomes: Array<{ id: number; providerId: string | null; done: () => void }> = [];
    let busy = false;
    const flush = async () => {
      while (marks.length || outcomes.length) {
        const [m, o] = [marks, outcomes];
        marks = [];
        outcomes = [];
        const until = new Date(Date.now() + SENDING_MS);
        await sql`
          with marked as (
            update floor_outbox set sending = true, claimed_until = ${until}
            where id = any(${m.map((x) => x.id)}::bigint[]) and status = 'queued' and not sending
          )
          update floor_outbox f set status = case when v.p is null then 'failed' else 'sent' end, sending = false, provider_id = v.p, sent_at = now()
          from unnest(${o.map((x) => x.id)}::bigint[], ${o.map((x) => x.providerId)}::text[]) v(id, p)
          where f.id = v.id`;
        for (const x of [...m, ...o]) x.done();
      }
      busy = false;
    };
    const wake = () => {
      if (busy) return;
      busy = true;
      setImmediate(() => void flush());
    };
    return {
      mark: (id: number) => new Promise<void>((done) => (marks.push({ id, done }), wake())),
      outcome: (id: number, providerId: string | null) => new Promise<void>((done) => (outcomes.push({ id, providerId, done }), wake())),
    };
  };

  const loop = async () => {
    const book = writer();
    for (;;) {
      const lease = new Date(Date.now() + LEASE_MS);
      const claimed = await sql<{ id: string }[]>`
        with due as materialized (
          select id from floor_outbox where status = 'queued' and due_at <= now() and not sending and (claimed_until is null or claimed_until < now())
          order by due_at limit ${options.claimBatch} for update skip locked
        )
        update floor_outbox f set claimed_until = ${lease} from due where f.id = due.id returning f.id`;
      if (claimed.length === 0) {
        if (inserted >= options.messages) return;
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const ids = claimed.map((r) => Number(r.id));
      let next = 0;
      await Promise.all(Array.from({ length: options.concurrency }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          await book.mark(id);
          let providerId: string | null = null;
          try {
            const answer = await pool.request({ path: '/v3/mail/send', method: 'POST', headers, body: options.body });
            await answer.body.dump();
            if (answer.statusCode === 202) providerId = String(answer.headers['x-message-id'] ?? '');
          } catch {
            providerId = null;
          }
          await book.outcome(id, providerId);
          if (providerId === null) failed++;
          else sent++;
        }
      }));
    }
  };
  // Claims, marks and outcomes leave dead index entries that each claim walks past: vacuumed
  // every 2 s, as autovacuum (off on some machines) or Herald's own queue vacuum would.
  let done = false;
  const vacuum = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 2000));
      if (!done) await sql`vacuum floor_outbox`;
    }
  })();
  await Promise.all([insert, ...Array.from({ length: options.loops }, loop)]).finally(() => (done = true));
  // The clock stops at the last outcome's commit, not at the end of the vacuum's pause.
  const seconds = (performance.now() - start) / 1000;
  await vacuum;
  const [row] = await sql<{ n: number }[]>`select count(*)::int as n from floor_outbox where status = 'sent'`;
  if (row!.n !== sent) throw new Error(`floor: ${sent} answered 202, ${row!.n} recorded as sent`);
  await sql`drop table floor_outbox`;
  return { seconds, sent, failed };
}

await announce(null, async () => {
  await opened.pool?.close();
  await opened.sql?.end({ timeout: 5 });
}, { run: (q) => run(q as unknown as FloorRun) });
