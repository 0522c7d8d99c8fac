import t from 'tap';
import { eventually, startHerald, workspaceWithKey, type Call } from './helpers/app.ts';
import { runImport } from '../src/modules/imports/imports.job.ts';
import { startImport } from '../src/modules/imports/imports.service.ts';
import { Readable } from 'node:stream';

const herald = await startHerald(t);
const { app } = herald;
const { sql } = herald.runtime.deps.database;

const upload = (call: Call, type: string, body: string) => call('POST', '/v1/customers/import', body, { 'content-type': type });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const finished = (call: Call, id: string): Promise<any> =>
  eventually(async () => {
    const res = await call('GET', `/v1/imports/${id}`);
    return ['completed', 'failed'].includes(res.json().status) ? res.json() : undefined;
  });

t.test('CSV: good rows upserted, bad rows reported by line and skipped', async (t) => {
  const { call } = await workspaceWithKey(app);
  await call('POST', '/v1/customers', { externalId: 'u2', email: 'old@x.io', custom: { keep: 'me' } });
  const csv = [
    'externalId,email,timeZone,plan,custom.tier',
    'u1,U1@X.io,Europe/Paris,gold,1',
    'u2,u2@x.io,,silver,',
    'u3,not-an-email,,bronze,',
    'u4,u4@x.io,Mars/Base,,',
    'u6,u6@x.io,,,,extra-column',
    ',noid@x.io,,,',
    'u7,u7@x.io,,,',
    // An open quote runs to the end of the file (that is CSV): it is the last row here.
    '"u8,unterminated',
  ].join('\n');
  const res = await upload(call, 'text/csv', csv);
  t.equal(res.statusCode, 202);
  t.match(res.headers.location, new RegExp(`/v1/imports/${res.json().id}$`));
  t.match(res.json(), { format: 'csv', status: 'queued', bytes: Buffer.byteLength(csv) });
  const done = await finished(call, res.json().id);
  t.equal(done.status, 'completed');
  t.match(done, { createdRows: 2, updatedRows: 1 });
  t.equal(done.failedRows, 5, 'bad rows counted');
  const byLine = Object.fromEntries(done.errors.map((e: { line: number; pointer?: string; message: string }) => [e.line, e]));
  t.match(byLine[4], { pointer: '/email' });
  t.match(byLine[5], { pointer: '/timeZone' });
  t.match(byLine[6], { message: /column/i }, 'a row with too many columns');
  t.match(byLine[7], { pointer: '/externalId', message: 'is required' });
  t.match(byLine[9], { message: /quote/i }, 'an unclosed quote');
  const u1 = (await call('GET', '/v1/customers?externalId=u1')).json().data[0];
  t.match(u1, { email: 'u1@x.io', timeZone: 'Europe/Paris', custom: { plan: 'gold', tier: '1' } });
  const u2 = (await call('GET', '/v1/customers?externalId=u2')).json().data[0];
  t.match(u2, { email: 'u2@x.io', custom: { keep: 'me', plan: 'silver' } }, 'an existing customer is updated and merged');
  t.equal((await call('GET', '/v1/customers?externalId=u7')).json().data.length, 1, 'rows after the bad ones still land');
  t.equal((await sql`select count(*)::int as n from import_chunks`)[0]!.n, 0, 'the upload is deleted once read');
});

t.test('NDJSON: objects as for createCustomer; a bad line never stops the import', async (t) => {
  const { call } = await workspaceWithKey(app);
  const lines = ['{"externalId":"n1","email":"n1@x.io","custom":{"score":5}}', 'not json', '[1,2]', '{"email":"missing-id@x.io"}', '', '{"externalId":"n2","bogus":true}', '{"externalId":"n3"}'];
  const res = await upload(call, 'application/x-ndjson', lines.join('\n'));
  const done = await finished(call, res.json().id);
  t.match(done, { status: 'completed', createdRows: 2, failedRows: 4 });
  t.same(done.errors.map((e: { line: number }) => e.line), [2, 3, 4, 6]);
  t.match(done.errors[0], { message: 'is not valid JSON' });
  t.match(done.errors[3], { pointer: '/bogus' });
  t.same((await call('GET', '/v1/customers?externalId=n1')).json().data[0].custom, { score: 5 }, 'JSON types are kept');
  const again = await upload(call, 'application/x-ndjson', lines.join('\n'));
  const second = await finished(call, again.json().id);
  t.match(second, { createdRows: 0, updatedRows: 2 }, 're-importing updates, never duplicates');
});

