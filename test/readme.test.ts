// The README's tour really works: its shell blocks run, as written, against a real server.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const tour = readme.slice(readme.indexOf('<!-- tour:start -->'), readme.indexOf('<!-- tour:end -->'));
const blocks = [...tour.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);

const hasJq = (() => {
  try {
    execFileSync('jq', ['--version']);
    return true;
  } catch {
    return false;
  }
})();

t.test('the tour', { skip: hasJq ? false : 'jq is not installed' }, async (t) => {
  t.ok(blocks.length >= 5, 'the tour has its blocks');
  const port = await new Promise<number>((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
  const db = await createTestDatabase();
  t.teardown(db.drop);
  const cwd = mkdtempSync(join(tmpdir(), 'herald-readme-'));
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  const server = spawn(process.execPath, [new URL('../src/server.ts', import.meta.url).pathname], {
    cwd, env: { ...clean, DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'warn', NODE_ENV: 'development' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => server.kill('SIGKILL'));
  let log = '';
  server.stdout.on('data', (d) => (log += d));
  server.stderr.on('data', (d) => (log += d));
  for (let i = 0; i < 300 && !/listening/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(log, /listening/);

  const script = ['set -euo pipefail', ...blocks].join('\n').replaceAll('http://127.0.0.1:3000', `http://127.0.0.1:${port}`);
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const bash = spawn('bash', ['-c', script], { cwd });
    let stdout = '';
    let stderr = '';
    bash.stdout.on('data', (d) => (stdout += d));
    bash.stderr.on('data', (d) => (stderr += d));
    bash.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
  t.equal(out.code, 0, `the tour ran without error ${out.stderr}`);
  const lines = out.stdout.trim().split('\n');
  t.same(lines.slice(0, 4), ['"subscribed"', '"web_push"', '1', '{"accepted":1,"duplicates":1}']);
  t.same(JSON.parse(lines[4]!), { email: 'ada@example.com', consents: ['subscribed'] });
  t.same(JSON.parse(lines[5]!), { n: 1, more: true });
  t.same(JSON.parse(lines[6]!), { tier: 'gold' });
  t.match(JSON.parse(lines[7]!), { status: 'completed', createdRows: 1, failedRows: 1, errors: [{ line: 3, pointer: '/email' }] });
  t.equal(lines[8], '201');
  t.match(lines[9], /^idempotent-replayed: true/i);
  t.same(JSON.parse(lines[10]!), [{ pointer: '/colour', detail: 'is not a known field' }, { pointer: '/email', detail: 'must match format "email"' }]);
  t.same(JSON.parse(lines[11]!), [{ name: 'Sandbox (email)', provider: 'sandbox', isDefault: true }], 'a development workspace: a sandbox default');
  t.same(JSON.parse(lines[12]!), { subject: 'Welcome friend', missing: ['customer.first_name'] });
  t.equal(lines[13], 'sent');
  t.same(JSON.parse(lines[14]!), { count: 1, first: { email: 'ada@example.com', 'custom.tier': 'gold' } });
  t.same(JSON.parse(lines[15]!), { status: 'completed', byStatus: { sent: 1 }, run: { matched: 1, queued: 1 } });
  t.same(lines.slice(16, 18), ['email,status', 'ada@example.com,sent']);
  t.match(JSON.parse(lines[18]!), { customer: { email: 'ada@example.com', custom: { tier: 'gold' }, events: [{ type: 'order.placed', properties: { total: 99.5 } }] } });
  t.same(JSON.parse(lines[19]!), { status: 'ready', checks: { database: 'ok', queue: 'ok' } });
  t.ok(Number(lines[20]) > 10, 'metrics are served');
});
