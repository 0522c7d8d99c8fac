// Mobile push through the FCM HTTP v1 API: POST {base}/v1/projects/{projectId}/messages:send with
// an OAuth 2 Bearer token; the device token is the payload's `to.endpoint`.
import { bodyText, parseJsonBody, postForId, retryStatus, type HttpResponse } from './http.ts';
import type { Provider, PushPayload, SendOutcome, SendRequest } from './types.ts';

export const FCM_BASE_URL = 'https://fcm.googleapis.com';

export interface FcmProviderOptions {
  timeoutMs?: number;
}

/** The v1 message for a payload: notification plus string-only data (click_url added when set). */
export function fcmMessage(payload: PushPayload): { message: Record<string, unknown> } {
  const notification = { title: payload.title, body: payload.body, ...(payload.imageUrl ? { image: payload.imageUrl } : {}) };
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(payload.data)) data[key] = String(value);
  if (payload.clickUrl) data.click_url = payload.clickUrl;
  return { message: { token: payload.to.endpoint, notification, ...(Object.keys(data).length > 0 ? { data } : {}) } };
}

interface GoogleError {
  status?: string;
  message?: string;
  errorCode?: string;
}

function googleError(response: HttpResponse): GoogleError {
  const body = parseJsonBody(response.body) as { error?: { status?: unknown; message?: unknown; details?: unknown } } | undefined;
  const error = body?.error;
  if (!error) return { message: bodyText(response.body) };
  const details = Array.isArray(error.details) ? (error.details as Array<{ '@type'?: unknown; errorCode?: unknown }>) : [];
  const fcm = details.find((d) => typeof d.errorCode === 'string');
  return {
    ...(typeof error.status === 'string' ? { status: error.status } : {}),
    ...(typeof error.message === 'string' ? { message: error.message } : {}),
    ...(typeof fcm?.errorCode === 'string' ? { errorCode: fcm.errorCode } : {}),
  };
}

/** FCM's answer as an outcome (2xx handled by the caller). */
export function mapFcmStatus(response: HttpResponse): SendOutcome {
  const { status, headers } = response;
  const error = googleError(response);
  const label = [error.errorCode ?? error.status, error.message].filter(Boolean).join(': ').slice(0, 500) || `HTTP ${status}`;
  if (status === 404 || error.errorCode === 'UNREGISTERED') return { kind: 'gone', reason: `the device token is no longer valid (${label})` };
  if (status === 429 || status === 408 || status >= 500) return retryStatus(status, headers, label);
  if (status === 401 || status === 403) return { kind: 'rejected', reason: `not authorized (${status} ${label})` };
  if (status >= 300 && status < 400) return { kind: 'rejected', reason: `unexpected redirect (${status}), not followed` };
  // 400 INVALID_ARGUMENT (bad token format, bad payload) and any other 4xx.
  return { kind: 'rejected', reason: `${status} ${label}` };
}

export function createFcmProvider(options: FcmProviderOptions = {}): Provider {
  return {
    async send(request: SendRequest): Promise<SendOutcome> {
      const payload = request.payload;
      if (payload.kind !== 'mobile_push') return { kind: 'rejected', reason: `fcm sends mobile_push, not ${payload.kind}` };
      const { projectId, apiBaseUrl } = request.settings as { projectId?: unknown; apiBaseUrl?: unknown };
      const accessToken = request.secrets.accessToken;
      if (typeof projectId !== 'string' || !accessToken) return { kind: 'rejected', reason: 'the FCM config needs projectId and accessToken' };
      if (!payload.to.endpoint) return { kind: 'rejected', reason: 'no device token' };
      const base = String(apiBaseUrl ?? FCM_BASE_URL).replace(/\/+$/, '');
      return postForId({
        url: `${base}/v1/projects/${encodeURIComponent(projectId)}/messages:send`,
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json; charset=utf-8', accept: 'application/json' },
        body: JSON.stringify(fcmMessage(payload)),
        allowPrivate: request.allowPrivateTargets,
        ...(request.signal ? { signal: request.signal } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      }, 'name', mapFcmStatus);
    },
  };
}

export const fcmProvider = createFcmProvider();
