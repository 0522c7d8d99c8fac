// postinstall: patches postgres.js 3.4.x (the driver) against a crash and a stuck connection when
// PostgreSQL goes away under it (found by test/faults-db.test.ts; upstream porsager/postgres
// issues #1066, #1154, #1208, fixes proposed in PRs #1168, #1176, #1209, unreleased as of 3.4.9):
//
// 1. A small write is flushed on setImmediate. When the connection closes first (a restart of
//    PostgreSQL), the flush dereferences the null socket and throws outside any promise: the
//    process dies. It happens every time a transaction's connection dies, since the driver then
//    sends ROLLBACK on it. Patched: the flush finds no socket, drops the bytes and rejects the
//    queries waiting on that connection with CONNECTION_CLOSED.
// 2. Closing cancels the pending flush but leaves its handle set, so that connection never
//    schedules a flush again: after it reconnects its startup message is never sent and every
//    use of it ends in CONNECT_TIMEOUT. Patched: closing forgets the handle and the bytes.
//
// Idempotent; fails loudly when the driver's code no longer looks as expected (review then).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const MARK = '/* herald-patch: closed socket */';

const EDITS: [string, string][] = [
  [
    '  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)',
    `  function nextWrite(fn) {\n    ${MARK}\n    if (!socket) {\n      chunk = nextWriteTimer = null\n      error(Errors.connection('CONNECTION_CLOSED', options))\n      return false\n    }\n    const x = socket.write(chunk, fn)`,
  ],
  ['    clearImmediate(nextWriteTimer)\n    if (socket) {', `    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null ${MARK}\n    if (socket) {`],
  ['    clearImmediate(nextWriteTimer)\n    socket.removeListener', `    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null ${MARK}\n    socket.removeListener`],
];

/** The driver's connection.js files (ESM and CommonJS builds). */
export function driverFiles(): string[] {
  // require.resolve finds the CommonJS build: <root>/cjs/src/index.js.
  const root = join(dirname(createRequire(import.meta.url).resolve('postgres')), '..', '..');
  return [join(root, 'src', 'connection.js'), join(root, 'cjs', 'src', 'connection.js')];
}

export function isPatched(source: string): boolean {
  return source.split(MARK).length - 1 === EDITS.length;
}

export function patch(source: string): string {
  if (isPatched(source)) return source;
  let out = source;
  for (const [from, to] of EDITS) {
    if (out.split(from).length !== 2) throw new Error(`postgres.js does not look as expected (${JSON.stringify(from.split('\n')[0])}): review scripts/patch-postgres.ts for this version`);
    out = out.replace(from, to);
  }
  return out;
}

if (import.meta.main) {
  for (const file of driverFiles()) {
    const source = readFileSync(file, 'utf8');
    if (isPatched(source)) continue;
    writeFileSync(file, patch(source));
    process.stdout.write(`patched ${file}\n`);
  }
}
