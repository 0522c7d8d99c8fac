// SMS through Twilio Programmable Messaging: POST {base}/2010-04-01/Accounts/{sid}/Messages.json,
// Basic auth (AccountSid:AuthToken), form body To, From, Body and StatusCallback (delivery receipts).
import { bodyText, parseJsonBody, postForId, retryStatus, type Failure, type HttpResponse } from './http.ts';
import type { Provider, SendOutcome, SendRequest } from './types.ts';

export const TWILIO_BASE_URL = 'https://api.twilio.com';

export interface TwilioProviderOptions {
  timeoutMs?: number;
}

function twilioError(response: HttpResponse): string {
  const body = parseJsonBody(response.body) as { code?: unknown; message?: unknown } | undefined;
  if (body && (body.code !== undefined || body.message !== undefined)) return `${String(body.code ?? response.status)}: ${String(body.message ?? '')}`.slice(0, 500);
  return `${response.status}: ${bodyText(response.body) || 'no error message'}`;
}

/**
 * Twilio's answer as an outcome (2xx handled by the caller). 429, 408 and 503 say the request
 * was not taken: retry. Any other 5xx is an error inside Twilio after it had the request, and
 * Messages has no idempotency key: the SMS may exist, so it is unknown, never sent twice.
 */
export function mapTwilioStatus(response: HttpResponse): Failure {
  const { status, headers } = response;
  if (status === 429 || status === 408 || status === 503) return retryStatus(status, headers, twilioError(response));
  if (status >= 500) return { kind: 'unknown', reason: `HTTP ${status} after Twilio had the request (it may have created the message): ${twilioError(response)}`.slice(0, 500) };
  if (status === 401 || status === 403) return { kind: 'rejected', reason: `authentication failed (${twilioError(response)})` };
  if (status >= 300 && status < 400) return { kind: 'rejected', reason: `unexpected redirect (${status}), not followed` };
  // 21610: the recipient replied STOP to this sender; Twilio refuses every message until START.
  const code = (parseJsonBody(response.body) as { code?: unknown } | undefined)?.code;
  if (status === 400 && Number(code) === 21610) return { kind: 'unsubscribed', reason: twilioError(response) };
  // 400 with Twilio's code: 21211 invalid To, 21408 region not enabled...
  return { kind: 'rejected', reason: twilioError(response) };
}

export function createTwilioProvider(options: TwilioProviderOptions = {}): Provider {
  return {
    async send(request: SendRequest): Promise<SendOutcome> {
      const payload = request.payload;
      if (payload.kind !== 'sms') return { kind: 'rejected', reason: `twilio sends sms, not ${payload.kind}` };
      const { accountSid, from, apiBaseUrl } = request.settings as { accountSid?: unknown; from?: unknown; apiBaseUrl?: unknown };
      const authToken = request.secrets.authToken;
      if (typeof accountSid !== 'string' || typeof from !== 'string' || !authToken) return { kind: 'rejected', reason: 'the Twilio config needs accountSid, from and authToken' };
      const base = String(apiBaseUrl ?? TWILIO_BASE_URL).replace(/\/+$/, '');
      const form = new URLSearchParams({ To: payload.to, From: from, Body: payload.text });
      if (payload.statusCallbackUrl) form.set('StatusCallback', payload.statusCallbackUrl);
      return postForId({
        url: `${base}/2010-04-01/Accounts/${encodeURIComponent(accountSid)}/Messages.json`,
        headers: {
          authorization: `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
          accept: 'application/json',
        },
        body: form.toString(),
        allowPrivate: request.allowPrivateTargets,
        ...(request.signal ? { signal: request.signal } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      }, 'sid', mapTwilioStatus);
    },
  };
}

export const twilioProvider = createTwilioProvider();
