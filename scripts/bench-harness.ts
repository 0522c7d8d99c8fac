// The child-process plumbing the benchmarks share. A bench script forks itself in server modes
// (Herald, and a ceiling's server), so that the load generator never shares an event loop with a
// server; this module holds both sides of that: the child's announce and answers, the parent's
// start, stop and questions. And the rest of a run around it: the failures and totals, the
// cleanups, the bench database, the heading lines, the report file and the end of the run.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import postgres from 'postgres';
import { describeFailures, int, load, type LoadOptions, type LoadResult } from './bench-lib.ts';
import type { Runtime } from '../src/runtime/runtime.ts';

/** Pause after each measurement, so that requests cut off at its end do not overlap the next one. */
export const DRAIN_MS = 300;

export function positive(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value && Number.isInteger(n) && n > 0 ? n : fallback;
}

// ---- IPC between the bench and its children ------------------------------------------------------

type Ready = { ready: true; port: number };
const isReady = (m: unknown): m is Ready => typeof m === 'object' && m !== null && (m as Ready).ready === true;
export type Question = { ask: string; seq: number; [key: string]: unknown };
type Answer = { seq: number; answer?: unknown; error?: string };
const isQuestion = (m: unknown): m is Question => typeof m === 'object' && m !== null && typeof (m as Question).ask === 'string';
const isAnswer = (m: unknown): m is Answer => typeof m === 'object' && m !== null && typeof (m as Answer).seq === 'number' && !('ask' in m);
export type Answers = Record<string, (question: Question) => unknown>;

/**
 * Herald itself (a child mode), started through the runtime API like server.ts does; `extra` adds to its configuration.
 * `answers` may be made from the runtime (its deps, its pool), for questions answered inside Herald's process.
 */
export async function serveHerald(extra: Record<string, string> = {}, answers: Answers | ((runtime: Runtime) => Answers) = {}): Promise<void> {
  const { loadConfig } = await import('../src/config.ts');
  const { startRuntime } = await import('../src/runtime/runtime.ts');
  const env = process.env;
  const config = loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: env.BENCH_DATABASE_URL,
    HERALD_DATA_DIR: env.BENCH_DATA_DIR,
    HERALD_ROOT_TOKEN: env.BENCH_ROOT_TOKEN,
    HERALD_SECRET: 'x'.repeat(40),
    LOG_LEVEL: 'warn',
    HERALD_RATE_LIMIT: '100000000',
    PORT: '0',
    HOST: '127.0.0.1',
    ...extra,
  });
  // Logs at LOG_LEVEL=warn: silent on the happy path; the parent collects what a failure logs.
  const runtime = await startRuntime(config, { logger: true });
  await runtime.app.listen({ port: 0, host: '127.0.0.1' });
  await announce(runtime.app.server.address(), () => runtime.close(), typeof answers === 'function' ? answers(runtime) : answers);
}

/** The answers that start and stop a CPU profile of the child (`profileStart`, `profileStop` with a path). */
export function profilerAnswers(): Answers {
  let session: import('node:inspector/promises').Session | undefined;
  return {
    async profileStart() {
      const { Session } = await import('node:inspector/promises');
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      return true;
    },
    async profileStop(question) {
      if (!session) throw new Error('no profile running');
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      session = undefined;
      writeFileSync(String(question.path), JSON.stringify(profile));
      return String(question.path);
    },
  };
}

/** Tells the parent the port, answers its questions, then stops on its word or when it goes away. */
export async function announce(address: unknown, close: () => Promise<unknown>, answers: Answers = {}): Promise<void> {
  const port = typeof address === 'object' && address !== null ? (address as { port: number }).port : 0;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await close().catch((error: unknown) => process.stderr.write(`bench child: close failed: ${String(error)}\n`));
    process.exit(0); // exits normally, so that --cpu-prof writes its profile
  };
  process.on('message', (m) => {
    if (m === 'stop') return void stop();
    if (isQuestion(m)) answer(m, answers[m.ask]);
  });
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => {}); // a ^C reaches the whole group: the parent decides
  process.send!({ ready: true, port } satisfies Ready);
}

