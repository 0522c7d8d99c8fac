// A receiver for Herald's outgoing webhooks, signed the Standard Webhooks way:
// webhook-id, webhook-timestamp, webhook-signature: "v1,<base64 HMAC-SHA256(key, `${id}.${timestamp}.${body}`)>"
// where key = base64-decode(secret without its "whsec_" prefix). Several space-separated signatures may be sent.
import type { IncomingHttpHeaders } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { startServer, waitUntil, type Faults, type MockServer } from './server.ts';

export interface WebhookReceiverOptions {
  /** "whsec_" + base64 key; default a fresh one (see generateWebhookSecret). */
  secret?: string;
  /** Status answered to every request that is not faulted (default 200; mutable as `receiver.status`). */
  status?: number;
  /** Answer 401 to requests whose signature does not verify (default false: record and answer `status`). */
  rejectInvalid?: boolean;
  /** Allowed clock difference for webhook-timestamp, in seconds (default 300, as the spec's libraries). */
  toleranceSec?: number;
  faults?: Faults;
}

export interface WebhookRequestRecord {
  method: string;
  /** Path and query as requested. */
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** JSON.parse(body) when it parses. */
  json?: unknown;
  id?: string;
  timestamp?: string;
  signature?: string;
  verified: boolean;
  /** Why verification failed. */
  error?: string;
  receivedAt: Date;
}

export interface WebhookReceiver extends MockServer {
  /** Mutable: set a new one to simulate a rotated endpoint secret. */
  secret: string;
  status: number;
  rejectInvalid: boolean;
  requests: WebhookRequestRecord[];
  /** Resolves with the records once at least n requests arrived (rejects after timeoutMs, default 2000). */
  waitFor(n: number, timeoutMs?: number): Promise<WebhookRequestRecord[]>;
}

/** A Standard Webhooks secret: "whsec_" + base64 of 24 random bytes. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

const secretKey = (secret: string): Buffer => Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');

/** The webhook-signature value for one secret: "v1,<base64>". */
export function signStandardWebhook(secret: string, id: string, timestamp: number | string, body: string): string {
  return `v1,${createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** The three headers a Standard Webhooks sender adds (timestamp defaults to now, in seconds). */
export function standardWebhookHeaders(secret: string, id: string, body: string, timestamp: number = Math.floor(Date.now() / 1000)): Record<string, string> {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signStandardWebhook(secret, id, timestamp, body) };
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** Verification as the spec describes it: headers present, timestamp within tolerance, any v1 signature matching. */
export function verifyStandardWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  options: { toleranceSec?: number; nowSec?: number } = {},
): { ok: true } | { ok: false; error: string } {
  const id = one(headers['webhook-id']);
  const timestamp = one(headers['webhook-timestamp']);
  const signature = one(headers['webhook-signature']);
  if (!id || !timestamp || !signature) return { ok: false, error: 'missing webhook-id, webhook-timestamp or webhook-signature' };
  if (!/^\d+$/.test(timestamp)) return { ok: false, error: 'invalid webhook-timestamp' };
  const now = options.nowSec ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSec ?? 300;
  const ts = Number(timestamp);
  if (ts < now - tolerance) return { ok: false, error: 'timestamp too old' };
  if (ts > now + tolerance) return { ok: false, error: 'timestamp too new' };
  const expected = Buffer.from(signStandardWebhook(secret, id, timestamp, body).slice(3), 'base64');
  for (const part of signature.split(' ')) {
    const [version, value] = part.split(',', 2);
    if (version !== 'v1' || !value) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true };
  }
  return { ok: false, error: 'no matching v1 signature' };
}

export async function startWebhookReceiver(options: WebhookReceiverOptions = {}): Promise<WebhookReceiver> {
  const requests: WebhookRequestRecord[] = [];
  let receiver: WebhookReceiver | undefined;
  const base = await startServer({
    faults: options.faults,
    faultReply: (status) => ({ status, headers: { 'content-type': 'text/plain' }, body: `injected ${status}` }),
    handler(req, raw) {
      const self = receiver!;
      const body = raw.toString('utf8');
      const check = verifyStandardWebhook(self.secret, req.headers, body, { toleranceSec: options.toleranceSec });
      const rec: WebhookRequestRecord = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, verified: check.ok, receivedAt: new Date() };
      const id = one(req.headers['webhook-id']);
      const timestamp = one(req.headers['webhook-timestamp']);
      const signature = one(req.headers['webhook-signature']);
      if (id !== undefined) rec.id = id;
      if (timestamp !== undefined) rec.timestamp = timestamp;
      if (signature !== undefined) rec.signature = signature;
      if (!check.ok) rec.error = check.error;
      try {
        rec.json = JSON.parse(body);
      } catch {
        /* not JSON */
      }
      requests.push(rec);
      if (!check.ok && self.rejectInvalid) return { status: 401, headers: { 'content-type': 'text/plain' }, body: check.error };
      return { status: self.status };
    },
  });
  receiver = Object.assign(base, {
    secret: options.secret ?? generateWebhookSecret(),
    status: options.status ?? 200,
    rejectInvalid: options.rejectInvalid ?? false,
    requests,
    async waitFor(n: number, timeoutMs = 2000) {
      await waitUntil(() => requests.length >= n, timeoutMs, `${n} webhook request(s)`);
      return requests;
    },
  });
  return receiver;
}
