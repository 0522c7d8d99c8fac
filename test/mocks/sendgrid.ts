// SendGrid v3 Mail Send mock (POST /v3/mail/send) and Event Webhook helpers (signed events).
import type { IncomingHttpHeaders } from 'node:http';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { isObject, parseJson, randomBase64url, randomHex, startServer, type Faults, type MockServer, type Reply } from './server.ts';

export interface SendGridMockOptions {
  /** The key expected in `Authorization: Bearer <apiKey>` (default a random SG.xxx key). */
  apiKey?: string;
  /** false: keep only `counts`, no per-message records (for benchmarks). Default true. */
  record?: boolean;
  faults?: Faults;
}

export interface SendGridRecord {
  /** The X-Message-Id answered. */
  id: string;
  /** The parsed JSON body (SendGrid's v3 schema). */
  body: SendGridMail;
  headers: IncomingHttpHeaders;
}

export interface SendGridMail {
  personalizations: Array<{ to: Array<{ email: string; name?: string }>; cc?: unknown[]; bcc?: unknown[]; subject?: string; custom_args?: Record<string, string>; headers?: Record<string, string>; dynamic_template_data?: unknown; send_at?: number }>;
  from: { email: string; name?: string };
  reply_to?: { email: string; name?: string };
  subject?: string;
  content?: Array<{ type: string; value: string }>;
  template_id?: string;
  custom_args?: Record<string, string>;
  headers?: Record<string, string>;
  categories?: string[];
  [key: string]: unknown;
}

export interface SendGridMock extends MockServer {
  apiKey: string;
  messages: SendGridRecord[];
}

const HELP = 'http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html';
type SgError = { message: string; field: string | null; help: string | null };
const errors = (status: number, list: SgError[]): Reply => ({ status, body: { errors: list } });
const plain = (message: string): SgError => ({ message, field: null, help: null });
const FAULT_MESSAGES: Record<number, string> = { 401: 'The provided authorization grant is invalid, expired, or revoked', 403: 'access forbidden', 413: 'Payload Too Large', 429: 'too many requests' };
const EMAIL = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;

function validate(mail: Record<string, unknown>): SgError[] {
  const out: SgError[] = [];
  const ps = mail.personalizations;
  if (!Array.isArray(ps) || ps.length === 0) {
    out.push({ message: 'The personalizations field is required and must have at least one personalization.', field: 'personalizations', help: `${HELP}#-Personalizations-Errors` });
  } else {
    ps.forEach((p: unknown, i) => {
      const to = isObject(p) ? p.to : undefined;
      if (!Array.isArray(to) || to.length === 0) {
        out.push({ message: 'The to array is required for all personalization objects, and must have at least one email object with a valid email address.', field: `personalizations.${i}.to`, help: `${HELP}#message.personalizations.to` });
      } else {
        to.forEach((r: unknown, j) => {
          if (!isObject(r) || typeof r.email !== 'string' || !EMAIL.test(r.email)) out.push({ message: 'Does not contain a valid address.', field: `personalizations.${i}.to.${j}.email`, help: `${HELP}#message.personalizations.to` });
        });
      }
    });
  }
  const from = mail.from;
  if (!isObject(from) || typeof from.email !== 'string' || from.email === '') {
    out.push({ message: 'The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.  e.g. {"email" : "example@example.com"}  or {"email" : "example@example.com", "name" : "Example Recipient"}.', field: 'from.email', help: `${HELP}#message.from` });
  } else if (!EMAIL.test(from.email)) {
    out.push({ message: 'The from email does not contain a valid address.', field: 'from.email', help: `${HELP}#message.from` });
  }
  const templated = typeof mail.template_id === 'string' && mail.template_id !== '';
  const everySubject = Array.isArray(ps) && ps.length > 0 && ps.every((p: unknown) => isObject(p) && typeof p.subject === 'string' && p.subject !== '');
  if (!templated && !everySubject && (typeof mail.subject !== 'string' || mail.subject === '')) {
    out.push({ message: 'The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.', field: 'subject', help: `${HELP}#message.subject` });
  }
  const content = mail.content;
  if (!templated && (!Array.isArray(content) || content.length === 0)) {
    out.push({ message: 'Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.', field: 'content', help: `${HELP}#message.content` });
  } else if (Array.isArray(content)) {
    const types = content.map((c: unknown) => (isObject(c) ? c.type : undefined));
    if (content.some((c: unknown) => !isObject(c) || typeof c.type !== 'string' || typeof c.value !== 'string' || c.value === '')) {
      out.push({ message: 'The content value must be a string at least one character in length.', field: 'content.value', help: `${HELP}#message.content.value` });
    } else if ((types.includes('text/plain') && types[0] !== 'text/plain') || (types.includes('text/html') && types.indexOf('text/html') !== (types[0] === 'text/plain' ? 1 : 0))) {
      out.push({ message: 'If present, text/plain content must be first, followed by text/html, followed by any other content.', field: 'content', help: `${HELP}#message.content` });
    }
  }
  if (mail.categories !== undefined && (!Array.isArray(mail.categories) || mail.categories.length > 10)) {
    out.push({ message: 'The categories param must be an array of at most 10 unique strings.', field: 'categories', help: `${HELP}#message.categories` });
  }
  return out;
}

