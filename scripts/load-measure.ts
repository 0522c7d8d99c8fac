// The measuring side of `npm run load` (scripts/load.ts): one autocannon instance per request kind,
// all at once, each response's latency kept (autocannon's own summary has whole milliseconds and
// no per-second counts); and the server's memory, read every second while they run.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type { ChildProcess } from 'node:child_process';
import { ask } from './bench-harness.ts';
import { median, type LoadOptions, type LoadRequest, type LoadResult } from './bench-lib.ts';

type Instance = { on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void };
type Autocannon = (options: LoadOptions, done: (error: Error | null, result: LoadResult) => void) => Instance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface KindRun {
  kind: string;
  connections: number;
  result: LoadResult;
  /** Milliseconds of every response, any status, in the order they came. */
  latencies: number[];
  /** Responses finished in each second of the run. */
  perSecond: number[];
}

/** Runs every kind at once for `seconds`, each with its own connections and request. */
export async function runMix(url: string, headers: Record<string, string>, kinds: { kind: string; connections: number; request: LoadRequest }[], seconds: number): Promise<KindRun[]> {
  const started = performance.now();
  return Promise.all(
    kinds.map(({ kind, connections, request }) => {
      const latencies: number[] = [];
      const perSecond = new Array<number>(seconds + 1).fill(0);
      return new Promise<KindRun>((resolve, reject) => {
        const instance = autocannon({ url, connections, duration: seconds, timeout: 30, headers, requests: [request] }, (error, result) =>
          error ? reject(error) : resolve({ kind, connections, result, latencies, perSecond }),
        );
        instance.on('response', (_client, _status, _bytes, ms) => {
          latencies.push(ms);
          const second = Math.floor((performance.now() - started) / 1000);
          if (second < perSecond.length) perSecond[second]!++;
        });
      });
    }),
  );
}

/** The p-th quantile (0..1) of unsorted values. */
export function quantile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

// ---- memory --------------------------------------------------------------------------------------

export interface MemoryAnswer {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** The event loop's delay since the previous answer (ms). */
  loopDelayMs: { p50: number; p99: number; max: number };
}

export interface Sample {
  /** Seconds since the start of the run. */
  t: number;
  /** VmRSS from /proc (MB): read from outside, so it is there even when Herald's loop is busy. */
  rssMb: number;
  /** From process.memoryUsage() inside Herald, over IPC (null when it did not answer in time). */
  heapUsedMb: number | null;
  externalMb: number | null;
  loopDelayP99Ms: number | null;
}

const MB = 1024 * 1024;
const round1 = (n: number) => Math.round(n * 10) / 10;

export function rssMbOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return round1(Number(match[1]) / 1024);
}

/** Samples the child's memory every second (and once at once) until stopped. */
export function sampleMemory(child: ChildProcess): { samples: Sample[]; stop: () => Promise<Sample[]> } {
  const samples: Sample[] = [];
  const pending: Promise<unknown>[] = [];
  const started = performance.now();
  const take = () => {
    const sample: Sample = { t: Math.round((performance.now() - started) / 100) / 10, rssMb: rssMbOf(child.pid!), heapUsedMb: null, externalMb: null, loopDelayP99Ms: null };
    samples.push(sample);
    pending.push(
      ask<MemoryAnswer>(child, 'memory', {}, 5000).then(
        (m) => Object.assign(sample, { heapUsedMb: round1(m.heapUsed / MB), externalMb: round1(m.external / MB), loopDelayP99Ms: round1(m.loopDelayMs.p99) }),
        () => {},
      ),
    );
  };
  take();
  const timer = setInterval(take, 1000);
  return {
    samples,
    stop: async () => {
      clearInterval(timer);
      take();
      await Promise.all(pending);
      return samples;
    },
  };
}

/** Memory after a full garbage collection (what the process retains), MB. */
export interface Retained {
  rssMb: number;
  heapUsedMb: number;
  externalMb: number;
}

