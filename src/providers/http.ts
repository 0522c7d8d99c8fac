// Outgoing HTTP for the providers: keep-alive connection pools, a request() helper with a deadline
// and a capped body, the SSRF guard on every target, and the one distinction the send pipeline
// cannot do without: did the request leave (an error now means `unknown`), or did it fail before
// any byte could reach the provider (`retry` is safe)?
//
// "Left" is a fact we observe, not a guess from an error code: for undici, the dispatch handler's
// onRequestStart (undici calls it on a connected socket, TLS done, right before writing the
// request); for node:http clients (the web-push library, http-node.ts), the moment the request's
// socket is connected (TCP, and the TLS handshake for https). Anything that fails before that point
// (ECONNREFUSED, DNS, connect timeout, certificate or handshake errors, a deadline reached while
// still connecting or queued) is `retry`; after it (reset, socket closed, no answer in time) it is
// `unknown`; once a status line arrived, the status decides.
import { Agent, type Dispatcher } from 'undici';
import { checkTarget, checkTargetNow, guardedLookup, SSRF_REFUSED } from './ssrf.ts';
import type { SendOutcome } from './types.ts';

export const DEFAULT_TIMEOUT_MS = 10_000;
/** Response bodies are read up to this many bytes; the rest is dropped (with the connection). */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** A provider's Retry-After is honoured up to this (a bogus one must not park a message for days). */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

export type Failure = Extract<SendOutcome, { kind: 'rejected' | 'retry' | 'unknown' | 'unsubscribed' }>;

export interface HttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The workspace's allowPrivateTargets. */
  allowPrivate: boolean;
  /** The caller's signal (the request's signal); combined with timeoutMs. */
  signal?: AbortSignal;
  /** Default DEFAULT_TIMEOUT_MS, for the whole exchange (connect, send, headers and body). */
  timeoutMs?: number;
  /** Default MAX_RESPONSE_BYTES. */
  maxBodyBytes?: number;
  /** Pools of the caller's own (createAgents: a provider that trusts other CAs); default the shared ones. */
  agents?: UndiciAgents;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** The body was cut at the cap, or the connection failed or the deadline came while reading it. */
  truncated: boolean;
}

export type HttpResult = { ok: true; response: HttpResponse } | { ok: false; outcome: Failure };

// --- connection pools ------------------------------------------------------------------------------

export const POOL = { keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000, connections: 64, headersTimeout: 60_000, bodyTimeout: 60_000 } as const;
const CONNECT_TIMEOUT_MS = 10_000;

// Two pools: connections opened for a workspace that allows private targets are never reused by
// one that does not. The strict pool's lookup is the SSRF guard itself.
let strictAgent: Agent | undefined;
let permissiveAgent: Agent | undefined;

/** The shared undici Agent for strict (default) or private-allowed targets. */
export function agentFor(allowPrivate: boolean): Agent {
  if (allowPrivate) return (permissiveAgent ??= new Agent({ ...POOL, connect: { timeout: CONNECT_TIMEOUT_MS } }));
  return (strictAgent ??= new Agent({ ...POOL, connect: { timeout: CONNECT_TIMEOUT_MS, lookup: guardedLookup } }));
}

export interface UndiciAgents {
  strict: Agent;
  permissive: Agent;
}

/** A provider's own strict and permissive undici pools, e.g. trusting other CAs (`ca`, tests). */
export function createAgents(options: { ca?: string | Buffer } = {}): UndiciAgents {
  const tls = options.ca !== undefined ? { ca: options.ca } : {};
  return {
    strict: new Agent({ ...POOL, connect: { timeout: CONNECT_TIMEOUT_MS, lookup: guardedLookup, ...tls } }),
    permissive: new Agent({ ...POOL, connect: { timeout: CONNECT_TIMEOUT_MS, ...tls } }),
  };
}

