// Web Push service mock (RFC 8030 push, RFC 8291 aes128gcm payloads, RFC 8292 VAPID): POST /push/{id}.
// It holds the browser side of every subscription it creates, so it decrypts and records the plaintext.
// HTTPS by default (with the fixed test certificate in tls.ts), because the web-push package only speaks HTTPS.
import https from 'node:https';
import { createDecipheriv, createECDH, createPublicKey, hkdfSync, randomBytes, verify, type ECDH } from 'node:crypto';
import { MOCK_TLS } from './tls.ts';
import { isObject, randomBase64url, startServer, type Faults, type MockServer, type Reply } from './server.ts';

export interface WebPushMockOptions {
  /** Serve HTTPS with the test certificate (default true); false for plain-HTTP clients. */
  tls?: boolean;
  /** Status for subscriptions in `gone` (default 410; 404 is what some services answer). */
  goneStatus?: 404 | 410;
  /** Largest accepted body in bytes (default 4096, RFC 8030's minimum). */
  maxPayload?: number;
  faults?: Faults;
}

export interface PushSubscriptionJSON {
  endpoint: string;
  expirationTime: null;
  keys: { p256dh: string; auth: string };
}

export interface WebPushRecord {
  /** The subscription id (last path segment of the endpoint). */
  id: string;
  /** The id in the Location header answered. */
  messageId: string;
  ttl: number;
  urgency?: string;
  topic?: string;
  vapid: { aud: string; exp: number; sub?: string; publicKey: string };
  /** Encrypted body size in bytes. */
  size: number;
  /** Decrypted payload (null when empty or undecryptable). */
  plaintext: string | null;
  /** JSON.parse(plaintext) when it parses. */
  json?: unknown;
  /** Why the payload could not be decrypted (the service still answers 201, as a real one would). */
  decryptError?: string;
}

interface SubscriptionKeys {
  ecdh: ECDH;
  publicKey: Buffer;
  auth: Buffer;
  /** VAPID key the subscription was created with (applicationServerKey), if any. */
  applicationServerKey?: string;
}

export interface WebPushMock extends MockServer {
  /** https://127.0.0.1:PORT — the VAPID `aud` the mock expects. */
  origin: string;
  messages: WebPushRecord[];
  subscriptions: Map<string, SubscriptionKeys>;
  /** Subscription ids answered with goneStatus (unsubscribed / expired). */
  gone: Set<string>;
  /** The CA to trust (the mock's self-signed certificate) when tls is on. */
  ca?: string;
  /** An https.Agent trusting `ca`, for web-push's `agent` option (undefined without tls). */
  agent?: https.Agent;
}

const autopushError = (status: number, errno: number, message: string): Reply => ({
  status,
  body: { code: status, errno, error: ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 410: 'Gone', 413: 'Payload Too Large', 429: 'Too Many Requests' } as Record<number, string>)[status] ?? 'Error', message, more_info: 'http://autopush.readthedocs.io/en/latest/http.html#error-codes' },
});

type Vapid = WebPushRecord['vapid'];