t.test('bad uploads', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const wrongType = await upload(call, 'application/xml', '<x/>');
  t.equal(wrongType.statusCode, 415);
  t.equal(wrongType.headers['content-type'], 'application/problem+json');
  const json = await call('POST', '/v1/customers/import', '{"externalId":"x"}', { 'content-type': 'application/json' });
  t.equal(json.statusCode, 415, 'JSON is not an import format');
  const empty = await upload(call, 'text/csv', '');
  t.equal(empty.statusCode, 400);
  t.equal((await sql`select count(*)::int as n from imports where workspace_id = ${workspaceId}`)[0]!.n, 0, 'no import row is left behind');
  t.equal((await call('GET', '/v1/imports/00000000-0000-4000-8000-000000000000')).statusCode, 404);
  const other = await workspaceWithKey(app);
  const theirs = await upload(other.call, 'text/csv', 'externalId\nq1\n');
  t.equal((await call('GET', `/v1/imports/${theirs.json().id}`)).statusCode, 404, "another workspace's import is a 404");
});

t.test('an upload over the limit is refused and leaves nothing behind', async (t) => {
  const { workspaceId } = await workspaceWithKey(app);
  const big = Readable.from((function* () {
    for (let i = 0; i < 40; i++) yield Buffer.alloc(64 * 1024, 'a');
  })());
  await t.rejects(startImport(herald.runtime.deps, workspaceId, 'csv', big, 1024 * 1024), { status: 413 } as never);
  t.equal((await sql`select count(*)::int as n from imports where workspace_id = ${workspaceId}`)[0]!.n, 0);
  t.equal((await sql`select count(*)::int as n from import_chunks where workspace_id = ${workspaceId}`)[0]!.n, 0);
});

t.test('a large file is stored in chunks and streamed through in batches', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const rows = 30_000;
  let csv = 'externalId,email,segment\n';
  for (let i = 0; i < rows; i++) csv += `big-${i},big-${i}@example.com,${'s'.repeat(20)}\n`;
  // Through the service with no queue, so the chunks can be counted before a worker reads them.
  const pieces = Readable.from((function* () {
    for (let i = 0; i < csv.length; i += 64 * 1024) yield Buffer.from(csv.slice(i, i + 64 * 1024));
  })());
  const created = await startImport({ ...herald.runtime.deps, boss: { send: async () => null } as never }, workspaceId, 'csv', pieces);
  const chunks = (await sql`select count(*)::int as n, max(length(data))::int as largest from import_chunks where workspace_id = ${workspaceId}`)[0]!;
  t.ok(chunks.n >= 2, `the upload was stored as ${chunks.n} chunks, not one blob`);
  t.ok(chunks.largest <= 2 * 1024 * 1024, 'each chunk is bounded');
  await runImport(herald.runtime.deps, workspaceId, created.id);
  t.match((await call('GET', `/v1/imports/${created.id}`)).json(), { status: 'completed', processedRows: rows, createdRows: rows, failedRows: 0 });
});

t.test('a retried import resumes after the last committed batch', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  // Post directly through the service so that no worker picks it up before the test does.
  const body = Readable.from([Buffer.from('externalId,n\nr1,1\nr2,2\nr3,3\nr4,4\n')]);
  const created = await startImport({ ...herald.runtime.deps, boss: { send: async () => null } as never }, workspaceId, 'csv', body);
  // Pretend a first attempt committed two rows and then died.
  await sql`update imports set status = 'running', processed_rows = 2, created_rows = 2 where id = ${created.id}`;
  await runImport(herald.runtime.deps, workspaceId, created.id);
  const done = (await call('GET', `/v1/imports/${created.id}`)).json();
  t.match(done, { status: 'completed', processedRows: 4, createdRows: 4 });
  t.same((await call('GET', '/v1/customers?limit=10')).json().data.map((c: { externalId: string }) => c.externalId), ['r3', 'r4'], 'rows 1-2 were not read again');
  await runImport(herald.runtime.deps, workspaceId, created.id);
  t.match((await call('GET', `/v1/imports/${created.id}`)).json(), { processedRows: 4 }, 'a completed import is not run twice');
});
