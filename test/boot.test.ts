// The real entry point as a child process: settings checked at boot, the embedded PostgreSQL
// of a fresh machine, two processes migrating at once, roles, and a graceful stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';

const SERVER = new URL('../src/server.ts', import.meta.url).pathname;

function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function start(env: Record<string, string>): Started {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_') && k !== 'DATABASE_URL' && k !== 'PORT' && k !== 'NODE_ENV'));
  const child = spawn(process.execPath, [SERVER], { env: { ...clean, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function waitFor(check: () => boolean | Promise<boolean>, ms = 60_000) {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const get = (port: number, path: string) => fetch(`http://127.0.0.1:${port}${path}`).then(async (r) => ({ status: r.status, body: await r.text() }), () => ({ status: 0, body: '' }));

t.test('a bad or missing setting stops the server with one line naming it', async (t) => {
  const bad = start({ PORT: 'eighty', HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-boot-')) });
  t.equal(await bad.exited, 1);
  t.equal(bad.output().trim().split('\n').length, 1);
  t.match(bad.output(), /^herald: invalid setting PORT="eighty"/);
  const prod = start({ NODE_ENV: 'production', HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-boot-')) });
  t.equal(await prod.exited, 1);
  t.match(prod.output(), /^herald: missing setting HERALD_SECRET/);
  const role = start({ HERALD_ROLE: 'everything' });
  t.equal(await role.exited, 1);
  t.match(role.output(), /HERALD_ROLE="everything": expected one of all, api, worker/);
});

t.test('a fresh machine: npm start runs on an embedded PostgreSQL, prints the root token once, stops with grace', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-fresh-'));
  const port = await freePort();
  const first = start({ HERALD_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'info' });
  await waitFor(() => /Root token/.test(first.output()));
  const token = readFileSync(join(dataDir, 'root-token'), 'utf8').trim();
  t.match(first.output(), new RegExp(`REST API +http://127.0.0.1:${port}/v1`));
  t.match(first.output(), /API docs .*\/docs/);
  t.match(first.output(), /GraphiQL .*\/graphiql/);
  t.ok(first.output().includes(token), 'the root token is printed');
  t.equal((await get(port, '/readyz')).status, 200);
  const ws = await fetch(`http://127.0.0.1:${port}/v1/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"name":"fresh"}' });
  t.equal(ws.status, 201);
  t.match(first.output(), /"reqId":"[^"]+".*"url":"\/v1\/workspaces"/, 'request logs carry the request id');
  t.equal(first.output().split(token).length - 1, 1, 'the root token appears once, in the banner, never in the request logs');
  t.match(first.output(), /"authorization":"\[redacted\]"|"url":"\/v1\/workspaces"/);
  t.ok(existsSync(join(dataDir, 'pg', 'postmaster.pid')), 'the embedded PostgreSQL runs in the data dir');
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'a clean exit on SIGTERM');
  t.notOk(existsSync(join(dataDir, 'pg', 'postmaster.pid')), 'the embedded PostgreSQL was stopped');

  const second = start({ HERALD_DATA_DIR: dataDir, PORT: String(port) });
  await waitFor(() => /listening/.test(second.output()));
  t.notMatch(second.output(), /Root token/, 'the token is printed on the first start only');
  const again = await fetch(`http://127.0.0.1:${port}/v1/workspaces/${((await ws.json()) as { id: string }).id}`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(again.status, 200, 'the data and the token survived the restart');
  second.child.kill('SIGINT');
  t.equal(await second.exited, 0);
});

t.test('with DATABASE_URL: two processes start at once (migrations take turns), roles split the work', async (t) => {
  const db = await createTestDatabase();
  t.teardown(db.drop);
  // A database with nothing in it, not even the schema: both processes race to migrate it.
  const { default: postgres } = await import('postgres');
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  await sql`drop schema public cascade; drop schema if exists drizzle cascade; drop schema if exists pgboss cascade; create schema public`.simple();
  await sql.end();
  const common = { DATABASE_URL: db.url, HERALD_ROOT_TOKEN: 'hr_boot_test_root_token_00000000', HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-url-')) };
  const [apiPort, workerPort] = [await freePort(), await freePort()];
  const api = start({ ...common, PORT: String(apiPort), HERALD_ROLE: 'api' });
  const worker = start({ ...common, PORT: String(workerPort), HERALD_ROLE: 'worker' });
  t.teardown(() => {
    api.child.kill('SIGKILL');
    worker.child.kill('SIGKILL');
  });
  await waitFor(async () => (await get(apiPort, '/readyz')).status === 200 && (await get(workerPort, '/readyz')).status === 200);
  t.match(api.output(), /role api, DATABASE_URL/);
  t.equal((await get(workerPort, '/v1/customers')).status, 404, 'a worker serves no API');
  t.equal((await get(workerPort, '/metrics')).status, 200, 'but does serve operations');
  // An import posted to the API process is processed by the worker process.
  const root = { authorization: 'Bearer hr_boot_test_root_token_00000000', 'content-type': 'application/json' };
  const ws = (await (await fetch(`http://127.0.0.1:${apiPort}/v1/workspaces`, { method: 'POST', headers: root, body: '{"name":"roles"}' })).json()) as { id: string };
  const key = (await (await fetch(`http://127.0.0.1:${apiPort}/v1/workspaces/${ws.id}/api-keys`, { method: 'POST', headers: root, body: '{"name":"k","scopes":["read","write"]}' })).json()) as { token: string };
  const auth = { authorization: `Bearer ${key.token}` };
  const imp = (await (await fetch(`http://127.0.0.1:${apiPort}/v1/customers/import`, { method: 'POST', headers: { ...auth, 'content-type': 'text/csv' }, body: 'externalId\nw1\nw2\n' })).json()) as { id: string };
  await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${apiPort}/v1/imports/${imp.id}`, { headers: auth })).json()) as { status: string }).status === 'completed', 20_000);
  t.pass('the worker process ran the import');
  api.child.kill('SIGTERM');
  worker.child.kill('SIGTERM');
  t.equal(await api.exited, 0);
  t.equal(await worker.exited, 0);
});
