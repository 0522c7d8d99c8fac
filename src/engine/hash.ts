import { createHash } from 'node:crypto';

/**
 * A customer's bucket in [0, 100) for a node: the same customer always lands in the same
 * bucket of the same splitter or A/B test, and buckets of different nodes are independent.
 */
export function bucket(flowId: string, nodeId: string, customerId: string): number {
  const digest = createHash('sha256').update(`${flowId}\u0000${nodeId}\u0000${customerId}`).digest();
  return (digest.readUInt32BE(0) / 0x1_0000_0000) * 100;
}

/** Picks the key whose cumulative share covers the bucket. */
export function pick<T extends { key: string; share: number }>(options: T[], at: number): string | undefined {
  let sum = 0;
  for (const o of options) {
    sum += o.share;
    if (at < sum) return o.key;
  }
  return undefined;
}
