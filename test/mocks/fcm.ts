// FCM HTTP v1 mock: POST /v1/projects/{projectId}/messages:send with a Bearer token, Google's error shapes.
import type { IncomingHttpHeaders } from 'node:http';
import { isObject, parseJson, randomHex, startServer, type Faults, type MockServer, type Reply } from './server.ts';

export interface FcmMockOptions {
  /** Default "herald-test". */
  projectId?: string;
  /** The OAuth2 access token expected in `Authorization: Bearer`. Default a random "ya29.…". */
  accessToken?: string;
  faults?: Faults;
}

export interface FcmMessage {
  token?: string;
  topic?: string;
  condition?: string;
  notification?: { title?: string; body?: string; image?: string };
  data?: Record<string, string>;
  webpush?: Record<string, unknown>;
  android?: Record<string, unknown>;
  apns?: Record<string, unknown>;
  fcm_options?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface FcmRecord {
  /** projects/{projectId}/messages/{id}, as answered. */
  name: string;
  message: FcmMessage;
  validateOnly: boolean;
  headers: IncomingHttpHeaders;
}

export interface FcmMock extends MockServer {
  projectId: string;
  accessToken: string;
  messages: FcmRecord[];
  /** Tokens answered 404 NOT_FOUND / UNREGISTERED (app uninstalled, token expired). */
  unregistered: Set<string>;
  /** Tokens answered 400 INVALID_ARGUMENT ("not a valid FCM registration token"). */
  invalid: Set<string>;
}

const STATUS: Record<number, string> = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 503: 'UNAVAILABLE' };
const FCM_CODE: Record<number, string> = { 400: 'INVALID_ARGUMENT', 403: 'SENDER_ID_MISMATCH', 404: 'UNREGISTERED', 429: 'QUOTA_EXCEEDED', 500: 'INTERNAL', 503: 'UNAVAILABLE' };

/** Google's error envelope; `errorCode` adds FCM's FcmError detail, `violations` a BadRequest detail. */
export function fcmError(code: number, message: string, errorCode?: string, violations?: Array<{ field: string; description: string }>): Reply {
  const details: unknown[] = [];
  if (errorCode) details.push({ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode });
  if (violations) details.push({ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: violations });
  const error: Record<string, unknown> = { code, message, status: STATUS[code] ?? (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION') };
  if (details.length > 0) error.details = details;
  return { status: code, body: { error } };
}

const invalidArgument = (field: string, description: string) => fcmError(400, 'Request contains an invalid argument.', 'INVALID_ARGUMENT', [{ field, description }]);

function validate(message: Record<string, unknown>): Reply | undefined {
  const targets = ['token', 'topic', 'condition'].filter((k) => message[k] !== undefined);
  if (targets.length !== 1) return invalidArgument('message', 'Exactly one of token, topic or condition must be set.');
  for (const k of targets) if (typeof message[k] !== 'string' || message[k] === '') return invalidArgument(`message.${k}`, `Invalid value at 'message.${k}' (TYPE_STRING)`);
  if (message.notification !== undefined) {
    if (!isObject(message.notification)) return invalidArgument('message.notification', "Invalid value at 'message.notification' (type.googleapis.com/google.firebase.fcm.v1.Notification)");
    for (const k of ['title', 'body', 'image']) {
      const v = message.notification[k];
      if (v !== undefined && typeof v !== 'string') return invalidArgument(`message.notification.${k}`, `Invalid value at 'message.notification.${k}' (TYPE_STRING), ${JSON.stringify(v)}`);
    }
  }
  if (message.data !== undefined) {
    if (!isObject(message.data)) return invalidArgument('message.data', "Invalid value at 'message.data' (Map)");
    let i = 0;
    for (const [key, v] of Object.entries(message.data)) {
      if (typeof v !== 'string') return fcmError(400, `Invalid value at 'message.data[${i}].value' (TYPE_STRING), ${JSON.stringify(v)}`, undefined, [{ field: `message.data[${i}].value`, description: `Invalid value at 'message.data[${i}].value' (TYPE_STRING), ${JSON.stringify(v)}` }]);
      if (key === 'from' || key.startsWith('google.') || key.startsWith('gcm.')) return invalidArgument('message.data', `Invalid data payload key: ${key}`);
      i++;
    }
  }
  for (const k of ['webpush', 'android', 'apns', 'fcm_options']) {
    if (message[k] !== undefined && !isObject(message[k])) return invalidArgument(`message.${k}`, `Invalid value at 'message.${k}'`);
  }
  return undefined;
}

let sequence = 0;

export async function startFcmMock(options: FcmMockOptions = {}): Promise<FcmMock> {
  const projectId = options.projectId ?? 'herald-test';
  const accessToken = options.accessToken ?? `ya29.${randomHex(32)}`;
  const expected = `Bearer ${accessToken}`;
  const messages: FcmRecord[] = [];
  const unregistered = new Set<string>();
  const invalid = new Set<string>();
  const base = await startServer({
    faults: options.faults,
    faultReply: (status) => fcmError(status, status === 429 ? 'Quota exceeded for quota metric \'Send requests\' of service \'fcm.googleapis.com\'.' : status === 503 ? 'The service is currently unavailable.' : status >= 500 ? 'Internal error encountered.' : 'Request contains an invalid argument.', FCM_CODE[status]),
    handler(req, body) {
      const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(req.url ?? '');
      if (req.method !== 'POST' || !m) return { status: 404, headers: { 'content-type': 'text/html; charset=UTF-8' }, body: '<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>' };
      if (req.headers.authorization !== expected) {
        return fcmError(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.');
      }
      if (m[1] !== projectId) return fcmError(403, `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${m[1]}' (or it may not exist).`);
      const parsed = parseJson(body);
      if (!parsed.ok) return fcmError(400, 'Invalid JSON payload received. Unexpected token.');
      if (!isObject(parsed.value) || !isObject(parsed.value.message)) return invalidArgument('message', 'The message field is required.');
      const message = parsed.value.message;
      const bad = validate(message);
      if (bad) return bad;
      const token = typeof message.token === 'string' ? message.token : undefined;
      if (token !== undefined && invalid.has(token)) return fcmError(400, 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT');
      if (token !== undefined && unregistered.has(token)) return fcmError(404, 'Requested entity was not found.', 'UNREGISTERED');
      const validateOnly = parsed.value.validate_only === true;
      const name = `projects/${projectId}/messages/${validateOnly ? 'fake_message_id' : `0:${Date.now()}${String(++sequence % 1000).padStart(3, '0')}%${randomHex(8)}`}`;
      messages.push({ name, message: message as FcmMessage, validateOnly, headers: req.headers });
      return { status: 200, body: { name } };
    },
  });
  return Object.assign(base, { projectId, accessToken, messages, unregistered, invalid });
}
