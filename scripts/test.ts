// npm test: runs the tap suite against TEST_DATABASE_URL, or, when it is unset (a fresh
// machine), against an embedded PostgreSQL started for the run and stopped after it.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres.ts';

const args = process.argv.slice(2);
let stop: (() => Promise<void>) | undefined;
const env: NodeJS.ProcessEnv = { ...process.env, TAP_TYPE_STRIP_ONLY: '1' };
if (!env.TEST_DATABASE_URL) {
  const dir = join(process.cwd(), '.herald', 'test-pg');
  mkdirSync(dir, { recursive: true });
  process.stdout.write(`TEST_DATABASE_URL is unset: starting an embedded PostgreSQL in ${dir}\n`);
  const pg = await startEmbeddedPostgres(dir, { info: (m) => process.stdout.write(`${m}\n`), warn: (m) => process.stderr.write(`${m}\n`), debug: () => {} }, 'postgres');
  env.TEST_DATABASE_URL = pg.url;
  stop = pg.stop;
}

const child = spawn(process.execPath, [join('node_modules', 'tap', 'dist', 'esm', 'run.mjs'), ...args], { env, stdio: ['inherit', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4000);
});
const code: number = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
await stop?.();
// One plain closing line that any CI reader understands.
const summary = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?/.exec(tail);
if (summary) process.stdout.write(`${summary[2] ?? 0} passed, ${summary[3] ?? 0} failed\n`);
process.exit(code);
