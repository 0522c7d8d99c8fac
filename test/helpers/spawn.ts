// The real entry point (`node src/server.ts`) as a child process, for tests that need a process
// they can kill: its output, its exit, and a kill that waits for it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SERVER = new URL('../../src/server.ts', import.meta.url).pathname;

export interface HeraldChild {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code, or the signal's name when a signal ended it. */
  exited: Promise<number | string | null>;
  /** Resolves once the process prints that it listens; rejects if it exits first or takes longer than `ms`. */
  listening(ms?: number): Promise<void>;
  /** Sends the signal (SIGKILL unless told) and waits for the exit; a no-op once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<number | string | null>;
}

const children = new Set<ChildProcess>();
// A test process that dies with children running leaves no orphans behind.
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/**
 * Starts `node src/server.ts` with the given settings on top of this process's environment, minus
 * its HERALD_*, DATABASE_URL, PORT and NODE_ENV (LOG_LEVEL warn and a data dir of its own unless told).
 */
export function spawnHerald(env: Record<string, string>): HeraldChild {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_') && k !== 'DATABASE_URL' && k !== 'PORT' && k !== 'NODE_ENV'));
  const child = spawn(process.execPath, [SERVER], {
    env: { ...clean, LOG_LEVEL: 'warn', HERALD_DATA_DIR: mkdtempSync(join(tmpdir(), 'herald-child-')), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string | null>((resolve) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    output: () => out,
    exited,
    async listening(ms = 30_000) {
      const until = Date.now() + ms;
      while (!/listening on/.test(out)) {
        if (done) throw new Error(`the process exited before listening: ${out}`);
        if (Date.now() > until) throw new Error(`the process did not listen within ${ms} ms: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal = 'SIGKILL') {
      if (!done) child.kill(signal);
      return exited;
    },
  };
}
