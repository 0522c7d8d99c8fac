// Whether a failure means the database cannot be reached (down, restarting, shutting down), as
// opposed to a query it refused: the API answers those with 503, and workers wait them out.

/** postgres.js and Node socket codes, and PostgreSQL's connection (08) and shutdown (57P0x) SQLSTATEs. */
const DOWN_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  '08000', '08001', '08003', '08006', '57P01', '57P02', '57P03',
]);
/** node-postgres (pg-boss's driver) says it in words only. */
const DOWN_MESSAGES = /^Connection terminated|^Client has encountered a connection error|^timeout exceeded when trying to connect/;

/** drizzle and pg-boss wrap the driver's error: its causes are looked at too. */
export function isDatabaseDown(error: unknown): boolean {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && DOWN_CODES.has(code)) return true;
    if (typeof message === 'string' && DOWN_MESSAGES.test(message)) return true;
  }
  return false;
}

/**
 * Runs `fn`, and runs it again while it fails because the database is unreachable, for up to
 * `ms` (retries 0.2 s apart at first, 2 s at most). For writes that must not be dropped on a
 * restart; `fn` must be safe to repeat (its first try may have committed unseen).
 */
export async function retryWhileDown<T>(fn: () => Promise<T>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (let delay = 200; ; delay = Math.min(delay * 2, 2000)) {
    try {
      return await fn();
    } catch (error) {
      if (!isDatabaseDown(error) || Date.now() + delay > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
