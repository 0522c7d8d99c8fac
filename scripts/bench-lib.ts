// Small helpers of the benchmarks: statistics, number formatting, a text table, and a typed
// wrapper around autocannon (which ships no type declarations).
import { createRequire } from 'node:module';

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
export const ms = (n: number) => (Number.isFinite(n) ? `${n.toFixed(n < 10 ? 2 : 1)} ms` : 'n/a');
export const percent = (n: number) => (Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : 'n/a');
export const round3 = (n: number) => Math.round(n * 1000) / 1000;
/** A ratio against its target: "66% ok" or "20% MISSED". */
export const verdict = (ratio: number, target: number) => `${percent(ratio)} ${ratio >= target ? 'ok' : 'MISSED'}`;

/** A left/right-aligned text table; the first row is the header. Columns after the first are right-aligned unless listed. */
export function table(rows: string[][], leftAligned: number[] = [0]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) => row.map((cell, i) => (leftAligned.includes(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('   ').trimEnd())
    .join('\n');
}

// ---- autocannon ------------------------------------------------------------------------------

export interface LoadRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  setupRequest?: (request: LoadRequest, context: Record<string, unknown>) => LoadRequest;
}

export interface LoadOptions {
  url: string;
  connections: number;
  duration: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  requests?: LoadRequest[];
  /** Seconds before a request counts as timed out. */
  timeout?: number;
}

export interface Histogram {
  average: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p99: number;
  total?: number;
}

export interface LoadResult {
  requests: Histogram & { total: number };
  latency: Histogram;
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}

type Autocannon = (options: LoadOptions, done: (error: Error | null, result: LoadResult) => void) => unknown;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export function load(options: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

/** Responses that were not 2xx, by status, e.g. "422 x3, 500 x1". */
export function describeFailures(result: LoadResult): string {
  const parts = Object.entries(result.statusCodeStats)
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, { count }]) => `${code} x${count}`);
  if (result.errors) parts.push(`${result.errors} connection errors${result.timeouts ? ` (${result.timeouts} timeouts)` : ''}`);
  return parts.join(', ');
}

// ---- CPU profiles ----------------------------------------------------------------------------

/** The parts of a V8 .cpuprofile (inspector Profiler.stop, or --cpu-prof) that the summary reads. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  /** "function (file:line)" or, grouped by file, the file or package. */
  name: string;
  ms: number;
  /** Of the sampled time outside (idle). */
  share: number;
}

const shortUrl = (url: string) => {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url);
  if (pkg) return `${pkg[1]}/${pkg[2]}`;
  const src = /\/((?:src|scripts|test)\/.*)$/.exec(url);
  return src ? src[1]! : url.replace(/^file:\/\//, '') || '(native)';
};
const packageOf = (url: string) => {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  const src = /\/((?:src|scripts|test)\/.*)$/.exec(url);
  return src ? src[1]! : url.startsWith('node:') ? 'node core' : url ? shortUrl(url) : '(native/V8)';
};

/** Self time by function, by file, or by package (node_modules package or own file), highest first. */
export function selfTime(profile: CpuProfile, by: 'function' | 'file' | 'package' = 'function', top = 20): SelfTime[] {
  const byNode = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // timeDeltas[i] is the time before sample i: the time of sample i is the next delta.
  for (let i = 0; i < samples.length; i++) byNode.set(samples[i]!, (byNode.get(samples[i]!) ?? 0) + (deltas[i + 1] ?? 0) / 1000);
  const totals = new Map<string, number>();
  let busy = 0;
  for (const node of profile.nodes) {
    const spent = byNode.get(node.id) ?? 0;
    if (!spent) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    busy += spent;
    const special = functionName.startsWith('(');
    const key = special
      ? functionName
      : by === 'function'
        ? `${functionName || '(anonymous)'} (${shortUrl(url)}:${lineNumber + 1})`
        : by === 'file'
          ? shortUrl(url)
          : packageOf(url);
    totals.set(key, (totals.get(key) ?? 0) + spent);
  }
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, spent]) => ({ name, ms: Math.round(spent), share: busy ? spent / busy : 0 }));
}