/** Closes the shared undici pools (shutdown, tests); they are created again on next use. */
export async function closeAgents(): Promise<void> {
  const agents = [strictAgent, permissiveAgent];
  strictAgent = permissiveAgent = undefined;
  await Promise.all(agents.map((a) => a?.close()));
}

// --- deadlines, errors, Retry-After ----------------------------------------------------------------

/** One signal for "the caller gave up or the time is up". */
export function deadline(timeoutMs: number = DEFAULT_TIMEOUT_MS, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([timeout, signal]) : timeout;
}

/** "timed out" / "aborted", from a fired signal. */
export function abortText(signal: AbortSignal): string {
  const reason = signal.reason as { name?: string; message?: string } | undefined;
  if (reason?.name === 'TimeoutError') return 'timed out';
  return reason?.message ? `aborted (${reason.message})` : 'aborted';
}

export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const e = error as NodeJS.ErrnoException & { errors?: unknown[]; cause?: unknown };
  // autoSelectFamily failures are AggregateErrors with an empty message.
  const inner = e.errors?.[0] ?? (e.message ? undefined : e.cause);
  const message = e.message || (inner instanceof Error ? inner.message : '') || e.name;
  const code = e.code ?? (inner as NodeJS.ErrnoException | undefined)?.code;
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}

/**
 * A network failure as an outcome. `requestWritten`: whether the request may have reached the
 * provider (see the top of this file for how each client knows). The SSRF guard's refusal is
 * `rejected`; anything else before the request left is `retry`, after it `unknown`.
 */
export function classifyNetworkError(error: unknown, requestWritten: boolean): Failure {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === SSRF_REFUSED) return { kind: 'rejected', reason: errorText(error) };
  if (typeof code === 'string' && code.startsWith('UND_ERR_INVALID_ARG')) return { kind: 'rejected', reason: `invalid request: ${errorText(error)}` };
  if (!requestWritten) return { kind: 'retry', reason: `not sent: ${errorText(error)}` };
  return { kind: 'unknown', reason: `${errorText(error)} after the request was sent: it may or may not have been accepted` };
}

