// The "Web API" channel: a request to the workspace's own URL, signed the Standard Webhooks way
// (webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">
// keyed with the base64-decoded secret after "whsec_"). Redirects are not followed: a redirect could
// lead past the SSRF guard, so it is `rejected`.
import { createHmac } from 'node:crypto';
import { bodyText, request as httpRequest, retryStatus } from './http.ts';
import type { Provider, SendOutcome, SendRequest } from './types.ts';

export interface WebhookProviderOptions {
  timeoutMs?: number;
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers a template may not set: framing and connection management, and the signature's own. */
const FORBIDDEN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'proxy-authorization', 'proxy-connection', 'webhook-id', 'webhook-timestamp', 'webhook-signature']);
export const WEBHOOK_USER_AGENT = 'Herald-Webhooks/1.0';

/** "v1,<base64>" for one secret ("whsec_" + base64 key). */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

export function createWebhookProvider(options: WebhookProviderOptions = {}): Provider {
  return {
    async send(request: SendRequest): Promise<SendOutcome> {
      const payload = request.payload;
      if (payload.kind !== 'webhook') return { kind: 'rejected', reason: `webhook sends webhook payloads, not ${payload.kind}` };
      const secret = request.secrets.signingSecret;
      if (!secret) return { kind: 'rejected', reason: 'no signing secret in the channel config' };
      const method = payload.method.toUpperCase();
      if (!METHODS.has(method)) return { kind: 'rejected', reason: `unsupported method ${payload.method.slice(0, 20)}` };
      const body = payload.body ?? '';
      if ((method === 'GET') && body !== '') return { kind: 'rejected', reason: 'a GET request cannot carry a body' };

      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(payload.headers)) {
        if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
      }
      headers['user-agent'] ??= WEBHOOK_USER_AGENT;
      if (body !== '') headers['content-type'] ??= isJson(body) ? 'application/json' : 'text/plain; charset=utf-8';
      const timestamp = Math.floor(Date.now() / 1000);
      headers['webhook-id'] = request.messageId;
      headers['webhook-timestamp'] = String(timestamp);
      headers['webhook-signature'] = signWebhook(secret, request.messageId, timestamp, body);

      const result = await httpRequest({
        method,
        url: payload.url,
        headers,
        ...(body !== '' ? { body } : {}),
        allowPrivate: request.allowPrivateTargets,
        ...(request.signal ? { signal: request.signal } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      });
      if (!result.ok) return result.outcome;
      // The body is read (capped) only for the reason; otherwise it is dropped.
      const { status, headers: answer, body: answerBody } = result.response;
      const detail = bodyText(answerBody, 200);
      if (status >= 200 && status < 300) return { kind: 'sent', providerMessageId: null };
      if (status >= 300 && status < 400) return { kind: 'rejected', reason: `redirect (${status}${answer.location ? ` to ${answer.location.slice(0, 200)}` : ''}) not followed` };
      if (status === 410) return { kind: 'gone', reason: `410 Gone${detail ? `: ${detail}` : ''}` };
      if (status === 429 || status === 408 || status >= 500) return retryStatus(status, answer, detail || 'no body');
      return { kind: 'rejected', reason: `HTTP ${status}${detail ? `: ${detail}` : ''}` };
    },
  };
}

export const webhookProvider = createWebhookProvider();
