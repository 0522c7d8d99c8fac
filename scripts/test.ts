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
let pending = '';
const failures: string[] = [];
let inFailure = 0; // lines left to copy from the YAML block after a `not ok`
child.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk);
  const text = chunk.toString();
  tail = (tail + text).slice(-4000);
  const lines = (pending + text).split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    if (/^\s*not ok \d+/.test(line)) {
      failures.push(line);
      // An assertion's diagnostics (found, wanted, where); a subtest's (`# time=`) only repeat it.
      inFailure = / # time=/.test(line) ? 0 : 30;
    } else if (inFailure > 0) {
      if (/^\s*(ok|not ok) \d+|^\s*# Subtest:/.test(line)) inFailure = 0;
      else {
        failures.push(line);
        inFailure = /^\s*\.\.\.$/.test(line) ? 0 : inFailure - 1;
      }
    }
  }
});
const code: number = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? 1)));
await stop?.();
// The failures again at the end, innermost first, so a reader of the last lines of a long run
// (a CI log's tail) sees what failed and why.
if (failures.length > 0) process.stdout.write(`\nFailures:\n${failures.join('\n')}\n\n`);
// One plain closing line that any CI reader understands.
const summary = /# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?/.exec(tail);
if (summary) process.stdout.write(`${summary[2] ?? 0} passed, ${summary[3] ?? 0} failed\n`);
process.exit(code);