/** Retry-After (delta seconds or an HTTP date) in ms, capped; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at)) return undefined;
    ms = at - now;
  }
  return Math.min(Math.max(0, Math.round(ms)), MAX_RETRY_AFTER_MS);
}

/** `retry` for a status that means "not accepted, try later", with Retry-After when given. */
export function retryStatus(status: number, headers: Record<string, string>, reason: string): Failure {
  const retryAfterMs = parseRetryAfter(headers['retry-after']);
  return { kind: 'retry', reason: `HTTP ${status}: ${reason}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
}

export function flatHeaders(headers: Record<string, string | string[] | undefined> | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

export function bodyText(body: Buffer, max = 300): string {
  const text = body.subarray(0, max * 4).toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

// --- target check ------------------------------------------------------------------------------------

/** checkTarget() as an outcome: null when the target may be requested; never outlives the signal. */
export async function vetTarget(url: string, allowPrivate: boolean, signal: AbortSignal): Promise<Failure | null> {
  // A refusal that needs no lookup (scheme, IP literal) is reported even when the time is up.
  const now = checkTargetNow(url, allowPrivate);
  if (now && !now.ok) return { kind: 'rejected', reason: now.reason };
  if (signal.aborted) return { kind: 'retry', reason: `${abortText(signal)} before the request was sent` };
  if (now) return null;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<'aborted'>((resolve) => {
    onAbort = () => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  // DNS cannot be cancelled: the deadline wins the race, the lookup finishes on its own.
  const check = await Promise.race([checkTarget(url, allowPrivate), aborted]);
  signal.removeEventListener('abort', onAbort!);
  if (check === 'aborted') return { kind: 'retry', reason: `${abortText(signal)} before the request was sent (resolving the host)` };
  if (check.ok) return null;
  return check.retryable ? { kind: 'retry', reason: `not sent: ${check.reason}` } : { kind: 'rejected', reason: check.reason };
}

// --- request() on undici ---------------------------------------------------------------------------

/**
 * One HTTP exchange through the shared pools. Never throws: a response (any status, redirects not
 * followed) or a classified failure. The target is checked first (no connection when refused).
 */
/**
 * A provider API call whose 2xx answer is JSON carrying the provider's message id in `idField`;
 * any other status is for `mapStatus` to judge.
 */
export async function postForId(
  req: Omit<HttpRequest, 'method'>, idField: string, mapStatus: (response: HttpResponse) => SendOutcome,
): Promise<SendOutcome> {
  const result = await request({ ...req, method: 'POST' });
  if (!result.ok) return result.outcome;
  const response = result.response;
  if (response.status < 200 || response.status >= 300) return mapStatus(response);
  const id = (parseJsonBody(response.body) as Record<string, unknown> | undefined)?.[idField];
  return { kind: 'sent', providerMessageId: typeof id === 'string' ? id : null };
}

export async function request(req: HttpRequest): Promise<HttpResult> {
  const signal = deadline(req.timeoutMs ?? DEFAULT_TIMEOUT_MS, req.signal);
  const refused = await vetTarget(req.url, req.allowPrivate, signal);
  if (refused) return { ok: false, outcome: refused };
  if (signal.aborted) return { ok: false, outcome: { kind: 'retry', reason: `${abortText(signal)} before the request was sent` } };
  const url = new URL(req.url);
  const max = req.maxBodyBytes ?? MAX_RESPONSE_BYTES;

  return new Promise<HttpResult>((resolve) => {
    let controller: Dispatcher.DispatchController | null = null;
    let started = false;
    let settled = false;
    let response: { status: number; headers: Record<string, string> } | null = null;
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;

    const finish = (result: HttpResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const respond = () => finish({ ok: true, response: { ...response!, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), truncated } });
    const fail = (outcome: Failure) => finish({ ok: false, outcome });
    const stop = (reason: Error) => {
      if (controller && !controller.aborted) controller.abort(reason);
    };

    function onAbort() {
      const why = abortText(signal);
      if (response) {
        truncated = true;
        respond();
      } else if (started) {
        fail({ kind: 'unknown', reason: `${why} waiting for the answer, after the request was sent: it may or may not have been accepted` });
      } else {
        fail({ kind: 'retry', reason: `${why} before the request was sent (connecting)` });
      }
      // Not started yet: onRequestStart aborts it before a byte is written.
      stop(new Error(why));
    }
    signal.addEventListener('abort', onAbort, { once: true });

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (settled) return void c.abort(new Error('given up before sending'));
        started = true;
      },
      onResponseStart(_c, statusCode, headers) {
        if (statusCode < 200) return;
        response = { status: statusCode, headers: flatHeaders(headers) };
      },
      onResponseData(_c, chunk) {
        if (settled || !response) return;
        if (size + chunk.length > max) {
          chunks.push(chunk.subarray(0, max - size));
          size = max;
          truncated = true;
          respond();
          return stop(new Error('response body over the cap'));
        }
        chunks.push(chunk);
        size += chunk.length;
      },
      onResponseEnd() {
        if (response) respond();
        else fail({ kind: 'unknown', reason: 'the connection ended without a response, after the request was sent' });
      },
      onResponseError(_c, error) {
        if (response) {
          truncated = true;
          respond();
        } else {
          fail(classifyNetworkError(error, started));
        }
      },
    };

    try {
      (req.agents ? (req.allowPrivate ? req.agents.permissive : req.agents.strict) : agentFor(req.allowPrivate)).dispatch(
        { origin: url.origin, path: `${url.pathname}${url.search}`, method: req.method as Dispatcher.HttpMethod, headers: req.headers ?? {}, body: req.body ?? null },
        handler,
      );
    } catch (error) {
      fail(classifyNetworkError(error, false));
    }
  });
}
