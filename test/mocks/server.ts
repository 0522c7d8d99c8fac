// Shared plumbing for the provider mocks: a node:http(s) server on 127.0.0.1 (port 0) with long
// keep-alive, body collection, fault injection and compact counters. Handlers are plain functions
// from (request, body) to a Reply, so the hot path stays small: no framework, no per-request URL parse.
import http from 'node:http';
import https from 'node:https';
import { randomFillSync } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';

/**
 * Fault injection, mutable at any time (`mock.faults.status = 503; mock.faults.times = 2`).
 * With `times` set, the fault applies to that many requests and then clears itself (all fields);
 * without it, it stays until `clearFaults()`. Order per request: body read, hang, delay, reset, status.
 */
export interface Faults {
  /** Answer this status (with the provider's error shape) instead of handling the request. */
  status?: number;
  /** How many requests the fault applies to; unset = until cleared. */
  times?: number;
  /** Wait this long before answering (also before a reset or a fault status). */
  delayMs?: number;
  /** Destroy the socket with a TCP RST without answering: the client sees ECONNRESET / fetch failed. */
  reset?: boolean;
  /** Never answer (the socket stays open until the client gives up or the mock closes). */
  hang?: boolean;
  /** Retry-After header value (seconds or an HTTP date) sent with a fault status (e.g. 429, 503). */
  retryAfter?: number | string;
}

export interface MockCounts {
  /** Every request that reached the server. */
  received: number;
  /** Answered by the handler with a status < 400. */
  accepted: number;
  /** Answered by the handler with a status >= 400 (auth, validation, gone...). */
  rejected: number;
  /** Consumed by a fault (status, reset or hang). */
  faulted: number;
}

export interface Reply {
  status: number;
  headers?: http.OutgoingHttpHeaders;
  /** undefined: empty body; string/Buffer: as is; anything else: JSON. */
  body?: unknown;
}

export type Handler = (req: http.IncomingMessage, body: Buffer) => Reply | Promise<Reply>;

export interface MockServer {
  /** Base URL without a trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  server: http.Server;
  faults: Faults;
  counts: MockCounts;
  /** Replace all faults at once. */
  setFaults(faults: Faults): void;
  clearFaults(): void;
  /** Stop listening and destroy every connection (hung ones included). */
  close(): Promise<void>;
}

export interface ServerOptions {
  handler: Handler;
  /** The provider's answer for an injected fault status. */
  faultReply: (status: number) => Reply;
  faults?: Faults;
  /** Serve HTTPS with this key and certificate (see tls.ts). */
  tls?: { key: string; cert: string };
}

const FAULT_KEYS = ['status', 'times', 'delayMs', 'reset', 'hang', 'retryAfter'] as const;

function clear(faults: Faults): void {
  for (const key of FAULT_KEYS) delete faults[key];
}

function takeFault(faults: Faults): Faults | undefined {
  if (faults.status === undefined && faults.delayMs === undefined && !faults.reset && !faults.hang) return undefined;
  const taken = { ...faults };
  if (faults.times !== undefined) {
    faults.times -= 1;
    if (faults.times <= 0) clear(faults);
  }
  return taken;
}

export function writeReply(res: http.ServerResponse, reply: Reply): void {
  const headers: http.OutgoingHttpHeaders = reply.headers ?? {};
  let payload: string | Buffer | undefined;
  if (reply.body === undefined) payload = undefined;
  else if (typeof reply.body === 'string' || Buffer.isBuffer(reply.body)) payload = reply.body;
  else {
    payload = JSON.stringify(reply.body);
    headers['content-type'] ??= 'application/json; charset=utf-8';
  }
  headers['content-length'] = payload === undefined ? 0 : Buffer.byteLength(payload);
  res.writeHead(reply.status, headers);
  res.end(payload);
}

export async function startServer(options: ServerOptions): Promise<MockServer> {
  const faults: Faults = { ...options.faults };
  const counts: MockCounts = { received: 0, accepted: 0, rejected: 0, faulted: 0 };
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  const answer = (res: http.ServerResponse, reply: Reply) => {
    if (reply.status < 400) counts.accepted++;
    else counts.rejected++;
    if (!res.destroyed) writeReply(res, reply);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, fault: Faults | undefined) => {
    if (fault) {
      if (fault.hang) return void counts.faulted++;
      if (fault.delayMs) await sleep(fault.delayMs);
      if (fault.reset) {
        counts.faulted++;
        // A TLS socket has no TCP handle of its own: reset the TCP socket under it (Node keeps it as _parent).
        const socket = req.socket as Socket & { _parent?: Socket };
        (socket._parent ?? socket).resetAndDestroy();
        return void socket.destroy();
      }
      if (fault.status !== undefined) {
        counts.faulted++;
        const reply = options.faultReply(fault.status);
        if (fault.retryAfter !== undefined) reply.headers = { ...reply.headers, 'retry-after': String(fault.retryAfter) };
        if (!res.destroyed) writeReply(res, reply);
        return;
      }
    }
    const reply = options.handler(req, body);
    answer(res, reply instanceof Promise ? await reply : reply);
  };

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    counts.received++;
    const fault = takeFault(faults);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const failed = (err: unknown) => {
        if (!res.headersSent && !res.destroyed) writeReply(res, { status: 500, body: { error: String(err) } });
      };
      if (fault) return void handle(req, res, body, fault).catch(failed);
      // The hot path: synchronous, no promise unless the handler returns one.
      try {
        const reply = options.handler(req, body);
        if (reply instanceof Promise) reply.then((r) => answer(res, r), failed);
        else answer(res, reply);
      } catch (err) {
        failed(err);
      }
    });
  };

  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, listener) : http.createServer(listener);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    server,
    faults,
    counts,
    setFaults(next) {
      clear(faults);
      Object.assign(faults, next);
    },
    clearFaults: () => clear(faults),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// Random ids from a pooled buffer: one randomFillSync per 4 KiB instead of one syscall per id.
const pool = Buffer.allocUnsafe(4096);
let poolOffset = pool.length;
export function randomBytesPooled(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const out = pool.subarray(poolOffset, poolOffset + n);
  poolOffset += n;
  return out;
}
export const randomHex = (bytes: number): string => randomBytesPooled(bytes).toString('hex');
export const randomBase64url = (bytes: number): string => randomBytesPooled(bytes).toString('base64url');

export function parseJson(body: Buffer): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Poll until check() is true (for asynchronous deliveries), or reject after timeoutMs. */
export async function waitUntil(check: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
