// npm run bench — every benchmark of the project, one after the other, then bench/results.json and
// its picture bench/results.svg.
// Runs each `bench:*` script of package.json in the order written there, as a child process with
// this terminal (its settings come from the environment: DATABASE_URL, BENCH_*), goes on past one
// that fails and names it at the end; then reads every bench/*.json and writes bench/results.json:
// { generated, machine, runs, sources, figures: [{ bench, name, unit, figure, ceiling, ceilingName,
// ceilingUnit, ratio, target, better, met, date, note?, untrusted? }] } — one entry per figure,
// ratio = figure / ceiling, target on the ratio (at least it, or at most it for times), and renders
// bench/results.svg (scripts/bench-svg.ts). Each bench file has a shape of its own: one small
// extractor per file below; a file with none gets a generic look for { ratio, ceiling } objects.
// Options: --only ingest,flow  run those benches only (the results still gather every bench/*.json);
//          --collect           run nothing: rebuild results.json and results.svg from the files there.
// Exit status: 1 when a bench failed (its figures, if any, come from its last good run).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { renderResultsSvg, formatRatio, type Figure, type Results } from './bench-svg.ts';

const BENCH_DIR = 'bench';
/** The order of the picture: the README's, then any other file by name. */
const ORDER = ['ingest', 'send', 'audience', 'flow', 'graphql', 'scale'];
const OUTPUTS = new Set(['results.json']);

// ---- the extractors: one per bench file -----------------------------------------------------------

type Json = Record<string, any>;
/** What an extractor answers; the rest (bench, date, ratio, met when not given) is filled in by complete(). */
type Extracted = Omit<Figure, 'bench' | 'script' | 'date' | 'met' | 'ratio' | 'ceilingUnit' | 'better'> & Partial<Pick<Figure, 'met' | 'ratio' | 'ceilingUnit' | 'better'>>;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const ms = (v: number) => `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`;

const extractors: Record<string, (j: Json) => Extracted[]> = {
  ingest: (j) => [
    {
      name: `Events in batches of ${j.settings?.batchSize ?? 1000}`, unit: 'events/s', figure: j.batch.median,
      ceiling: j.batch.ceiling.median, ceilingUnit: 'rows/s', ceilingName: 'raw multi-row INSERT', target: j.batch.target, met: j.batch.met,
      note: rounds(j.batch.roundRatios),
    },
    {
      name: `Single events, concurrency ${j.settings?.singleConcurrency ?? 50}`, unit: 'req/s', figure: j.single.median,
      ceiling: j.single.ceiling.median, ceilingName: 'Fastify hello world', target: j.single.target, met: j.single.met,
      note: j.single.latencyMs ? `p50 ${ms(j.single.latencyMs.p50)}, p99 ${ms(j.single.latencyMs.p99)}` : undefined,
    },
  ],
  send: (j) => [
    {
      name: `Personalised emails to a mock SendGrid (${(j.settings?.messages ?? 0).toLocaleString('en-US')})`, unit: 'emails/s', figure: j.sending.figure,
      ceiling: j.sending.ceiling.median, ceilingUnit: 'req/s', ceilingName: `the mock alone, c${j.settings?.sendConcurrency ?? '?'}`, target: j.sending.target, met: j.sending.met,
      note: j.sending.complete === false ? `INCOMPLETE: ${j.sending.incomplete}` : undefined,
    },
    {
      name: `SendGrid webhook batches of ${(j.settings?.webhookBatch ?? 5000).toLocaleString('en-US')}`, unit: 'events/s', figure: j.webhooks.median,
      ceiling: j.webhooks.ceiling.median, ceilingUnit: 'rows/s', ceilingName: 'raw INSERT into message_events', target: j.webhooks.target, met: j.webhooks.met,
      note: rounds(j.webhooks.roundRatios),
    },
  ],
  audience: (j) => [
    ...(j.segments as Json[]).map((s) => ({
      name: `Segment: ${s.name} (${Number(s.count).toLocaleString('en-US')})`, unit: 'ms', figure: s.compiler.medianMs,
      ceiling: s.handWritten.medianMs, ceilingName: 'the same count in hand-written SQL', target: j.settings?.targets?.ratio ?? 1.5, better: 'lower' as const,
      met: s.withinRatio === true && s.underSecond !== false,
    })),
    ...(j.tick?.available ? [{
      name: `Triggered action tick: ${Number(j.tick.matched).toLocaleString('en-US')} new customers queued`, unit: 'ms', figure: j.tick.durationMs,
      ceiling: j.tick.targetMs, ceilingName: 'the limit', target: 1, better: 'lower' as const, met: j.tick.met,
    }] : []),
  ],
  flow: (j) => {
    const t = j.throughput;
    const customers = (j.settings?.customers ?? 0).toLocaleString('en-US');
    const latency = j.latency;
    return [
      {
        name: `Flow engine, ${customers} customers, vs pg-boss`, unit: 'customer-steps/s', figure: t.figure,
        ceiling: t.pgboss.ceiling, ceilingUnit: 'jobs/s', ceilingName: 'pg-boss fetch + complete', target: t.pgboss.target, met: t.pgboss.met,
        note: `${t.loops} loop(s)`,
      },
      {
        name: `Flow engine, ${customers} customers, vs raw SQL`, unit: 'customer-steps/s', figure: t.figure,
        ceiling: t.raw.ceiling, ceilingUnit: 'rows/s', ceilingName: 'raw SQL claim-and-advance', target: t.raw.target, met: t.raw.met,
      },
      ...(num(latency?.p99) !== null ? [{
        name: `Event to first flow step at ${latency.eventsPerSecond} events/s, p99`, unit: 'ms', figure: latency.p99,
        ceiling: 1000, ceilingName: 'a second', target: 1, better: 'lower' as const, note: `p50 ${ms(latency.p50)}`,
      }] : []),
    ];
  },
  graphql: (j) => [
    {
      name: `GraphQL timeline page of ${j.settings?.page ?? 50}, concurrency ${j.settings?.connections ?? 20}`, unit: 'req/s', figure: j.graphql.median,
      ceiling: j.graphql.ceiling.median, ceilingName: 'hand-written SQL through the same pool', target: j.graphql.target, met: j.graphql.met,
      note: j.graphql.latencyMs ? `p50 ${ms(j.graphql.latencyMs.p50)}, p99 ${ms(j.graphql.latencyMs.p99)}` : undefined,
    },
  ],
  scale: (j) => {
    const out: Extracted[] = [];
    for (const [key, label] of [['flow', 'Flow engine'], ['sending', 'Sending']] as const) {
      const runs = (j[key]?.byWorkers ?? []) as Json[];
      const base = runs.find((r) => r.workers === 1);
      if (!base) continue;
      for (const r of runs.filter((r) => r.workers > 1)) {
        out.push({
          name: `${label}, ${r.workers} worker processes (${(r.figure / base.figure).toFixed(2)}x of 1)`, unit: j[key].unit.split(' ')[0], figure: r.figure,
          ceiling: base.figure * r.workers, ceilingName: `${r.workers} x 1 worker`, target: null,
        });
      }
    }
    return out;
  },
};

