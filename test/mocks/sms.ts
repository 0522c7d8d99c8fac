// Twilio Programmable Messaging mock: POST /2010-04-01/Accounts/{AccountSid}/Messages.json (Basic auth,
// form body), Twilio's message resource and error shapes, and signed status callbacks (delivery receipts).
import { createHmac } from 'node:crypto';
import { isObject, randomHex, startServer, type Faults, type MockServer, type Reply } from './server.ts';

export interface TwilioMockOptions {
  /** Default a random "AC" + 32 hex. */
  accountSid?: string;
  /** Default 32 random hex. */
  authToken?: string;
  /** POST sent -> delivered receipts to StatusCallback (loopback URLs only). Default false. */
  autoCallback?: boolean;
  /** Wait before each receipt. Default 10 ms. */
  callbackDelayMs?: number;
  faults?: Faults;
}

export interface TwilioMessage {
  sid: string;
  account_sid: string;
  api_version: '2010-04-01';
  body: string;
  to: string;
  from: string | null;
  messaging_service_sid: string | null;
  status: string;
  direction: 'outbound-api';
  num_segments: string;
  num_media: string;
  date_created: string;
  date_updated: string;
  date_sent: string | null;
  error_code: number | null;
  error_message: string | null;
  price: string | null;
  price_unit: 'USD';
  uri: string;
  subresource_uris: { media: string };
}

export interface TwilioRecord {
  /** The form parameters as received. */
  params: Record<string, string>;
  /** The resource answered (its status follows the receipts sent). */
  message: TwilioMessage;
}

export interface TwilioCallbackRecord {
  url: string;
  params: Record<string, string>;
  signature: string;
  /** The receiver's HTTP status, or the network error. */
  status?: number;
  error?: string;
}

export interface TwilioMock extends MockServer {
  accountSid: string;
  authToken: string;
  messages: TwilioRecord[];
  callbacks: TwilioCallbackRecord[];
  /** To numbers whose receipts end in `undelivered` with this ErrorCode (e.g. 30003, 30005, 30006). */
  undeliverable: Map<string, number>;
  autoCallback: boolean;
}

/** X-Twilio-Signature: base64 HMAC-SHA1(authToken, url + each param name+value, sorted by name). */
export function twilioSignature(authToken: string, url: string, params: Record<string, string | string[]> | URLSearchParams = {}): string {
  const byName = new Map<string, Set<string>>();
  const entries = params instanceof URLSearchParams ? [...params] : Object.entries(params).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x] as const) : [[k, v] as const]));
  for (const [k, v] of entries) byName.set(k, (byName.get(k) ?? new Set()).add(v));
  let data = url;
  // Names sorted; a repeated name contributes each distinct value once, values sorted (as Twilio's SDKs do).
  for (const k of [...byName.keys()].sort()) for (const v of [...byName.get(k)!].sort()) data += k + v;
  return createHmac('sha1', authToken).update(Buffer.from(data, 'utf8')).digest('base64');
}

const E164 = /^\+[1-9]\d{1,14}$/;
const GSM7 = new Set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà");
const GSM7_EXT = new Set('^{}\\[~]|€\f');

/** Segments as Twilio counts them: GSM-7 160/153 septets, otherwise UCS-2 70/67 code units. */
export function smsSegments(body: string): number {
  let septets = 0;
  for (const ch of body) {
    if (GSM7.has(ch)) septets += 1;
    else if (GSM7_EXT.has(ch)) septets += 2;
    else return body.length <= 70 ? 1 : Math.ceil(body.length / 67);
  }
  return septets <= 160 ? 1 : Math.ceil(septets / 153);
}

const twilioError = (status: number, code: number, message: string): Reply => ({ status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } });
const rfc2822 = (d: Date) => d.toUTCString().replace('GMT', '+0000');
const isLoopback = (url: string) => {
  try {
    const host = new URL(url).hostname;
    return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  } catch {
    return false;
  }
};

