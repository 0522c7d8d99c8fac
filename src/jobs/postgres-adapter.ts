// Lets pg-boss create a job inside a postgres.js transaction, so the job commits with the change
// that caused it or not at all (the drizzle side uses pg-boss's own fromDrizzle).
import type { TransactionSql } from 'postgres';

export function fromPostgres(tx: TransactionSql) {
  return {
    async executeSql(text: string, values?: unknown[]) {
      return { rows: await tx.unsafe(text, (values ?? []) as never[]) };
    },
  };
}
