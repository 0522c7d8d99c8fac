// The provider mocks in test/mocks/: each one driven by a real client (fetch, the web-push package),
// its error shapes, and every fault (status N times, Retry-After, delay, reset, hang).
// Signature helpers are checked against the providers' own libraries and published vectors.
import t, { type Test } from 'tap';
import https from 'node:https';
import { createPrivateKey, sign } from 'node:crypto';
import webpush from 'web-push';
import { EventWebhook } from '@sendgrid/eventwebhook';
import { Webhook } from 'standardwebhooks';
import { waitUntil, type MockServer } from './mocks/server.ts';
import { eventWebhookHeaders, generateEventWebhookKeys, sendgridEvent, signEventWebhook, startSendGridMock, verifyEventWebhook } from './mocks/sendgrid.ts';
import { smsSegments, startTwilioMock, twilioSignature } from './mocks/sms.ts';
import { createSubscription, startWebPushMock, subscriptionId } from './mocks/webpush.ts';
import { startFcmMock } from './mocks/fcm.ts';
import { generateWebhookSecret, signStandardWebhook, standardWebhookHeaders, startWebhookReceiver, verifyStandardWebhook } from './mocks/webhook-receiver.ts';

interface Outcome {
  status: number;
  headers: Record<string, string>;
  body: string;
}
type Send = (timeoutMs?: number) => Promise<Outcome>;

async function call(url: string, init: RequestInit, timeoutMs?: number): Promise<Outcome> {
  const res = await fetch(url, { ...init, ...(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {}) });
  return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
}

function networkCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  return String(e.cause?.code ?? e.code ?? '');
}

/** The same fault script for every mock; `checkError` looks at the provider's error shape. */
async function faultSuite(t: Test, mock: MockServer, send: Send, ok: number, checkError: (o: Outcome) => void): Promise<void> {
  mock.setFaults({ status: 503, times: 2 });
  const first = await send();
  const second = await send();
  t.equal(first.status, 503, 'fault status, 1st time');
  t.equal(second.status, 503, 'fault status, 2nd time');
  checkError(first);
  t.equal((await send()).status, ok, 'then success again');
  t.same(mock.faults, {}, 'an exhausted fault clears itself');

  mock.faults.status = 429;
  mock.faults.times = 1;
  mock.faults.retryAfter = 7;
  const limited = await send();
  t.equal(limited.status, 429);
  t.equal(limited.headers['retry-after'], '7', 'Retry-After sent');
  checkError(limited);
  t.equal((await send()).status, ok);

  mock.setFaults({ delayMs: 150, times: 1 });
  let started = performance.now();
  t.equal((await send()).status, ok, 'a delayed answer still succeeds');
  t.ok(performance.now() - started >= 140, 'and arrives after the delay');

  mock.setFaults({ reset: true, times: 1 });
  const reset = await send().then(
    () => 'answered',
    (err: unknown) => networkCode(err),
  );
  t.equal(reset, 'ECONNRESET', 'a reset is ECONNRESET to the client');
  t.equal((await send()).status, ok, 'the next request gets through');

  mock.setFaults({ hang: true, times: 1 });
  started = performance.now();
  await t.rejects(send(200), 'a hung request ends with the client timeout');
  const waited = performance.now() - started;
  t.ok(waited >= 190 && waited < 2000, `the client gave up after ${Math.round(waited)} ms`);
  t.equal((await send()).status, ok, 'the next request gets through');
  t.ok(mock.counts.faulted >= 5, 'faults are counted');
}

// --- SendGrid ------------------------------------------------------------------------------------

const mail = (over: Record<string, unknown> = {}) => ({
  personalizations: [{ to: [{ email: 'ada@example.com', name: 'Ada' }], custom_args: { herald_message_id: 'msg_1' } }],
  from: { email: 'news@herald.dev', name: 'Herald' },
  subject: 'Hello',
  content: [
    { type: 'text/plain', value: 'Hi Ada' },
    { type: 'text/html', value: '<p>Hi Ada</p>' },
  ],
  categories: ['welcome'],
  custom_args: { workspace_id: 'ws_1' },
  headers: { 'List-Unsubscribe': '<https://herald.dev/u/1>' },
  ...over,
});