export async function startTwilioMock(options: TwilioMockOptions = {}): Promise<TwilioMock> {
  const accountSid = options.accountSid ?? `AC${randomHex(16)}`;
  const authToken = options.authToken ?? randomHex(16);
  const expectedAuth = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;
  const path = `/2010-04-01/Accounts/${accountSid}/Messages.json`;
  const delay = options.callbackDelayMs ?? 10;
  const messages: TwilioRecord[] = [];
  const callbacks: TwilioCallbackRecord[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  const later = (fn: () => void) => {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, delay);
    timers.add(timer);
  };

  const receipt = async (rec: TwilioRecord, url: string, status: string, errorCode?: number) => {
    const m = rec.message;
    m.status = status;
    m.date_updated = rfc2822(new Date());
    if (status === 'sent') m.date_sent = m.date_updated;
    if (errorCode !== undefined) m.error_code = errorCode;
    const params: Record<string, string> = { SmsSid: m.sid, SmsStatus: status, MessageStatus: status, To: m.to, MessageSid: m.sid, AccountSid: accountSid };
    if (m.from) params.From = m.from;
    if (m.messaging_service_sid) params.MessagingServiceSid = m.messaging_service_sid;
    params.ApiVersion = '2010-04-01';
    if (errorCode !== undefined) params.ErrorCode = String(errorCode);
    const signature = twilioSignature(authToken, url, params);
    const entry: TwilioCallbackRecord = { url, params, signature };
    callbacks.push(entry);
    if (!isLoopback(url)) return void (entry.error = 'refused: the mock only calls loopback addresses');
    try {
      const res = await fetch(url, { method: 'POST', body: new URLSearchParams(params), signal: AbortSignal.timeout(5000), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, 'user-agent': 'TwilioProxy/1.1', 'i-twilio-idempotency-token': randomHex(16) } });
      entry.status = res.status;
      await res.arrayBuffer();
    } catch (err) {
      entry.error = err instanceof Error ? `${err.message}${isObject(err.cause) ? `: ${String(err.cause.code ?? err.cause.message)}` : ''}` : String(err);
    }
  };

  const base = await startServer({
    faults: options.faults,
    faultReply: (status) => {
      const [code, message] = ({ 401: [20003, 'Authenticate'], 404: [20404, 'The requested resource was not found'], 429: [20429, 'Too Many Requests'] } as Record<number, [number, string]>)[status] ?? (status >= 500 ? [20500, 'Internal Server Error'] : [20001, 'Bad Request']);
      return twilioError(status, code, message);
    },
    handler(req, body) {
      if (req.headers.authorization !== expectedAuth) return twilioError(401, 20003, 'Authenticate');
      const url = req.url ?? '';
      if (req.method === 'GET') {
        const found = messages.find((r) => url === `${path.slice(0, -5)}/${r.message.sid}.json`);
        return found ? { status: 200, body: found.message } : twilioError(404, 20404, `The requested resource ${url} was not found`);
      }
      if (req.method !== 'POST' || url !== path) return twilioError(404, 20404, `The requested resource ${url} was not found`);
      const form = new URLSearchParams(body.toString('utf8'));
      const params = Object.fromEntries(form);
      const to = params.To;
      const from = params.From;
      const service = params.MessagingServiceSid;
      const text = params.Body ?? '';
      const media = form.getAll('MediaUrl');
      if (!to) return twilioError(400, 21604, "A 'To' phone number is required.");
      if (!E164.test(to)) return twilioError(400, 21211, `The 'To' number ${to} is not a valid phone number.`);
      if (!from && !service) return twilioError(400, 21603, "A 'From' phone number is required.");
      if (from && !E164.test(from) && !/^\d{5,6}$/.test(from) && !/^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$/.test(from)) return twilioError(400, 21212, `The 'From' number ${from} is not a valid phone number, shortcode, or alphanumeric sender ID.`);
      if (service && !/^MG[0-9a-f]{32}$/.test(service)) return twilioError(400, 21701, `The Messaging Service Sid ${service} is invalid.`);
      if (!text && media.length === 0) return twilioError(400, 21602, 'Message body is required.');
      if (text.length > 1600) return twilioError(400, 21617, 'The concatenated message body exceeds the 1600 character limit.');
      const sid = `SM${randomHex(16)}`;
      const now = rfc2822(new Date());
      const uri = `${path.slice(0, -5)}/${sid}.json`;
      const message: TwilioMessage = {
        sid, account_sid: accountSid, api_version: '2010-04-01', body: text, to, from: from ?? null, messaging_service_sid: service ?? null,
        status: from ? 'queued' : 'accepted', direction: 'outbound-api', num_segments: String(text ? smsSegments(text) : 1), num_media: String(media.length),
        date_created: now, date_updated: now, date_sent: null, error_code: null, error_message: null, price: null, price_unit: 'USD',
        uri, subresource_uris: { media: uri.replace(/\.json$/, '/Media.json') },
      };
      const rec: TwilioRecord = { params, message };
      messages.push(rec);
      const callback = params.StatusCallback;
      if (mock.autoCallback && callback) {
        const failure = mock.undeliverable.get(to);
        later(() => void receipt(rec, callback, 'sent').then(() => later(() => void receipt(rec, callback, failure === undefined ? 'delivered' : 'undelivered', failure))));
      }
      return { status: 201, body: message };
    },
  });
  const close = base.close;
  const mock: TwilioMock = Object.assign(base, {
    accountSid, authToken, messages, callbacks, undeliverable: new Map<string, number>(), autoCallback: options.autoCallback ?? false,
    close: async () => {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      await close();
    },
  });
  return mock;
}