function answer(question: Question, answering: Answers[string] | undefined): void {
  Promise.resolve()
    .then(() => {
      if (!answering) throw new Error(`unknown question ${question.ask}`);
      return answering(question);
    })
    .then(
      (value) => process.send?.({ seq: question.seq, answer: value } satisfies Answer),
      (error: unknown) => process.send?.({ seq: question.seq, error: error instanceof Error ? error.message : String(error) } satisfies Answer),
    );
}

let questions = 0;
/** Asks a child something over IPC (see announce) and waits for its answer. */
export function ask<T>(child: ChildProcess, question: string, extra: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<T> {
  const seq = ++questions;
  return new Promise<T>((ok, fail) => {
    const listener = (m: unknown) => {
      if (!isAnswer(m) || m.seq !== seq) return;
      clearTimeout(timer);
      child.off('message', listener);
      if (m.error) fail(new Error(`${question}: ${m.error}`));
      else ok(m.answer as T);
    };
    const timer = setTimeout(() => {
      child.off('message', listener);
      fail(new Error(`no answer to ${question} within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', listener);
    child.send({ ask: question, seq, ...extra } satisfies Question);
  });
}

// ---- the run: failures, totals, cleanups -------------------------------------------------------

interface RunFailures {
  what: string;
  detail: string;
}

export const failures: RunFailures[] = [];
/** Over every run, warm-ups included. */
export const totals = { requests: 0, non2xx: 0, connectionErrors: 0, timeouts: 0, failedInserts: 0 };
/** What the servers logged at warn level or above (the first few lines, and how many). */
const serverLog = { lines: 0, first: [] as string[] };
export const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      await step().catch((error: unknown) => process.stderr.write(`cleanup: ${error instanceof Error ? error.message : String(error)}\n`));
    }
  })());
}

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Cleans up on ^C or SIGTERM; says the bench's name, the machine and `settings`, and whether the machine is already busy. */
export function begin(name: string, settings: string): { started: number; cores: number; loadAtStart: number } {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const started = performance.now();
  const cores = availableParallelism();
  say(`${name}: node ${process.version}, ${cores} cores (${cpus()[0]?.model.trim() ?? 'unknown cpu'})`);
  say(settings);
  const loadAtStart = loadavg()[0] ?? 0;
  if (loadAtStart > cores / 4) say(`note: the machine is already busy (load average ${loadAtStart.toFixed(2)}): figures and ceilings will be noisier`);
  return { started, cores, loadAtStart };
}

/** Adds a load run to the totals, and its failed requests (or its lack of any success) to the failures. */
export function checkLoad(result: LoadResult, what: string): void {
  totals.requests += result.requests.total;
  totals.non2xx += result.non2xx;
  totals.connectionErrors += result.errors;
  totals.timeouts += result.timeouts;
  const failed = describeFailures(result);
  if (failed) failures.push({ what, detail: failed });
  if (result['2xx'] === 0) failures.push({ what, detail: 'no successful response at all' });
}

/** One autocannon measurement, checked, then drained: 2xx/s and latency. */
export async function measure(options: LoadOptions, what: string) {
  const result = await load(options);
  checkLoad(result, what);
  await sleep(DRAIN_MS);
  return { perSecond: result['2xx'] / result.duration, p50: result.latency.p50, p99: result.latency.p99, result };
}

/** The error totals line; "YES" on any error, or on `anyFailure`. */
export function sayErrorTotals(anyFailure = false): void {
  const errorCount = totals.non2xx + totals.connectionErrors + totals.failedInserts;
  say(
    `errors: ${errorCount || anyFailure ? 'YES' : 'none'} — ${int(totals.requests)} HTTP requests, ${int(totals.non2xx)} non-2xx, ` +
      `${int(totals.connectionErrors)} connection errors (${int(totals.timeouts)} timeouts), ${int(totals.failedInserts)} failed raw INSERTs`,
  );
}

// ---- the database ----------------------------------------------------------------------------

/** A temporary directory for the run, removed at the end. */
export async function tempDir(): Promise<string> {
  const tmp = await mkdtemp(join(tmpdir(), 'herald-bench-'));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  return tmp;
}

/** The database server: the given one, or an embedded one for this run (in `tmp`). */
async function databaseServer(tmp: string): Promise<string> {
  const given = process.env.DATABASE_URL || process.env.TEST_DATABASE_URL;
  if (given) return given;
  say('DATABASE_URL and TEST_DATABASE_URL are unset: starting an embedded PostgreSQL');
  const { startEmbeddedPostgres } = await import('../src/runtime/embedded-postgres.ts');
  const quiet = { info: () => {}, warn: (m: string) => process.stderr.write(`${m}\n`), debug: () => {} };
  // Run as root, embedded-postgres runs initdb as a "postgres" user, who must reach the directory.
  await chmod(tmp, 0o755);
  const pg = await startEmbeddedPostgres(join(tmp, 'pg-data'), quiet, 'postgres');
  cleanups.push(() => pg.stop());
  return pg.url;
}

/**
 * A fresh herald_bench_<random> database, dropped at the end unless `keep` (BENCH_KEEP_DATABASE=1);
 * or, given `name`, that database, created when missing and always kept (a bench's cached data:
 * `existed` tells whether it was there already).
 */
export async function benchDatabase(tmp: string, keep = false, name?: string): Promise<{ dbName: string; benchUrl: string; pgVersion: string; existed: boolean }> {
  const adminUrl = await databaseServer(tmp);
  const dbName = name ?? `herald_bench_${randomBytes(5).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  cleanups.push(() => admin.end({ timeout: 5 }));
  const existed = name !== undefined && (await admin`select 1 from pg_database where datname = ${name}`).length > 0;
  if (!existed) await admin.unsafe(`create database "${dbName}"`);
  if (keep || name !== undefined) cleanups.push(async () => say(`${name === undefined ? 'BENCH_KEEP_DATABASE=1: ' : ''}the database ${dbName} is kept`));
  else cleanups.push(() => admin.unsafe(`drop database if exists "${dbName}" with (force)`));
  const benchUrlObject = new URL(adminUrl);
  benchUrlObject.pathname = `/${dbName}`;
  const [{ version: pgVersion } = { version: '?' }] = await admin<{ version: string }[]>`select current_setting('server_version') as version`;
  return { dbName, benchUrl: benchUrlObject.toString(), pgVersion, existed };
}

// ---- the children --------------------------------------------------------------------------------

/** A line a server logged (pino JSON at warn level or above): kept short, for the end of a failed run. */
function noteServerLine(name: string, line: string): void {
  serverLog.lines++;
  if (serverLog.first.length >= 5) return;
  let text = line;
  try {
    const entry = JSON.parse(line) as { msg?: string; err?: { type?: string; message?: string; stack?: string } };
    const at = entry.err?.stack?.split('\n').find((l) => l.includes('/src/') && !l.includes('node_modules'))?.trim();
    text = [entry.msg, entry.err && `${entry.err.type ?? 'Error'}: ${entry.err.message ?? ''}`, at].filter(Boolean).join(' — ');
  } catch {
    // not JSON: keep the line as it is
  }
  serverLog.first.push(`${name}: ${text.slice(0, 600)}`);
}

export interface ChildOptions {
  env?: Record<string, string>;
  execArgv?: string[];
  /** What a failure calls the child when it exits during the bench ("process"). */
  noun?: string;
}

/** Forks `script` (the bench script itself) in a server mode and waits for its port; registers its stop as a cleanup. */
export async function startChild(script: string, name: string, args: string[], options: ChildOptions = {}): Promise<{ port: number; child: ChildProcess }> {
  const child = fork(script, args, { env: { ...process.env, ...options.env }, execArgv: options.execArgv ?? [], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) noteServerLine(name, line);
  });
  stopAtCleanup(child, name);
  const port = await portOf(child, name);
  child.once('exit', (code, signal) => {
    if (!cleaning && !stoppedEarly.has(child)) failures.push({ what: name, detail: `the ${options.noun ?? 'process'} exited during the bench (${signal ?? code})` });
  });
  return { port, child };
}

const stoppedEarly = new WeakSet<ChildProcess>();

/** Stops a child before the end of the run (a phase is done with it): its exit is then no failure. */
export async function stopChild(child: ChildProcess, name: string): Promise<void> {
  stoppedEarly.add(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  await askToStop(child, name, new Promise<void>((ok) => child.once('exit', () => ok())));
}

/** Asks a child to stop (IPC 'stop'), and kills it if it has not exited 25 s later. */
async function askToStop(child: ChildProcess, name: string, exit: Promise<void>): Promise<void> {
  if (child.connected) child.send('stop');
  const stopped = await Promise.race([exit.then(() => true), sleep(25_000).then(() => false)]);
  if (!stopped) {
    process.stderr.write(`${name} did not stop in time: killing it\n`);
    child.kill('SIGKILL');
    await exit;
  }
}

function stopAtCleanup(child: ChildProcess, name: string): void {
  let exited = false;
  const exit = new Promise<void>((ok) => child.once('exit', () => ((exited = true), ok())));
  cleanups.push(async () => {
    if (!exited) await askToStop(child, name, exit);
  });
}

function portOf(child: ChildProcess, name: string): Promise<number> {
  return new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start within 60 s`)), 60_000);
    child.on('message', (m) => {
      if (isReady(m)) {
        clearTimeout(timer);
        ok(m.port);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited (${signal ?? code}) before it was ready`));
    });
  });
}

/** Herald in a child (`script --serve`, see serveHerald) on the bench database, with a fresh root token; `cpuProfileDir` runs it with --cpu-prof. */
export async function startHerald(script: string, run: { benchUrl: string; tmp: string; cpuProfileDir?: string | undefined; noun?: string }) {
  const rootToken = `hr_bench_${randomBytes(24).toString('base64url')}`;
  const { port, child } = await startChild(script, 'herald', ['--serve'], {
    env: { BENCH_DATABASE_URL: run.benchUrl, BENCH_DATA_DIR: join(run.tmp, 'herald-data'), BENCH_ROOT_TOKEN: rootToken },
    execArgv: run.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${run.cpuProfileDir}`] : [],
    ...(run.noun ? { noun: run.noun } : {}),
  });
  return { port, child, url: `http://127.0.0.1:${port}`, rootToken };
}

/**
 * A Herald worker in a child (`script --serve-worker`, which serves serveHerald({ HERALD_ROLE: 'worker' })) on the bench
 * database. It connects as application_name `herald-worker-<index>` (the connection URL's parameter, which postgres.js and
 * pg prefer to the name Herald sets), so that its sessions, and what they write, can be told from other workers'.
 */
export async function startHeraldWorker(script: string, run: { benchUrl: string; tmp: string; rootToken: string }, index: number) {
  const applicationName = `herald-worker-${index}`;
  const url = new URL(run.benchUrl);
  url.searchParams.set('application_name', applicationName);
  const { port, child } = await startChild(script, applicationName, ['--serve-worker'], {
    env: { BENCH_DATABASE_URL: url.toString(), BENCH_DATA_DIR: join(run.tmp, `${applicationName}-data`), BENCH_ROOT_TOKEN: run.rootToken },
    noun: 'worker process',
  });
  return { port, child, applicationName, url: `http://127.0.0.1:${port}` };
}

/** A call to Herald's API during the setup: JSON (or `contentType`) in, JSON out, anything but 2xx thrown. */
export function heraldApi(baseUrl: string) {
  return async (method: string, path: string, token: string, body?: unknown, contentType = 'application/json') => {
    const response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`setup: ${method} ${path} answered ${response.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
}

// ---- the end ---------------------------------------------------------------------------------

/** Writes bench/<file> (the machine, `body`, then the errors and the duration) and says so. */
export function writeReport(file: string, run: { started: number; cores: number; loadAtStart: number; pgVersion: string; cpuProfileDir?: string | undefined }, body: Record<string, unknown>): void {
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cores: run.cores,
    cpu: cpus()[0]?.model.trim() ?? null,
    postgres: run.pgVersion,
    ...body,
    errors: totals,
    failures,
    loadAverageAtStart: Math.round(run.loadAtStart * 100) / 100,
    seconds: Math.round((performance.now() - run.started) / 1000),
  };
  mkdirSync('bench', { recursive: true });
  writeFileSync(join('bench', file), `${JSON.stringify(report, null, 2)}\n`);
  say(`written to bench/${file}${run.cpuProfileDir ? `; Herald's CPU profile goes to ${run.cpuProfileDir}` : ''} (${report.seconds} s)`);
}

/** Runs the bench's main, cleans up, tells the failures and what the servers logged, and exits (1 on any failure). */
export async function runBench(name: string, main: () => Promise<number>): Promise<never> {
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    process.stderr.write(`\n${name} FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  } finally {
    await cleanup();
  }
  if (failures.length) {
    process.stderr.write(`\n!!! ${name}: ERRORS IN THE RUNS — the figures above are not to be trusted !!!\n`);
    for (const f of failures) process.stderr.write(`!!!   ${f.what}: ${f.detail}\n`);
    code = 1;
  }
  if (serverLog.lines) {
    process.stderr.write(`\nthe servers logged ${serverLog.lines} line(s) at warn level or above; the first:\n`);
    for (const line of serverLog.first) process.stderr.write(`  ${line}\n`);
  }
  process.exit(code);
}

/** The ceiling of the HTTP benches: the smallest Fastify application there is, in a process of its own. */
export async function serveHelloWorld(): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  app.get('/', async () => ({ hello: 'world' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  await announce(app.server.address(), () => app.close());
}

/**
 * The flow of bench:flow and bench:scale: trigger "signup" -> condition (custom.plan exists) ->
 * wait (fixed, 0 minutes: it collapses) -> steps (one email) -> splitter (50/50) -> exit.
 */
export function benchFlowGraph(channelConfigId: string, templateId: string) {
  return {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'signup' },
      { id: 'has_plan', type: 'condition', filter: { type: 'field', field: 'custom.plan', op: 'exists' } },
      { id: 'pause', type: 'wait', mode: 'fixed', duration: { amount: 0, unit: 'minutes' } },
      { id: 'welcome', type: 'steps', name: 'Welcome email', steps: [{ type: 'send', channel: 'email', channelConfigId, templateId }] },
      { id: 'split', type: 'splitter', mode: 'percent', branches: [{ key: 'a', percent: 50 }, { key: 'b', percent: 50 }] },
      { id: 'end_a', type: 'exit' },
      { id: 'end_b', type: 'exit' },
      { id: 'no_plan', type: 'exit' },
    ],
    edges: [
      { from: 'start', to: 'has_plan' },
      { from: 'has_plan', to: 'pause', branch: 'yes' },
      { from: 'has_plan', to: 'no_plan', branch: 'no' },
      { from: 'pause', to: 'welcome' },
      { from: 'welcome', to: 'split' },
      { from: 'split', to: 'end_a', branch: 'a' },
      { from: 'split', to: 'end_b', branch: 'b' },
    ],
  };
}