t.test('SendGrid Mail Send', async (t) => {
  const sg = await startSendGridMock({ apiKey: 'SG.test.key' });
  t.teardown(() => sg.close());
  const send = (body: unknown, key = 'SG.test.key', timeoutMs?: number) =>
    call(`${sg.url}/v3/mail/send`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }, timeoutMs);

  const ok = await send(mail());
  t.equal(ok.status, 202);
  t.equal(ok.body, '', '202 has an empty body');
  t.match(ok.headers['x-message-id'], /^[A-Za-z0-9_-]{22}$/);
  t.equal(sg.messages.length, 1);
  t.equal(sg.messages[0]?.id, ok.headers['x-message-id']);
  t.match(sg.messages[0]?.body, { personalizations: [{ to: [{ email: 'ada@example.com' }] }], subject: 'Hello', custom_args: { workspace_id: 'ws_1' } });

  const denied = await send(mail(), 'SG.wrong');
  t.equal(denied.status, 401);
  t.same(JSON.parse(denied.body), { errors: [{ message: 'The provided authorization grant is invalid, expired, or revoked', field: null, help: null }] });

  const empty = JSON.parse((await send({})).body) as { errors: Array<{ field: string | null }> };
  t.same(empty.errors.map((e) => e.field), ['personalizations', 'from.email', 'subject', 'content'], 'every missing essential is reported at once');
  const noSubject = await send(mail({ subject: undefined }));
  t.equal(noSubject.status, 400);
  t.match(JSON.parse(noSubject.body), { errors: [{ field: 'subject', message: /subject is required/, help: /^http/ }] });
  t.equal((await send(mail({ subject: undefined, personalizations: [{ to: [{ email: 'a@example.com' }], subject: 'Per person' }] }))).status, 202, 'a subject in every personalization is enough');
  t.equal((await send(mail({ content: undefined, subject: undefined, template_id: 'd-123' }))).status, 202, 'a template replaces subject and content');
  t.match(JSON.parse((await send(mail({ personalizations: [{ to: [{ email: 'not-an-address' }] }] }))).body), { errors: [{ field: 'personalizations.0.to.0.email' }] });
  t.match(JSON.parse((await send(mail({ content: [{ type: 'text/html', value: '<p>x</p>' }, { type: 'text/plain', value: 'x' }] }))).body), { errors: [{ field: 'content' }] });
  t.match(JSON.parse((await send('{nope')).body), { errors: [{ message: 'Bad Request', field: null, help: null }] });
  t.equal(sg.messages.length, 3, 'only accepted messages are recorded');

  await faultSuite(t, sg, (ms) => send(mail(), 'SG.test.key', ms), 202, (o) => t.match(JSON.parse(o.body), { errors: [{ message: String, field: null }] }));
});

t.test('SendGrid Event Webhook signatures verify with @sendgrid/eventwebhook', async (t) => {
  const keys = generateEventWebhookKeys();
  t.match(keys.publicKey, /^MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE[A-Za-z0-9+/]+=*$/, 'base64 DER SPKI of a P-256 key, as SendGrid shows it');
  const events = [
    sendgridEvent('processed', 'abc123', { email: 'ada@example.com', customArgs: { herald_message_id: 'msg_1' } }),
    sendgridEvent('delivered', 'abc123', { email: 'ada@example.com', customArgs: { herald_message_id: 'msg_1' } }),
    sendgridEvent('click', 'abc123', { url: 'https://herald.dev/x' }),
    sendgridEvent('bounce', 'abc123'),
  ];
  t.match(events[1], { email: 'ada@example.com', event: 'delivered', herald_message_id: 'msg_1', sg_message_id: /^abc123\.filter/, sg_event_id: String, timestamp: Number });
  t.match(events[2], { event: 'click', url: 'https://herald.dev/x', useragent: String });
  t.match(events[3], { event: 'bounce', type: 'bounce', reason: String, status: '5.1.1' });
  const payload = JSON.stringify(events);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const signature = signEventWebhook(keys.privateKey, payload, timestamp);

  const official = new EventWebhook();
  const publicKey = official.convertPublicKeyToECDSA(keys.publicKey);
  t.ok(official.verifySignature(publicKey, payload, signature, timestamp), 'the official package accepts the signature');
  t.notOk(official.verifySignature(publicKey, payload.replace('delivered', 'bounce'), signature, timestamp), 'and rejects a changed payload');
  t.notOk(official.verifySignature(publicKey, payload, signature, String(Number(timestamp) + 1)), 'and a changed timestamp');
  t.ok(verifyEventWebhook(keys.publicKey, payload, signature, timestamp), 'node:crypto verification agrees');
  const headers = eventWebhookHeaders(keys.privateKey, payload, timestamp);
  t.ok(official.verifySignature(publicKey, Buffer.from(payload), headers['x-twilio-email-event-webhook-signature'] ?? '', headers['x-twilio-email-event-webhook-timestamp'] ?? ''));
  const pem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  t.ok(official.verifySignature(publicKey, payload, signEventWebhook(pem, payload, timestamp), timestamp), 'a PEM private key works too');
});