function rounds(ratios: unknown): string | undefined {
  return Array.isArray(ratios) && ratios.length > 1 ? `rounds ${ratios.map((r) => formatRatio(Number(r))).join(' / ')}` : undefined;
}

/** For a file without an extractor: every object holding a numeric ratio and a ceiling (a number or { median }). */
function generic(j: Json, bench: string): Extracted[] {
  const found: Extracted[] = [];
  const walk = (o: unknown, path: string[]) => {
    if (!o || typeof o !== 'object' || Array.isArray(o)) return;
    const r = o as Json;
    const ceiling = num(r.ceiling) ?? num(r.ceiling?.median);
    const figure = num(r.figure) ?? num(r.median) ?? num(r.perSecond);
    if (num(r.ratio) !== null && ceiling !== null && figure !== null) {
      found.push({
        name: String(r.name ?? path.join(' ')), unit: String(r.unit ?? (num(r.perSecond) !== null ? 'per s' : '')), figure, ceiling,
        ceilingName: typeof r.ceiling?.name === 'string' ? r.ceiling.name : null, target: num(r.target), met: typeof r.met === 'boolean' ? r.met : null,
      });
      return;
    }
    for (const [k, v] of Object.entries(r)) if (k !== 'settings') walk(v, [...path, k]);
  };
  walk(j, [bench]);
  return found;
}

function collect(scripts: string[], dir = BENCH_DIR): { figures: Figure[]; sources: { file: string; date: string | null; figures: number; problem?: string }[]; machine: Results['machine'] } {
  const figures: Figure[] = [];
  const sources: { file: string; date: string | null; figures: number; problem?: string }[] = [];
  let newest: Json | undefined;
  const rank = (f: string) => (ORDER.includes(f.replace(/\.json$/, '')) ? ORDER.indexOf(f.replace(/\.json$/, '')) : ORDER.length);
  const files = readdirSync(dir).filter((f) => f.endsWith('.json') && !OUTPUTS.has(f)).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  for (const file of files) {
    const bench = file.replace(/\.json$/, '');
    let j: Json;
    try {
      j = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Json;
    } catch (error) {
      sources.push({ file, date: null, figures: 0, problem: `not JSON: ${(error as Error).message}` });
      continue;
    }
    const date = typeof j.date === 'string' ? j.date : null;
    if (date && (!newest || date > String(newest.date))) newest = j;
    let found: Extracted[];
    try {
      found = extractors[bench] ? extractors[bench](j) : generic(j, bench);
    } catch (error) {
      // A file whose shape moved under its extractor: said, not fatal.
      sources.push({ file, date, figures: 0, problem: `unexpected shape: ${(error as Error).message}` });
      continue;
    }
    const untrusted = Array.isArray(j.failures) && j.failures.length > 0;
    const script = scripts.includes(`bench:${bench}`) ? `bench:${bench}` : null;
    for (const p of found) figures.push(complete(bench, script, date, p, untrusted));
    sources.push({ file, date, figures: found.length, ...(extractors[bench] ? {} : { problem: found.length ? 'no extractor: figures found by the generic look' : 'no extractor, and no { ratio, ceiling } found' }) });
  }
  const machine = newest ? { node: newest.node, cores: newest.cores, cpu: newest.cpu ?? null, postgres: newest.postgres } : null;
  return { figures, sources, machine };
}