export async function startSendGridMock(options: SendGridMockOptions = {}): Promise<SendGridMock> {
  const apiKey = options.apiKey ?? `SG.${randomBase64url(16)}.${randomBase64url(32)}`;
  const expected = `Bearer ${apiKey}`;
  const record = options.record !== false;
  const messages: SendGridRecord[] = [];
  const base = await startServer({
    faults: options.faults,
    faultReply: (status) => errors(status, [plain(FAULT_MESSAGES[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request'))]),
    handler(req, body) {
      if (req.method !== 'POST' || req.url !== '/v3/mail/send') return errors(404, [plain('Not Found')]);
      if (req.headers.authorization !== expected) return errors(401, [plain('The provided authorization grant is invalid, expired, or revoked')]);
      const parsed = parseJson(body);
      if (!parsed.ok || !isObject(parsed.value)) return errors(400, [{ message: 'Bad Request', field: null, help: null }]);
      const problems = validate(parsed.value);
      if (problems.length > 0) return errors(400, problems);
      const id = randomBase64url(16);
      if (record) messages.push({ id, body: parsed.value as SendGridMail, headers: req.headers });
      return { status: 202, headers: { 'X-Message-Id': id } };
    },
  });
  return Object.assign(base, { apiKey, messages });
}

// --- Event Webhook -------------------------------------------------------------------------------

export interface EventWebhookKeys {
  /** Base64 DER (SPKI), as shown in SendGrid's Mail Settings > Signed Event Webhook. */
  publicKey: string;
  privateKey: KeyObject;
}

export function generateEventWebhookKeys(): EventWebhookKeys {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), privateKey };
}

/** The X-Twilio-Email-Event-Webhook-Signature value: base64 DER ECDSA(SHA-256) over timestamp + payload. */
export function signEventWebhook(privateKey: KeyObject | string, payload: string, timestamp: string): string {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  return sign('sha256', Buffer.from(timestamp + payload), { key, dsaEncoding: 'der' }).toString('base64');
}

/** Headers SendGrid sends with a signed event batch (timestamp defaults to now, in seconds). */
export function eventWebhookHeaders(privateKey: KeyObject | string, payload: string, timestamp = String(Math.floor(Date.now() / 1000))): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': 'SendGrid Event API',
    'x-twilio-email-event-webhook-signature': signEventWebhook(privateKey, payload, timestamp),
    'x-twilio-email-event-webhook-timestamp': timestamp,
  };
}

/** Verification with node:crypto, for the public key in SendGrid's base64 DER form. */
export function verifyEventWebhook(publicKey: string, payload: string, signature: string, timestamp: string): boolean {
  const key = createPublicKey({ key: Buffer.from(publicKey, 'base64'), format: 'der', type: 'spki' });
  return verify('sha256', Buffer.from(timestamp + payload), { key, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
}

export type SendGridEventKind = 'processed' | 'delivered' | 'open' | 'click' | 'bounce' | 'dropped' | 'deferred' | 'spamreport' | 'unsubscribe' | 'group_unsubscribe' | 'group_resubscribe';

export interface SendGridEventExtra {
  email?: string;
  timestamp?: number;
  /** Spread at the top level of the event, as SendGrid does with custom_args. */
  customArgs?: Record<string, string>;
  category?: string | string[];
  [key: string]: unknown;
}

/** A realistic Event Webhook event for a message accepted with X-Message-Id `messageId`. */
export function sendgridEvent(kind: SendGridEventKind, messageId: string, extra: SendGridEventExtra = {}): Record<string, unknown> {
  const { email = 'to@example.com', timestamp = Math.floor(Date.now() / 1000), customArgs = {}, ...rest } = extra;
  const sgMessageId = messageId.includes('.filter') ? messageId : `${messageId}.filterdrecv-${randomHex(5)}-${randomHex(2)}-1-${randomHex(4).toUpperCase()}-1.0`;
  const event: Record<string, unknown> = {
    email,
    timestamp,
    'smtp-id': `<${messageId}@geopod-ismtpd-1>`,
    event: kind,
    sg_event_id: randomBase64url(16),
    sg_message_id: sgMessageId,
    ...customArgs,
  };
  const human = { useragent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36', ip: '192.0.2.10' };
  if (kind === 'delivered') Object.assign(event, { ip: '198.51.100.7', response: '250 2.0.0 OK  1700000000 a1-20020a05', tls: 1 });
  if (kind === 'open') Object.assign(event, human, { sg_machine_open: false });
  if (kind === 'click') Object.assign(event, human, { url: 'https://example.com/landing', url_offset: { index: 0, type: 'html' } });
  if (kind === 'bounce') Object.assign(event, { ip: '198.51.100.7', reason: "550 5.1.1 The email account that you tried to reach does not exist.", status: '5.1.1', type: 'bounce', bounce_classification: 'Invalid Address', tls: 1 });
  if (kind === 'dropped') Object.assign(event, { reason: 'Bounced Address', status: '5.0.0' });
  if (kind === 'deferred') Object.assign(event, { ip: '198.51.100.7', response: '421 4.7.0 Try again later', attempt: '1', tls: 1 });
  if (kind === 'group_unsubscribe' || kind === 'group_resubscribe') Object.assign(event, human, { asm_group_id: 1 });
  return Object.assign(event, rest);
}