export interface MemoryVerdict {
  /** What is retained after a full GC at the start of the run and at its end (after the backlog), and RSS's growth between. */
  retained: { startOfRun: Retained; endOfRun: Retained; rssGrowth: number; heapGrowth: number };
  /** The sampled RSS. */
  startMb: number;
  /** Medians of the samples around the middle of the run and over its last seconds (smoothing out the GC's saw). */
  midMb: number;
  endMb: number;
  peakMb: number;
  /** endMb / midMb - 1: reported, not checked (see scripts/load.ts). */
  secondHalfGrowth: number;
  /** Least squares over the second half. */
  secondHalfSlopeMbPerMinute: number;
  heapUsed: { startMb: number | null; midMb: number | null; endMb: number | null; peakMb: number | null; secondHalfGrowth: number | null };
  loopDelayP99MaxMs: number | null;
  limits: { maxGrowth: number; maxRssMb: number };
  bounded: boolean;
  reasons: string[];
}

/** Whether RSS stayed bounded: what is retained after a full GC grew within `maxGrowth` over the run, and the sampled RSS peaked under `maxRssMb`. */
export function memoryVerdict(
  samples: Sample[], seconds: number, retained: { startOfRun: Retained; endOfRun: Retained }, limits: { maxGrowth: number; maxRssMb: number },
): MemoryVerdict {
  const window = Math.max(2, Math.round(seconds / 20));
  const around = (from: number, to: number, pick: (s: Sample) => number | null) => {
    const values = samples.filter((s) => s.t >= from && s.t <= to).map(pick).filter((v): v is number => v !== null);
    return values.length ? median(values) : null;
  };
  const rss = (s: Sample) => s.rssMb;
  const heap = (s: Sample) => s.heapUsedMb;
  const half = seconds / 2;
  const nullable = (n: number | null) => (n === null ? null : round1(n));
  const midMb = round1(around(half - window, half + window, rss) ?? Number.NaN);
  const endMb = round1(around(seconds - 2 * window, seconds + 1, rss) ?? Number.NaN);
  const second = samples.filter((s) => s.t >= half);
  const meanT = second.reduce((a, s) => a + s.t, 0) / second.length;
  const meanR = second.reduce((a, s) => a + s.rssMb, 0) / second.length;
  const slope = second.reduce((a, s) => a + (s.t - meanT) * (s.rssMb - meanR), 0) / Math.max(1e-9, second.reduce((a, s) => a + (s.t - meanT) ** 2, 0));
  const heapValues = samples.map(heap).filter((v): v is number => v !== null);
  const heapMid = nullable(around(half - window, half + window, heap));
  const heapEnd = nullable(around(seconds - 2 * window, seconds + 1, heap));
  const delays = samples.map((s) => s.loopDelayP99Ms).filter((v): v is number => v !== null);
  const peakMb = Math.max(...samples.map(rss));
  const growth = endMb / midMb - 1;
  const rssGrowth = retained.endOfRun.rssMb / retained.startOfRun.rssMb - 1;
  const reasons: string[] = [];
  if (!(rssGrowth <= limits.maxGrowth)) {
    reasons.push(`the RSS retained after a full GC grew ${(rssGrowth * 100).toFixed(1)}% over the run, ${retained.startOfRun.rssMb} to ${retained.endOfRun.rssMb} MB (limit ${(limits.maxGrowth * 100).toFixed(0)}%)`);
  }
  if (peakMb > limits.maxRssMb) reasons.push(`RSS peaked at ${peakMb} MB (limit ${limits.maxRssMb} MB)`);
  const r3 = (n: number) => Math.round(n * 1000) / 1000;
  return {
    retained: { ...retained, rssGrowth: r3(rssGrowth), heapGrowth: r3(retained.endOfRun.heapUsedMb / retained.startOfRun.heapUsedMb - 1) },
    startMb: samples[0]!.rssMb, midMb, endMb, peakMb,
    secondHalfGrowth: r3(growth),
    secondHalfSlopeMbPerMinute: round1(slope * 60),
    heapUsed: {
      startMb: samples[0]!.heapUsedMb, midMb: heapMid, endMb: heapEnd, peakMb: heapValues.length ? Math.max(...heapValues) : null,
      secondHalfGrowth: heapMid && heapEnd ? Math.round((heapEnd / heapMid - 1) * 1000) / 1000 : null,
    },
    loopDelayP99MaxMs: delays.length ? Math.max(...delays) : null,
    limits,
    bounded: reasons.length === 0,
    reasons,
  };
}