function complete(bench: string, script: string | null, date: string | null, p: Extracted, untrusted: boolean): Figure {
  const better = p.better ?? 'higher';
  const ratio = p.ratio ?? (p.ceiling ? Math.round((p.figure / p.ceiling) * 1000) / 1000 : null);
  const met = p.met ?? (p.target === null || ratio === null ? null : better === 'higher' ? ratio >= p.target : ratio <= p.target);
  return {
    bench, script, name: p.name, unit: p.unit, figure: p.figure, ceiling: p.ceiling, ceilingName: p.ceilingName, ceilingUnit: p.ceilingUnit ?? null,
    ratio, target: p.target, better, met, date, ...(p.note ? { note: p.note } : {}), ...(untrusted ? { untrusted } : {}),
  };
}

// ---- running the benches -----------------------------------------------------------------------------

interface RunResult {
  script: string;
  status: 'ok' | 'failed' | 'interrupted';
  code: number | string | null;
  seconds: number;
}

function runScript(script: string): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn('npm', ['run', '--silent', script], { stdio: 'inherit', env: process.env });
    child.on('error', (error) => resolve({ script, status: 'failed', code: error.message, seconds: 0 }));
    child.on('exit', (code, signal) => {
      const seconds = Math.round((performance.now() - started) / 1000);
      const interrupted = signal === 'SIGINT' || code === 130;
      resolve({ script, status: code === 0 ? 'ok' : interrupted ? 'interrupted' : 'failed', code: signal ?? code, seconds });
    });
  });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const collectOnly = args.includes('--collect');
  const onlyIndex = args.indexOf('--only');
  const onlyArg = onlyIndex >= 0 ? args[onlyIndex + 1] : args.find((a) => a.startsWith('--only='))?.slice(7);
  const only = onlyArg ? new Set(onlyArg.split(',').map((s) => s.trim().replace(/^bench:/, '')).filter(Boolean)) : undefined;
  const scripts = Object.keys((JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts).filter((s) => s.startsWith('bench:'));
  if (only) {
    const unknown = [...only].filter((o) => !scripts.includes(`bench:${o}`));
    if (unknown.length) throw new Error(`--only names no bench script: ${unknown.join(', ')} (there are: ${scripts.map((s) => s.slice(6)).join(', ')})`);
  }
  const chosen = collectOnly ? [] : scripts.filter((s) => !only || only.has(s.slice(6)));
  // ^C reaches the bench in its turn (same process group): it cleans up, and no further bench starts.
  let interrupted = false;
  process.on('SIGINT', () => (interrupted = true));

  const runs: RunResult[] = [];
  for (const script of chosen) {
    if (interrupted) break;
    process.stdout.write(`\n=== npm run ${script} (${runs.length + 1} of ${chosen.length}) ===\n`);
    const result = await runScript(script);
    runs.push(result);
    process.stdout.write(`=== ${script}: ${result.status}${result.status === 'ok' ? '' : ` (${result.code})`} in ${result.seconds} s ===\n`);
    if (result.status === 'interrupted') interrupted = true;
  }

  const { figures, sources, machine } = collect(scripts);
  for (const f of figures) if (runs.some((r) => r.script === f.script && r.status !== 'ok')) f.stale = true;
  const results: Results & { runs: RunResult[]; sources: typeof sources } = { generated: new Date().toISOString(), machine, runs, sources, figures };
  writeFileSync(join(BENCH_DIR, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(BENCH_DIR, 'results.svg'), renderResultsSvg(results));

  process.stdout.write(`\nbench/results.json and bench/results.svg: ${figures.length} figures from ${sources.length} files\n`);
  for (const s of sources) process.stdout.write(`  ${s.file.padEnd(16)} ${s.date?.slice(0, 16).replace('T', ' ') ?? 'no date'.padEnd(16)}  ${s.figures} figure(s)${s.problem ? `  (${s.problem})` : ''}\n`);
  const missed = figures.filter((f) => f.met === false).length;
  const met = figures.filter((f) => f.met === true).length;
  process.stdout.write(`  targets: ${met} met, ${missed} missed, ${figures.length - met - missed} without a target${figures.some((f) => f.untrusted) ? '; some figures come from runs that reported errors' : ''}\n`);
  const failed = runs.filter((r) => r.status !== 'ok');
  if (failed.length) {
    process.stderr.write(`\n!!! ${failed.length} bench(es) did not finish cleanly: ${failed.map((r) => `${r.script} (${r.status}, ${r.code})`).join(', ')}; the figures of each come from the last run that wrote its file, if any\n`);
    return 1;
  }
  if (interrupted) return 130;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