t.test('SendGrid mock throughput (keep-alive fetch, concurrency 50)', async (t) => {
  const sg = await startSendGridMock({ record: false });
  t.teardown(() => sg.close());
  const body = JSON.stringify(mail());
  const init = { method: 'POST', headers: { authorization: `Bearer ${sg.apiKey}`, 'content-type': 'application/json' }, body };
  let connections = 0;
  sg.server.on('connection', () => connections++);
  const total = 2000;
  let issued = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (issued < total) {
        issued++;
        const res = await fetch(`${sg.url}/v3/mail/send`, init);
        await res.arrayBuffer();
        if (res.status !== 202) failed++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  t.comment(`SendGrid mock: ${total} requests in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} req/s`);
  t.equal(failed, 0);
  t.equal(sg.counts.accepted, total);
  t.equal(sg.messages.length, 0, 'record: false keeps only counts');
  t.comment(`${connections} connections for ${total} requests`);
  t.ok(connections < total / 10, 'connections are kept alive and reused');
});

// --- Twilio --------------------------------------------------------------------------------------

t.test('twilioSignature matches Twilio’s published vectors', async (t) => {
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' };
  t.equal(twilioSignature('12345', url, params), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  t.equal(twilioSignature('12345', url, new URLSearchParams(params)), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=');
  const repeated = new URLSearchParams([['Sid', 'CA123'], ['SidAccount', 'AC123'], ['Digits', '5678'], ['Digits', '1234'], ['Digits', '1234']]);
  t.equal(twilioSignature('12345', url, repeated), 'IK+Dwps556ElfBT0I3Rgjkr1wJU=');
  t.equal(smsSegments('a'.repeat(160)), 1);
  t.equal(smsSegments('a'.repeat(161)), 2);
  t.equal(smsSegments('€'.repeat(80)), 1, 'extension characters count twice');
  t.equal(smsSegments('ü'.repeat(160)), 1, 'ü is GSM-7');
  t.equal(smsSegments('ş'.repeat(71)), 2, 'anything else is UCS-2');
});

t.test('Twilio Messages', async (t) => {
  const tw = await startTwilioMock({ autoCallback: true, callbackDelayMs: 5 });
  const receiver = await startWebhookReceiver();
  t.teardown(async () => {
    await tw.close();
    await receiver.close();
  });
  const path = `/2010-04-01/Accounts/${tw.accountSid}/Messages.json`;
  const basic = (token = tw.authToken) => `Basic ${Buffer.from(`${tw.accountSid}:${token}`).toString('base64')}`;
  const send = (params: Record<string, string>, token?: string, timeoutMs?: number) =>
    call(`${tw.url}${path}`, { method: 'POST', headers: { authorization: basic(token), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params) }, timeoutMs);

  const callback = `${receiver.url}/twilio/status?workspace=ws_1`;
  const created = await send({ To: '+15558675310', From: '+15017122661', Body: 'Your code is 1234', StatusCallback: callback });
  t.equal(created.status, 201);
  const resource = JSON.parse(created.body) as Record<string, unknown>;
  t.match(resource, { sid: /^SM[0-9a-f]{32}$/, account_sid: tw.accountSid, status: 'queued', to: '+15558675310', from: '+15017122661', body: 'Your code is 1234', num_segments: '1', direction: 'outbound-api', api_version: '2010-04-01', error_code: null });
  t.match(resource.date_created, /\+0000$/);
  t.equal(tw.messages[0]?.params.StatusCallback, callback);

  const receipts = await receiver.waitFor(2);
  const statuses = receipts.map((r) => new URLSearchParams(r.body).get('MessageStatus'));
  t.same(statuses, ['sent', 'delivered']);
  for (const r of receipts) {
    const params = Object.fromEntries(new URLSearchParams(r.body));
    t.equal(r.path, '/twilio/status?workspace=ws_1');
    t.equal(params.MessageSid, resource.sid);
    t.equal(params.AccountSid, tw.accountSid);
    t.equal(r.headers['x-twilio-signature'], twilioSignature(tw.authToken, callback, params), 'receipt signed as Twilio signs');
  }
  // The mock records the status once the receiver has answered, which may follow its arrival.
  await waitUntil(() => tw.callbacks.length >= 2 && tw.callbacks.every((c) => c.status !== undefined), 2000, 'callback statuses');
  t.same(tw.callbacks.map((c) => c.status), [200, 200]);
  const fetched = await call(`${tw.url}${path.slice(0, -5)}/${String(resource.sid)}.json`, { headers: { authorization: basic() } });
  t.match(JSON.parse(fetched.body), { status: 'delivered' }, 'the resource follows its receipts');

  tw.undeliverable.set('+15005550006', 30003);
  t.match(JSON.parse((await send({ To: '+15005550006', MessagingServiceSid: `MG${'a'.repeat(32)}`, Body: 'x'.repeat(200), StatusCallback: callback })).body), { status: 'accepted', from: null, num_segments: '2' });
  const failed = await receiver.waitFor(4);
  t.match(Object.fromEntries(new URLSearchParams(failed[3]?.body)), { MessageStatus: 'undelivered', ErrorCode: '30003', MessagingServiceSid: `MG${'a'.repeat(32)}` });

  await send({ To: '+15558675310', From: '+15017122661', Body: 'hi', StatusCallback: 'https://example.com/not-loopback' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.match(tw.callbacks.at(-1), { url: 'https://example.com/not-loopback', error: /loopback/ }, 'receipts only ever go to loopback');
  tw.autoCallback = false;

  const badTo = await send({ To: '5558675310', From: '+15017122661', Body: 'hi' });
  t.equal(badTo.status, 400);
  t.same(JSON.parse(badTo.body), { code: 21211, message: "The 'To' number 5558675310 is not a valid phone number.", more_info: 'https://www.twilio.com/docs/errors/21211', status: 400 });
  const badAuth = await send({ To: '+15558675310', From: '+15017122661', Body: 'hi' }, 'wrong');
  t.equal(badAuth.status, 401);
  t.same(JSON.parse(badAuth.body), { code: 20003, message: 'Authenticate', more_info: 'https://www.twilio.com/docs/errors/20003', status: 401 });
  t.match(JSON.parse((await send({ To: '+15558675310', From: '+15017122661' })).body), { code: 21602, status: 400 });
  t.match(JSON.parse((await send({ To: '+15558675310', Body: 'hi' })).body), { code: 21603, status: 400 });
  t.match(JSON.parse((await send({ From: '+15017122661', Body: 'hi' })).body), { code: 21604, status: 400 });

  await faultSuite(t, tw, (ms) => send({ To: '+15558675310', From: 'Herald', Body: 'hi' }, undefined, ms), 201, (o) => t.match(JSON.parse(o.body), { code: Number, message: String, more_info: String, status: o.status }));
});

// --- Web Push ------------------------------------------------------------------------------------

function httpsPost(url: string, headers: Record<string, string>, body: Buffer | null, agent: https.Agent | undefined): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

function vapidJwt(claims: Record<string, unknown>, keys: { publicKey: string; privateKey: string }): string {
  const pub = Buffer.from(keys.publicKey, 'base64url');
  const key = createPrivateKey({ key: { kty: 'EC', crv: 'P-256', d: keys.privateKey, x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') }, format: 'jwk' });
  const data = `${Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ES256' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `vapid t=${data}.${sign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}, k=${keys.publicKey}`;
}

t.test('Web Push: the web-push package sends to the mock end to end', async (t) => {
  const mock = await startWebPushMock();
  t.teardown(() => mock.close());
  const vapid = webpush.generateVAPIDKeys();
  const vapidDetails = { subject: 'mailto:ops@example.com', publicKey: vapid.publicKey, privateKey: vapid.privateKey };
  const subscription = createSubscription(mock);
  t.match(subscription, { endpoint: new RegExp(`^${mock.url}/push/`), keys: { p256dh: /^[A-Za-z0-9_-]{87}$/, auth: /^[A-Za-z0-9_-]{22}$/ } });

  const result = await webpush.sendNotification(subscription, JSON.stringify({ title: 'Hi' }), { vapidDetails, TTL: 60, agent: mock.agent });
  t.equal(result.statusCode, 201);
  t.match(result.headers.location, new RegExp(`^${mock.origin}/m/`));
  t.same(mock.messages[0]?.json, { title: 'Hi' }, 'the mock decrypted the payload');
  t.match(mock.messages[0], { id: subscriptionId(subscription), ttl: 60, urgency: 'normal', vapid: { aud: mock.origin, sub: 'mailto:ops@example.com', publicKey: vapid.publicKey } });
  t.notOk(mock.messages[0]?.decryptError);

  const long = 'é'.repeat(1500);
  await webpush.sendNotification(subscription, long, { vapidDetails, TTL: 0, urgency: 'high', topic: 'news', agent: mock.agent });
  t.match(mock.messages[1], { plaintext: long, ttl: 0, urgency: 'high', topic: 'news' });

  const status = (p: Promise<unknown>) => p.then(() => 201, (err: unknown) => (err instanceof webpush.WebPushError ? err.statusCode : -1));
  t.equal(await status(webpush.sendNotification(subscription, 'x'.repeat(4000), { vapidDetails, TTL: 60, agent: mock.agent })), 413, 'over 4096 bytes is a 413');
  const unknown = { ...subscription, endpoint: `${mock.url}/push/never-created` };
  t.equal(await status(webpush.sendNotification(unknown, 'x', { vapidDetails, TTL: 60, agent: mock.agent })), 404);
  const goneSub = createSubscription(mock);
  mock.gone.add(subscriptionId(goneSub));
  t.equal(await status(webpush.sendNotification(goneSub, 'x', { vapidDetails, TTL: 60, agent: mock.agent })), 410, 'a gone subscription is a 410');
  const other = webpush.generateVAPIDKeys();
  const bound = createSubscription(mock, { applicationServerKey: other.publicKey });
  t.equal(await status(webpush.sendNotification(bound, 'x', { vapidDetails, TTL: 60, agent: mock.agent })), 403, 'another VAPID key than the subscription’s is a 403');

  const details = webpush.generateRequestDetails(subscription, 'hello', { vapidDetails, TTL: 60 });
  const post = (headers: Record<string, string>, body = details.body) => httpsPost(details.endpoint, headers, body, mock.agent);
  const now = Math.floor(Date.now() / 1000);
  const withAuth = (authorization: string) => ({ ...details.headers, Authorization: authorization });
  t.equal((await post(details.headers)).status, 201, 'the raw request details are accepted');
  const wrongAud = webpush.getVapidHeaders('https://push.example.net', vapidDetails.subject, vapid.publicKey, vapid.privateKey, 'aes128gcm');
  const denied = await post(withAuth(wrongAud.Authorization));
  t.equal(denied.status, 401, 'aud must be the push service origin');
  t.match(JSON.parse(denied.body), { code: 401, errno: 109, message: /aud/ });
  const expired = webpush.getVapidHeaders(mock.origin, vapidDetails.subject, vapid.publicKey, vapid.privateKey, 'aes128gcm', now - 60);
  t.match(JSON.parse((await post(withAuth(expired.Authorization))).body), { code: 401, message: /expired/ });
  t.match(JSON.parse((await post(withAuth(vapidJwt({ aud: mock.origin, exp: now + 2 * 86_400, sub: 'mailto:a@b.c' }, vapid)))).body), { code: 401, message: /24 hours/ });
  t.equal((await post(withAuth(vapidJwt({ aud: mock.origin, exp: now + 3600, sub: 'mailto:a@b.c' }, vapid)))).status, 201, 'a hand-made JWT verifies');
  t.equal((await post(withAuth(vapidJwt({ aud: mock.origin, exp: now + 3600 }, other)))).status, 201, 'sub is optional');
  t.equal((await post(withAuth('WebPush abc'))).status, 401);
  const { TTL: _ttl, ...noTtl } = details.headers;
  t.match(JSON.parse((await post(noTtl)).body), { code: 400, errno: 111 }, 'the TTL header is required');
  const tampered = Buffer.from(details.body ?? Buffer.alloc(0));
  tampered[tampered.length - 1]! ^= 1;
  t.equal((await post(details.headers, tampered)).status, 201, 'the service cannot see a broken payload');
  t.match(mock.messages.at(-1), { plaintext: null, decryptError: String });

  await faultSuite(
    t,
    mock,
    (ms) =>
      webpush.sendNotification(subscription, '{}', { vapidDetails, TTL: 60, agent: mock.agent, ...(ms ? { timeout: ms } : {}) }).then(
        (r) => ({ status: r.statusCode, headers: r.headers, body: r.body }),
        (err: unknown) => {
          if (err instanceof webpush.WebPushError) return { status: err.statusCode, headers: err.headers, body: err.body };
          throw err;
        },
      ),
    201,
    (o) => t.match(JSON.parse(o.body), { code: o.status, errno: Number }),
  );
});

t.test('Web Push over plain HTTP (tls: false) for fetch-based senders', async (t) => {
  const mock = await startWebPushMock({ tls: false });
  t.teardown(() => mock.close());
  const vapid = webpush.generateVAPIDKeys();
  const subscription = createSubscription(mock);
  t.match(subscription.endpoint, /^http:\/\/127\.0\.0\.1:\d+\/push\//);
  const details = webpush.generateRequestDetails(subscription, JSON.stringify({ title: 'Plain' }), { vapidDetails: { subject: 'https://herald.dev', publicKey: vapid.publicKey, privateKey: vapid.privateKey }, TTL: 30 });
  const res = await call(details.endpoint, { method: 'POST', headers: details.headers, body: details.body ?? undefined });
  t.equal(res.status, 201);
  t.same(mock.messages[0]?.json, { title: 'Plain' });
  t.equal(mock.messages[0]?.vapid.aud, mock.origin);
});

// --- FCM -----------------------------------------------------------------------------------------

t.test('FCM HTTP v1', async (t) => {
  const fcm = await startFcmMock({ projectId: 'herald-test', accessToken: 'ya29.test' });
  t.teardown(() => fcm.close());
  const send = (message: unknown, opts: { token?: string; project?: string; timeoutMs?: number; validateOnly?: boolean } = {}) =>
    call(
      `${fcm.url}/v1/projects/${opts.project ?? 'herald-test'}/messages:send`,
      { method: 'POST', headers: { authorization: `Bearer ${opts.token ?? 'ya29.test'}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...(opts.validateOnly ? { validate_only: true } : {}), message }) },
      opts.timeoutMs,
    );
  const message = { token: 'device-token-1', notification: { title: 'Hi', body: 'There', image: 'https://herald.dev/i.png' }, data: { messageId: 'msg_1' }, webpush: { fcm_options: { link: 'https://herald.dev' } } };

  const ok = await send(message);
  t.equal(ok.status, 200);
  const { name } = JSON.parse(ok.body) as { name: string };
  t.match(name, /^projects\/herald-test\/messages\/0:\d+%[0-9a-f]{16}$/);
  t.match(fcm.messages[0], { name, message, validateOnly: false });
  t.same(JSON.parse((await send(message, { validateOnly: true })).body), { name: 'projects/herald-test/messages/fake_message_id' });

  fcm.unregistered.add('gone-token');
  const gone = await send({ ...message, token: 'gone-token' });
  t.equal(gone.status, 404);
  t.same(JSON.parse(gone.body), { error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND', details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'UNREGISTERED' }] } });
  fcm.invalid.add('bad-token');
  t.match(JSON.parse((await send({ ...message, token: 'bad-token' })).body), { error: { code: 400, status: 'INVALID_ARGUMENT', details: [{ errorCode: 'INVALID_ARGUMENT' }] } });
  const unauth = await send(message, { token: 'ya29.expired' });
  t.equal(unauth.status, 401);
  t.match(JSON.parse(unauth.body), { error: { code: 401, status: 'UNAUTHENTICATED' } });
  t.match(JSON.parse((await send(message, { project: 'someone-else' })).body), { error: { code: 403, status: 'PERMISSION_DENIED' } });
  t.match(JSON.parse((await send({ ...message, data: { count: 1 } })).body), { error: { code: 400, status: 'INVALID_ARGUMENT', message: /message\.data\[0\]\.value/ } });
  t.match(JSON.parse((await send({ notification: { title: 'no target' } })).body), { error: { code: 400, status: 'INVALID_ARGUMENT' } });
  t.equal(fcm.messages.length, 2);

  await faultSuite(t, fcm, (ms) => send(message, { timeoutMs: ms }), 200, (o) => t.match(JSON.parse(o.body), { error: { code: o.status, message: String, status: String } }));
});

// --- Standard Webhooks receiver ------------------------------------------------------------------

t.test('Standard Webhooks receiver', async (t) => {
  const secret = generateWebhookSecret();
  t.match(secret, /^whsec_[A-Za-z0-9+/]{32}$/);
  const receiver = await startWebhookReceiver({ secret });
  t.teardown(() => receiver.close());
  const body = JSON.stringify({ type: 'message.delivered', data: { id: 'msg_1' } });
  const post = (headers: Record<string, string>, timeoutMs?: number, payload = body) => call(`${receiver.url}/hooks/herald`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload }, timeoutMs);

  const official = new Webhook(secret);
  const ts = Math.floor(Date.now() / 1000);
  t.equal(signStandardWebhook(secret, 'msg_2Xyz', ts, body), official.sign('msg_2Xyz', new Date(ts * 1000), body), 'same signature as the standardwebhooks package');
  const ours = standardWebhookHeaders(secret, 'msg_2Xyz', body);
  t.doesNotThrow(() => official.verify(body, ours), 'the package verifies our headers');
  t.same(verifyStandardWebhook(secret, ours, body), { ok: true });

  t.equal((await post(ours)).status, 200);
  const theirs = { 'webhook-id': 'msg_pkg', 'webhook-timestamp': String(ts), 'webhook-signature': official.sign('msg_pkg', new Date(ts * 1000), body) };
  t.equal((await post(theirs)).status, 200);
  const rotated = { ...ours, 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')} ${ours['webhook-signature']}` };
  await post(rotated);
  await post(standardWebhookHeaders(generateWebhookSecret(), 'msg_x', body));
  await post(standardWebhookHeaders(secret, 'msg_old', body, ts - 600));
  await post(ours, undefined, body.replace('delivered', 'bounced'));
  await post({});
  const records = await receiver.waitFor(7);
  t.same(records.map((r) => r.verified), [true, true, true, false, false, false, false]);
  t.same(records.map((r) => r.error), [undefined, undefined, undefined, 'no matching v1 signature', 'timestamp too old', 'no matching v1 signature', 'missing webhook-id, webhook-timestamp or webhook-signature']);
  t.match(records[0], { method: 'POST', path: '/hooks/herald', id: 'msg_2Xyz', json: { type: 'message.delivered' } });

  receiver.rejectInvalid = true;
  t.equal((await post({})).status, 401, 'rejectInvalid answers 401');
  receiver.status = 204;
  t.equal((await post(standardWebhookHeaders(secret, 'msg_3', body))).status, 204);
  receiver.status = 200;
  receiver.rejectInvalid = false;

  await faultSuite(t, receiver, (ms) => post(standardWebhookHeaders(secret, 'msg_f', body), ms), 200, (o) => t.match(o.body, /injected/));
});