/** Verifies `Authorization: vapid t=<JWT>, k=<key>` (ES256, aud = origin, 0 < exp - now <= 24 h). */
export function verifyVapid(header: string | undefined, origin: string, nowSec = Math.floor(Date.now() / 1000)): Vapid | string {
  const m = /^vapid\s+(.+)$/i.exec(header ?? '');
  if (!m) return 'missing vapid Authorization';
  const fields = new Map(m[1]!.split(',').map((part) => { const p = part.trim(); const i = p.indexOf('='); return [p.slice(0, i), p.slice(i + 1)] as const; }));
  const token = fields.get('t');
  const k = fields.get('k');
  if (!token || !k) return 'vapid needs t= and k=';
  const [h, p, s] = token.split('.');
  const raw = Buffer.from(k, 'base64url');
  if (!h || !p || !s || raw.length !== 65 || raw[0] !== 4) return 'malformed JWT or key';
  try {
    const head: unknown = JSON.parse(Buffer.from(h, 'base64url').toString());
    const claims: unknown = JSON.parse(Buffer.from(p, 'base64url').toString());
    if (!isObject(head) || head.alg !== 'ES256' || !isObject(claims)) return 'JWT must be ES256 with a claims object';
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33).toString('base64url') }, format: 'jwk' });
    const sig = Buffer.from(s, 'base64url');
    if (sig.length !== 64 || !verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, sig)) return 'bad JWT signature';
    if (claims.aud !== origin) return `aud ${String(claims.aud)} is not ${origin}`;
    if (typeof claims.exp !== 'number' || claims.exp <= nowSec) return 'JWT expired';
    if (claims.exp > nowSec + 86_400) return 'exp more than 24 hours ahead';
    if (claims.sub !== undefined && (typeof claims.sub !== 'string' || !/^(mailto:|https:)/.test(claims.sub))) return 'sub must be mailto: or https:';
    return { aud: claims.aud, exp: claims.exp, ...(typeof claims.sub === 'string' ? { sub: claims.sub } : {}), publicKey: k };
  } catch (err) {
    return `bad JWT: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/** RFC 8291 decryption of an aes128gcm body with the user agent's keys. */
export function decryptAes128gcm(sub: { ecdh: ECDH; publicKey: Buffer; auth: Buffer }, body: Buffer): string {
  if (body.length < 21) throw new Error('truncated aes128gcm header');
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20]!;
  const keyid = body.subarray(21, 21 + idlen);
  if (idlen !== 65 || rs < 18) throw new Error('keyid must be the 65-byte sender key and rs >= 18');
  const secret = sub.ecdh.computeSecret(keyid);
  const keyInfo = Buffer.concat([Buffer.from('WebPush: info\0'), sub.publicKey, keyid]);
  const ikm = Buffer.from(hkdfSync('sha256', secret, sub.auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const data = body.subarray(21 + idlen);
  const out: Buffer[] = [];
  for (let seq = 0, off = 0; off < data.length; seq++, off += rs) {
    const record = data.subarray(off, off + rs);
    if (record.length < 17) throw new Error('truncated record');
    const iv = Buffer.from(nonce);
    iv.writeUInt32BE((iv.readUInt32BE(8) ^ seq) >>> 0, 8);
    const decipher = createDecipheriv('aes-128-gcm', cek, iv);
    decipher.setAuthTag(record.subarray(-16));
    const plain = Buffer.concat([decipher.update(record.subarray(0, -16)), decipher.final()]);
    let end = plain.length - 1;
    while (end >= 0 && plain[end] === 0) end--;
    if (plain[end] !== (off + rs >= data.length ? 2 : 1)) throw new Error('bad padding delimiter');
    out.push(plain.subarray(0, end));
  }
  return Buffer.concat(out).toString('utf8');
}

export async function startWebPushMock(options: WebPushMockOptions = {}): Promise<WebPushMock> {
  const tls = options.tls !== false;
  const maxPayload = options.maxPayload ?? 4096;
  const messages: WebPushRecord[] = [];
  const subscriptions = new Map<string, SubscriptionKeys>();
  const gone = new Set<string>();
  let origin = '';
  const base = await startServer({
    faults: options.faults,
    tls: tls ? MOCK_TLS : undefined,
    faultReply: (status) => autopushError(status, status === 429 ? 201 : 999, status === 429 ? 'Too many requests' : 'Injected fault'),
    handler(req, body) {
      const url = req.url ?? '';
      if (req.method !== 'POST' || !url.startsWith('/push/')) return autopushError(404, 102, 'Invalid URL endpoint');
      const id = url.slice(6).split('?')[0]!;
      if (gone.has(id)) return autopushError(options.goneStatus ?? 410, 106, 'Request did not validate: subscription is no longer valid');
      const sub = subscriptions.get(id);
      if (!sub) return autopushError(404, 102, 'Request did not validate: invalid token');
      const vapid = verifyVapid(req.headers.authorization, origin);
      if (typeof vapid === 'string') return autopushError(401, 109, `Request did not validate: ${vapid}`);
      if (sub.applicationServerKey && sub.applicationServerKey !== vapid.publicKey) return autopushError(403, 109, 'VAPID public key mismatch');
      const ttlHeader = req.headers.ttl;
      if (typeof ttlHeader !== 'string' || !/^\d+$/.test(ttlHeader)) return autopushError(400, 111, 'Missing TTL header');
      const urgency = req.headers.urgency;
      if (urgency !== undefined && !['very-low', 'low', 'normal', 'high'].includes(String(urgency))) return autopushError(400, 112, 'Invalid Urgency header');
      const topic = req.headers.topic;
      if (topic !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(String(topic))) return autopushError(400, 113, 'Topic must be at most 32 base64url characters');
      if (body.length > maxPayload) return autopushError(413, 104, `Payload too large: ${body.length} bytes > ${maxPayload}`);
      if (body.length > 0 && req.headers['content-encoding'] !== 'aes128gcm') return autopushError(400, 110, 'Content-Encoding must be aes128gcm');
      const messageId = randomBase64url(24);
      const rec: WebPushRecord = { id, messageId, ttl: Number(ttlHeader), vapid, size: body.length, plaintext: null };
      if (urgency !== undefined) rec.urgency = String(urgency);
      if (topic !== undefined) rec.topic = String(topic);
      if (body.length > 0) {
        try {
          rec.plaintext = decryptAes128gcm(sub, body);
          try { rec.json = JSON.parse(rec.plaintext); } catch { /* not JSON */ }
        } catch (err) {
          rec.decryptError = err instanceof Error ? err.message : String(err);
        }
      }
      messages.push(rec);
      return { status: 201, headers: { Location: `${origin}/m/${messageId}`, TTL: ttlHeader } };
    },
  });
  origin = base.url;
  const agent = tls ? new https.Agent({ ca: MOCK_TLS.cert, keepAlive: true }) : undefined;
  const close = base.close;
  return Object.assign(base, {
    origin, messages, subscriptions, gone, agent, ...(tls ? { ca: MOCK_TLS.cert } : {}),
    close: async () => {
      agent?.destroy();
      await close();
    },
  });
}

/** A browser-like subscription on the mock (P-256 key pair + 16-byte auth secret); the mock keeps the private key. */
export function createSubscription(mock: WebPushMock, options: { applicationServerKey?: string } = {}): PushSubscriptionJSON {
  const ecdh = createECDH('prime256v1');
  const publicKey = ecdh.generateKeys();
  const auth = randomBytes(16);
  const id = randomBase64url(32);
  mock.subscriptions.set(id, { ecdh, publicKey, auth, ...(options.applicationServerKey ? { applicationServerKey: options.applicationServerKey } : {}) });
  return { endpoint: `${mock.url}/push/${id}`, expirationTime: null, keys: { p256dh: publicKey.toString('base64url'), auth: auth.toString('base64url') } };
}

/** The id the mock knows a subscription by (for `mock.gone.add(...)`). */
export const subscriptionId = (subscription: { endpoint: string } | string): string => (typeof subscription === 'string' ? subscription : subscription.endpoint).split('/push/')[1] ?? '';
