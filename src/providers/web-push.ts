// Browser push with the web-push package (RFC 8291 aes128gcm payloads, RFC 8292 VAPID). The
// endpoint is the subscription's, so it goes through the SSRF guard like any workspace-given URL;
// web-push speaks only https. Its requests go through Herald's keep-alive agents (the `agent`
// option), which is where a send learns whether its request left (see http.ts).
import webpush from 'web-push';
import { deadline, DEFAULT_TIMEOUT_MS, retryStatus, vetTarget } from './http.ts';
import { createNodeAgents, destroyNodeAgents, newTrace, traced, traceFailure, type NodeAgents } from './http-node.ts';
import type { Provider, PushPayload, SendOutcome, SendRequest } from './types.ts';

/** How long a push service keeps an undelivered message (the device may be offline). */
export const WEB_PUSH_TTL_SECONDS = 24 * 60 * 60;
/**
 * The largest JSON payload: 4096 bytes of encrypted body is what every push service must accept
 * (RFC 8030), and aes128gcm adds 86 bytes of header, 1 delimiter byte and a 16-byte tag to one record.
 */
export const MAX_WEB_PUSH_PAYLOAD = 4096 - 86 - 1 - 16;

export interface WebPushProviderOptions {
  timeoutMs?: number;
  /** Trusted CAs (tests: the mock's self-signed certificate); default the system's. */
  ca?: string | Buffer;
}

/** What the service worker receives: { title, body, image?, url?, data }. */
export function webPushPayload(payload: PushPayload): string {
  return JSON.stringify({
    title: payload.title,
    body: payload.body,
    ...(payload.imageUrl ? { image: payload.imageUrl } : {}),
    ...(payload.clickUrl ? { url: payload.clickUrl } : {}),
    data: payload.data,
  });
}

type WebPushFailure = Error & { statusCode: number; headers: Record<string, string>; body: string };

function serviceMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown; error?: unknown };
    if (typeof parsed.message === 'string') return parsed.message.slice(0, 300);
  } catch {
    /* not JSON */
  }
  return body.replace(/\s+/g, ' ').trim().slice(0, 300) || 'no body';
}

/** The push service's answer as an outcome (2xx handled by the caller). */
export function mapWebPushStatus(status: number, headers: Record<string, string>, body: string): SendOutcome {
  const h = Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]));
  const message = serviceMessage(body);
  if (status === 404 || status === 410) return { kind: 'gone', reason: `the subscription is no longer valid (${status}: ${message})` };
  if (status === 413) return { kind: 'rejected', reason: `payload too large for the push service (413: ${message})` };
  if (status === 429 || status === 408 || status >= 500) return retryStatus(status, h, message);
  if (status >= 300 && status < 400) return { kind: 'rejected', reason: `unexpected redirect (${status}), not followed` };
  // 400 (bad headers), 401/403 (VAPID refused or key mismatch) and any other 4xx.
  return { kind: 'rejected', reason: `${status}: ${message}` };
}

export function createWebPushProvider(options: WebPushProviderOptions = {}): Provider & { close(): void } {
  const agents: NodeAgents = createNodeAgents(options.ca !== undefined ? { ca: options.ca } : {});
  return {
    async send(request: SendRequest): Promise<SendOutcome> {
      const payload = request.payload;
      if (payload.kind !== 'web_push') return { kind: 'rejected', reason: `web_push sends web_push, not ${payload.kind}` };
      const { subject, vapidPublicKey } = request.settings as { subject?: unknown; vapidPublicKey?: unknown };
      const vapidPrivateKey = request.secrets.vapidPrivateKey;
      if (typeof subject !== 'string' || typeof vapidPublicKey !== 'string' || !vapidPrivateKey) return { kind: 'rejected', reason: 'the web push config needs subject and both VAPID keys' };
      const keys = payload.to.keys;
      if (!keys?.p256dh || !keys.auth) return { kind: 'rejected', reason: 'the subscription has no encryption keys: a payload cannot be sent to it' };
      const json = webPushPayload(payload);
      const size = Buffer.byteLength(json);
      if (size > MAX_WEB_PUSH_PAYLOAD) return { kind: 'rejected', reason: `the push payload is ${size} bytes, over the ${MAX_WEB_PUSH_PAYLOAD}-byte limit` };

      let endpoint: URL;
      try {
        endpoint = new URL(payload.to.endpoint);
      } catch {
        return { kind: 'rejected', reason: 'the subscription endpoint is not a URL' };
      }
      if (endpoint.protocol !== 'https:') return { kind: 'rejected', reason: `web push endpoints are https, not ${endpoint.protocol}` };
      const signal = deadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, request.signal);
      const refused = await vetTarget(endpoint.href, request.allowPrivateTargets, signal);
      if (refused) return refused;

      const trace = newTrace(signal, request.allowPrivateTargets, endpoint.hostname);
      try {
        const result = await traced(trace, () =>
          webpush.sendNotification({ endpoint: endpoint.href, keys: { p256dh: keys.p256dh, auth: keys.auth } }, json, {
            TTL: WEB_PUSH_TTL_SECONDS,
            vapidDetails: { subject, publicKey: vapidPublicKey, privateKey: vapidPrivateKey },
            contentEncoding: 'aes128gcm',
            agent: request.allowPrivateTargets ? agents.https.permissive : agents.https.strict,
          }),
        );
        const location = (result.headers as Record<string, unknown>).location;
        return { kind: 'sent', providerMessageId: typeof location === 'string' && location ? location : null };
      } catch (error) {
        if (error instanceof webpush.WebPushError) {
          const e = error as unknown as WebPushFailure;
          return mapWebPushStatus(e.statusCode, e.headers, e.body ?? '');
        }
        return traceFailure(trace, error);
      }
    },
    close() {
      destroyNodeAgents(agents);
    },
  };
}

export const webPushProvider = createWebPushProvider();
