// The real providers against the local mocks (all on 127.0.0.1): the exact request each mock
// recorded, every status mapping, the network faults (429, 5xx, reset, hang, refused, a stalled or
// reset TLS handshake before anything was sent), and the SSRF guard. Nothing here connects outside
// loopback: non-loopback addresses are only given to checkTarget() as IP literals, which never connect.
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import webpush from 'web-push';
import { Webhook } from 'standardwebhooks';
import {
  createSubscription, generateWebhookSecret, MOCK_TLS, startFcmMock, startSendGridMock, startTwilioMock, startWebhookReceiver, startWebPushMock, subscriptionId,
  type MockServer,
} from './mocks/index.ts';
import { checkTarget, forbiddenRange, guardedLookup, SSRF_REFUSED } from '../src/providers/ssrf.ts';
import { agentFor, classifyNetworkError, closeAgents, parseRetryAfter, request as httpRequest, MAX_RESPONSE_BYTES } from '../src/providers/http.ts';
import { createNodeAgents, destroyNodeAgents } from '../src/providers/http-node.ts';
import { createSendGridProvider, mailBody, sendGridMail } from '../src/providers/sendgrid.ts';
import { encodeStrings, stringifyWith } from '../src/providers/json.ts';
import sgMail from '@sendgrid/mail';
import { createTwilioProvider } from '../src/providers/twilio.ts';
import { createWebPushProvider, MAX_WEB_PUSH_PAYLOAD } from '../src/providers/web-push.ts';
import { createFcmProvider } from '../src/providers/fcm.ts';
import { createWebhookProvider } from '../src/providers/webhook.ts';
import { defaultProviders } from '../src/providers/index.ts';
import type { Payload, Provider, PushPayload, SendOutcome, SendRequest } from '../src/providers/types.ts';
import { freePort } from './helpers/pg-server.ts';

const WORKSPACE = '7d3c1d5e-0000-4000-8000-000000000001';
t.teardown(() => closeAgents());

function sendRequest(payload: Payload, settings: Record<string, unknown>, secrets: Record<string, string>, extra: Partial<SendRequest> = {}): SendRequest {
  return { messageId: randomUUID(), workspaceId: WORKSPACE, payload, settings, secrets, allowPrivateTargets: true, ...extra };
}


/** A TCP server that never answers (a TLS handshake to it stalls) or resets every connection. */
async function rawServer(mode: 'silent' | 'reset'): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    if (mode === 'reset') socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A one-off HTTP server for answers the mocks do not give (rate-limit headers, redirects, huge bodies). */
async function customServer(handler: http.RequestListener): Promise<{ url: string; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Send = (extra?: Partial<SendRequest>) => Promise<SendOutcome>;

/**
 * The network faults, the same for every provider: 429 with and without Retry-After, 500 and 503,
 * a reset after the request was read, a hang past the caller's deadline; success again after each.
 */
/** `serverError`: what a 500 means (retry, where the provider documents it as not accepted; unknown, where the message may exist). */
async function faultSuite(t: Test, mock: MockServer, send: Send, okKind: SendOutcome['kind'] = 'sent', serverError: 'retry' | 'unknown' = 'retry'): Promise<void> {
  mock.setFaults({ status: 429, times: 1, retryAfter: 7 });
  t.match(await send(), { kind: 'retry', reason: /429/, retryAfterMs: 7000 }, '429 with Retry-After: retry after it');
  t.match(await send(), { kind: okKind }, 'then through again');

  mock.setFaults({ status: 429, times: 1 });
  const limited = await send();
  t.equal(limited.kind, 'retry', '429 without Retry-After: retry');
  t.notOk('retryAfterMs' in limited, 'with no retryAfterMs');

  mock.setFaults({ status: 500, times: 1 });
  t.match(await send(), { kind: serverError, reason: /500/ }, `500: ${serverError}`);
  mock.setFaults({ status: 503, times: 1, retryAfter: 2 });
  t.match(await send(), { kind: 'retry', reason: /503/, retryAfterMs: 2000 }, '503: retry, with its Retry-After');

  const before = mock.counts.received;
  mock.setFaults({ reset: true, times: 1 });
  const reset = await send();
  t.match(reset, { kind: 'unknown', reason: /after the request was sent/ }, 'reset after the request was read: unknown');
  t.equal(mock.counts.received, before + 1, 'the mock did get that request');
  t.match(await send(), { kind: okKind }, 'the next one gets through');

  mock.setFaults({ hang: true, times: 1 });
  const started = performance.now();
  const hung = await send({ signal: AbortSignal.timeout(300) });
  const waited = performance.now() - started;
  t.match(hung, { kind: 'unknown', reason: /timed out/ }, 'no answer before the deadline: unknown');
  t.ok(waited >= 280 && waited < 3000, `gave up at the deadline (${Math.round(waited)} ms)`);
  t.match(await send(), { kind: okKind }, 'the next one gets through');
  mock.clearFaults();
}

/** Connection refused, a stalled TLS handshake and a reset TLS handshake: nothing left, so retry. */
async function beforeSendSuite(t: Test, send: (baseUrl: string, extra?: Partial<SendRequest>) => Promise<SendOutcome>): Promise<void> {
  const port = await freePort();
  t.match(await send(`http://127.0.0.1:${port}`), { kind: 'retry', reason: /ECONNREFUSED/ }, 'connection refused: retry');

  const silent = await rawServer('silent');
  t.teardown(silent.close);
  const started = performance.now();
  const stalled = await send(`https://127.0.0.1:${silent.port}`, { signal: AbortSignal.timeout(300) });
  t.match(stalled, { kind: 'retry', reason: /timed out before the request was sent/ }, 'deadline during the TLS handshake: retry (nothing was sent)');
  t.ok(performance.now() - started < 3000, 'at the deadline');
  t.ok(silent.accepted() >= 1, 'the TCP connection was made, the request was not');

  const resetting = await rawServer('reset');
  t.teardown(resetting.close);
  t.match(await send(`https://127.0.0.1:${resetting.port}`), { kind: 'retry', reason: /not sent/ }, 'reset during the TLS handshake: retry');
}

/**
 * allowPrivateTargets: false refuses every loopback spelling of the mock's own address without
 * connecting (the mock counts nothing), and the metadata and private addresses. Those two are sent
 * with an already-aborted signal as a safety net: a provider checks an IP literal before it looks at
 * the signal, and never connects once the signal has fired, so even a broken guard could not make
 * this test connect outside loopback (it would answer `retry` and fail instead).
 */
async function ssrfSuite(t: Test, mock: MockServer, send: (baseUrl: string, extra?: Partial<SendRequest>) => Promise<SendOutcome>): Promise<void> {
  const port = mock.port;
  const before = mock.counts.received;
  for (const [base, address] of [
    [`${mock.url}`, '127.0.0.1'],
    [`${mock.url.replace('127.0.0.1', '[::1]')}`, '::1'],
    [`${mock.url.replace('127.0.0.1', '[::ffff:127.0.0.1]')}`, '::ffff:7f00:1'],
    [`${mock.url.replace('127.0.0.1', 'localhost')}`, /refusing (127\.0\.0\.1|::1) \(loopback\)/],
    [`${mock.url.replace('127.0.0.1', '2130706433')}`, '127.0.0.1'],
  ] as const) {
    const outcome = await send(base);
    t.match(outcome, { kind: 'rejected', reason: typeof address === 'string' ? new RegExp(`refusing ${address.replace(/[.:]/g, '\\$&')} \\(`) : address }, `refused: ${base}`);
  }
  t.equal(mock.counts.received, before, `no request reached the mock on port ${port}`);
  // The safety net itself: with the signal already fired, even an allowed target gets no connection.
  let connections = 0;
  const count = () => void connections++;
  mock.server.on('connection', count);
  mock.server.on('secureConnection', count);
  t.match(await send(mock.url, { allowPrivateTargets: true, signal: AbortSignal.abort() }), { kind: 'retry', reason: /before the request was sent/ }, 'an aborted signal: retry');
  mock.server.off('connection', count);
  mock.server.off('secureConnection', count);
  t.equal(connections, 0, 'and no connection was even opened');
  t.equal(mock.counts.received, before, 'nor a request sent');
  for (const [host, range] of [['169.254.169.254', 'linkLocal'], ['10.0.0.1', 'private']] as const) {
    const base = mock.url.replace('127.0.0.1', host);
    t.match(await send(base, { signal: AbortSignal.abort() }), { kind: 'rejected', reason: `refusing ${host} (${range})` }, `refused: ${base}`);
  }
}

// --- SSRF guard ----------------------------------------------------------------------------------

t.test('checkTarget refuses private, loopback, link-local and other special addresses (IP literals only)', async (t) => {
  const refused = [
    'http://127.0.0.1/', 'http://127.1/', 'http://2130706433/', 'http://0x7f000001/', 'http://127.255.255.254:8080/x', 'http://169.254.169.254/latest/meta-data/',
    'http://10.0.0.1/', 'http://172.16.0.1/', 'http://172.31.255.255/', 'http://192.168.1.1/', 'http://100.64.0.1/', 'http://0.0.0.0/', 'http://0/', 'http://224.0.0.1/',
    'http://255.255.255.255/', 'http://192.0.2.1/', 'http://[::1]/', 'http://[::]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'http://[::ffff:169.254.169.254]/',
    'http://[::ffff:10.0.0.1]/', 'http://[::127.0.0.1]/', 'http://[fe80::1]/', 'http://[fc00::1]/', 'http://[fd12:3456::1]/', 'http://[ff02::1]/', 'http://[64:ff9b::7f00:1]/',
    'http://[64:ff9b::a9fe:a9fe]/', 'http://[2002:7f00:1::]/', 'http://[2002:a00:1::]/', 'http://[64:ff9b:1::1]/', 'http://[2001:db8::1]/',
  ];
  for (const url of refused) {
    const check = await checkTarget(url, false);
    t.match(check, { ok: false, reason: /^refusing \S+ \(/ }, `refused: ${url}`);
    t.notOk((check as { retryable?: boolean }).retryable, 'a refusal is not retryable');
  }
  t.match(await checkTarget('http://169.254.169.254/', false), { ok: false, reason: /169\.254\.169\.254 \(linkLocal\)/ }, 'the reason names the address and its range');
  t.match(await checkTarget('http://[::ffff:127.0.0.1]/', false), { ok: false, reason: /loopback via IPv4-mapped 127\.0\.0\.1/ });

  const allowed: Array<[string, string, 4 | 6]> = [
    ['http://8.8.8.8/', '8.8.8.8', 4], ['https://1.1.1.1:8443/hook?x=1', '1.1.1.1', 4], ['https://[2606:4700:4700::1111]/', '2606:4700:4700::1111', 6],
    ['http://[64:ff9b::808:808]/', '64:ff9b::808:808', 6], ['http://[2002:808:808::1]/', '2002:808:808::1', 6], ['http://[::ffff:8.8.8.8]/', '::ffff:808:808', 6],
  ];
  for (const [url, address, family] of allowed) t.same(await checkTarget(url, false), { ok: true, address, family }, `public: ${url}`);

  t.match(await checkTarget('http://localhost:1/', false), { ok: false, reason: /^refusing (127\.0\.0\.1|::1) \(loopback\)/ }, 'a host name that resolves to loopback');
  t.match(await checkTarget('http://127.0.0.1:1/', true), { ok: true, address: '127.0.0.1', family: 4 }, 'allowed for a workspace that allows private targets');
  t.match(await checkTarget('http://localhost:1/', true), { ok: true, address: /^(127\.0\.0\.1|::1)$/ });
  for (const url of ['ftp://127.0.0.1/', 'file:///etc/passwd', 'gopher://127.0.0.1:70/', 'javascript:alert(1)', 'not a url', 'http://']) {
    t.match(await checkTarget(url, true), { ok: false }, `not http(s) or not a URL, even when private targets are allowed: ${url}`);
  }
  t.match(await checkTarget('http://no-such-host.invalid/', true), { ok: false, retryable: true, reason: /DNS lookup of no-such-host\.invalid failed/ }, 'DNS failure (.invalid never resolves): retryable');
  t.equal(forbiddenRange('8.8.8.8'), null);
  t.equal(forbiddenRange('[::1]'), 'loopback');
  t.equal(forbiddenRange('nonsense'), 'not an IP address');
});

t.test('the strict pools refuse private addresses at connect time too (DNS rebinding)', async (t) => {
  const all = await new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) => guardedLookup('localhost', { all: true }, (err) => resolve({ err })));
  t.equal(all.err?.code, SSRF_REFUSED, 'lookup with all: true');
  const one = await new Promise<{ err: NodeJS.ErrnoException | null }>((resolve) => guardedLookup('localhost', {}, (err) => resolve({ err })));
  t.equal(one.err?.code, SSRF_REFUSED, 'single-address lookup');

  const mock = await startWebhookReceiver();
  t.teardown(() => mock.close());
  const url = mock.url.replace('127.0.0.1', 'localhost');
  // Straight to the pools, past checkTarget: as if the pre-check had seen a public answer.
  const undiciError = await agentFor(false).request({ origin: url, path: '/', method: 'POST', body: 'x' }).then(() => null, (err: NodeJS.ErrnoException) => err);
  t.equal(undiciError?.code, SSRF_REFUSED, 'undici strict pool: refused while connecting');
  const agents = createNodeAgents();
  t.teardown(() => destroyNodeAgents(agents));
  const nodeError = await new Promise<NodeJS.ErrnoException>((resolve) => {
    const req = http.request(`${url}/`, { method: 'POST', agent: agents.http.strict }, () => resolve(new Error('answered')));
    req.on('error', resolve);
    req.end('x');
  });
  t.equal(nodeError.code, SSRF_REFUSED, 'node:http strict agent: refused while connecting');
  t.equal(mock.counts.received, 0, 'nothing reached the server');
  const permissive = await agentFor(true).request({ origin: url, path: '/', method: 'POST', body: 'x' });
  await permissive.body.dump();
  t.equal(permissive.statusCode, 200, 'the permissive pool connects (private targets allowed)');
});

// --- http.ts -------------------------------------------------------------------------------------

t.test('http helpers: error classification, Retry-After, capped body, no redirects', async (t) => {
  for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'ECONNRESET']) {
    t.equal(classifyNetworkError(Object.assign(new Error('x'), { code }), false).kind, 'retry', `${code} before the request left: retry`);
  }
  for (const code of ['ECONNRESET', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'EPIPE']) {
    t.equal(classifyNetworkError(Object.assign(new Error('x'), { code }), true).kind, 'unknown', `${code} after the request left: unknown`);
  }
  t.equal(classifyNetworkError(new DOMException('timed out', 'AbortError'), true).kind, 'unknown', 'an abort after the request left: unknown');
  t.equal(classifyNetworkError(Object.assign(new Error('x'), { code: SSRF_REFUSED }), false).kind, 'rejected', 'the SSRF refusal: rejected');

  t.equal(parseRetryAfter('7'), 7000);
  t.equal(parseRetryAfter(' 0 '), 0);
  t.equal(parseRetryAfter(undefined), undefined);
  t.equal(parseRetryAfter('soon'), undefined);
  const now = Date.parse('2025-01-01T00:00:00Z');
  t.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now), 30_000, 'an HTTP date');
  t.equal(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now), 0, 'a date in the past: now');
  t.equal(parseRetryAfter('999999999'), 3_600_000, 'capped at an hour');

  const big = await customServer((req, res) => {
    if (req.url === '/redirect') return void res.writeHead(302, { location: 'http://127.0.0.1:1/elsewhere' }).end();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(Buffer.alloc(MAX_RESPONSE_BYTES * 4, 'a'));
  });
  t.teardown(big.close);
  const capped = await httpRequest({ method: 'GET', url: big.url, allowPrivate: true });
  t.ok(capped.ok && capped.response.status === 200 && capped.response.body.length === MAX_RESPONSE_BYTES && capped.response.truncated, 'a 256 KiB body is cut at 64 KiB');
  const redirect = await httpRequest({ method: 'GET', url: `${big.url}/redirect`, allowPrivate: true });
  t.ok(redirect.ok && redirect.response.status === 302 && redirect.response.headers.location === 'http://127.0.0.1:1/elsewhere', 'a redirect is returned, not followed');
});

// --- SendGrid ------------------------------------------------------------------------------------

t.test('stringifyWith is JSON.stringify, with known strings spliced in as encoded', async (t) => {
  const html = '<p class="x">é 😀 \\ \u2028 \ud800 lone</p>\n'.repeat(50);
  const values: unknown[] = [
    'plain', html, '', null, 0, -1.5, true, [], {}, [html, undefined, null, () => 1], { a: undefined, b: html, c: [1, { d: html }], e: new Date(0), f: null },
    Object.assign(Object.create(null) as object, { n: html }), { toJSON: () => 'custom' }, new Map([[1, 2]]), { '"quoted" key': 'v' },
  ];
  const known = encodeStrings(html, 'plain', undefined, '');
  t.equal(known.length, 2, 'undefined and empty strings are not worth encoding');
  values.forEach((v, i) => t.equal(stringifyWith(v, known), JSON.stringify(v), `value ${i}`));
  t.equal(stringifyWith({ a: 'x' }, [['x', '"y"']]), '{"a":"y"}', 'a known string is taken from its encoding, not escaped again');
});

t.test('sendgrid', async (t) => {
  const mock = await startSendGridMock();
  const provider = createSendGridProvider();
  t.teardown(async () => {
    provider.close();
    await mock.close();
  });
  const email = (over: Partial<Extract<Payload, { kind: 'email' }>> = {}): Payload => ({
    kind: 'email', to: 'ada@example.com', from: { email: 'news@herald.dev', name: 'Herald News' }, subject: 'Hello Ada', text: 'Hi Ada', html: '<p>Hi Ada</p>',
    headers: { 'List-Unsubscribe': '<https://herald.dev/t/u/abc>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' }, ...over,
  });
  const settings = (base = mock.url) => ({ fromEmail: 'news@herald.dev', replyTo: 'help@herald.dev', apiBaseUrl: base });
  const send: Send = (extra = {}) => provider.send(sendRequest(email(), settings(), { apiKey: mock.apiKey }, extra));

  const req = sendRequest(email(), settings(), { apiKey: mock.apiKey });
  const sent = await provider.send(req);
  t.equal(mock.messages.length, 1);
  const record = mock.messages[0]!;
  t.same(sent, { kind: 'sent', providerMessageId: record.id }, 'sent, with the X-Message-Id');
  t.equal(record.headers.authorization, `Bearer ${mock.apiKey}`);
  t.same(record.body.personalizations, [{ to: [{ email: 'ada@example.com' }] }]);
  t.same(record.body.from, { email: 'news@herald.dev', name: 'Herald News' });
  t.same(record.body.reply_to, { email: 'help@herald.dev' }, 'reply_to from the settings');
  t.equal(record.body.subject, 'Hello Ada');
  t.same(record.body.content, [{ type: 'text/plain', value: 'Hi Ada' }, { type: 'text/html', value: '<p>Hi Ada</p>' }], 'text/plain first, then text/html');
  t.same(record.body.headers, { 'List-Unsubscribe': '<https://herald.dev/t/u/abc>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' });
  t.same(record.body.custom_args, { herald_message_id: req.messageId, herald_workspace_id: WORKSPACE }, 'custom_args carry the message and workspace');
  // As @sendgrid/mail makes the request: the email's headers ride on the API request too.
  t.equal(record.headers['list-unsubscribe'], '<https://herald.dev/t/u/abc>');
  t.equal(record.headers['list-unsubscribe-post'], 'List-Unsubscribe=One-Click');
  t.equal(record.headers['content-type'], 'application/json');
  t.match(record.headers['user-agent'], /^sendgrid\/[\d.]+;nodejs$/, 'the library\'s client made the request');

  t.match(await provider.send(sendRequest(email({ to: 'not-an-address' }), settings(), { apiKey: mock.apiKey })), { kind: 'rejected', reason: /^400: personalizations\.0\.to\.0\.email: Does not contain a valid address/ }, '400: rejected with SendGrid\'s message');
  t.match(await provider.send(sendRequest(email(), settings(), { apiKey: 'SG.wrong.key' })), { kind: 'rejected', reason: /^invalid API key/ }, '401: invalid API key');
  for (const status of [403, 413]) {
    mock.setFaults({ status, times: 1 });
    t.match(await send(), { kind: 'rejected', reason: new RegExp(`^${status}: (access forbidden|Payload Too Large)`) }, `${status}: rejected with SendGrid's message`);
  }
  t.match(await provider.send(sendRequest(email(), { fromEmail: 'a@b.c', apiBaseUrl: `${mock.url}/nowhere` }, { apiKey: mock.apiKey })), { kind: 'rejected', reason: /^404/ }, 'a wrong base URL (404): rejected');

  t.test('the request is the one @sendgrid/mail makes: body byte for byte, headers, method and path', async (t) => {
    // A MailService whose client records what it was asked to send.
    const service = new (sgMail as unknown as { MailService: new () => { setClient(c: unknown): void; send(m: unknown): Promise<unknown> } }).MailService();
    const seen: { request?: { method: string; url: string; headers: Record<string, string>; body: unknown } } = {};
    const recorded = () => seen.request;
    service.setClient({ request: (data: typeof seen.request) => ((seen.request = data), Promise.resolve([{ statusCode: 202, headers: {} }, ''])) });
    const payloads: Array<[string, Payload, Record<string, unknown>]> = [
      ['everything', email(), settings()],
      ['no name, no reply-to, html only', email({ from: { email: 'a@b.c' }, text: undefined }), { fromEmail: 'a@b.c' }],
      ['text only, the settings\' sender name', email({ from: { email: 'a@b.c' }, html: undefined }), { fromName: 'Shop "Co", Ltd', replyTo: 'Help Desk <help@b.c>' }],
      ['a reply-to of its own, reserved headers dropped', email({ replyTo: 'r@b.c', headers: { 'X-Tag': 'v', Authorization: 'no', 'content-type': 'no' } }), settings()],
      ['no headers, empty subject, unicode', email({ headers: {}, subject: '', html: '<p>é 😀 \u2028 "q" </p>\u0000' }), settings()],
      ['a name in the address', email({ to: 'Ada Lovelace <ada@example.com>' }), settings()],
    ];
    for (const [what, payload, s] of payloads) {
      const mail = sendGridMail(sendRequest(payload, s, {}), payload as Extract<Payload, { kind: 'email' }>);
      delete seen.request;
      await service.send({ ...mail });
      const made = recorded();
      t.equal(made?.method, 'POST', what);
      t.equal(made?.url, '/v3/mail/send');
      t.same(made?.headers, mail.headers ?? {}, `${what}: the email's headers on the request`);
      t.equal(JSON.stringify(mailBody(mail)), JSON.stringify(made?.body), what);
      // As sent: with the html and text encoded once, for the body and the stored content.
      t.equal(stringifyWith(mailBody(mail), encodeStrings(mail.html, mail.text)), JSON.stringify(made?.body), `${what}, encoded once`);
    }
  });

  t.test('a client per API key: two configs never share one', async (t) => {
    const other = await startSendGridMock();
    t.teardown(() => other.close());
    const [a, b, c] = await Promise.all([
      provider.send(sendRequest(email(), settings(), { apiKey: mock.apiKey })),
      provider.send(sendRequest(email(), settings(other.url), { apiKey: other.apiKey })),
      provider.send(sendRequest(email(), settings(other.url), { apiKey: mock.apiKey })),
    ]);
    t.equal(a.kind, 'sent');
    t.equal(b.kind, 'sent');
    t.match(c, { kind: 'rejected', reason: /invalid API key/ }, 'the first key is not valid on the second account');
    t.equal(other.messages.at(-1)?.headers.authorization, `Bearer ${other.apiKey}`);
  });

  t.test('faults', async (t) => faultSuite(t, mock, send));

  t.test('429 with X-RateLimit-Reset', async (t) => {
    const limited = await customServer((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 30) });
      res.end(JSON.stringify({ errors: [{ message: 'too many requests', field: null, help: null }] }));
    });
    t.teardown(limited.close);
    const outcome = await provider.send(sendRequest(email(), settings(limited.url), { apiKey: mock.apiKey }));
    t.match(outcome, { kind: 'retry', reason: /429: too many requests/ });
    const after = (outcome as { retryAfterMs?: number }).retryAfterMs ?? -1;
    t.ok(after > 27_000 && after <= 30_000, `retryAfterMs from X-RateLimit-Reset (${after})`);
  });

  t.test('a redirect is not followed', async (t) => {
    const redirecting = await customServer((_req, res) => void res.writeHead(307, { location: `${mock.url}/v3/mail/send` }).end());
    t.teardown(redirecting.close);
    const before = mock.counts.received;
    t.match(await provider.send(sendRequest(email(), settings(redirecting.url), { apiKey: mock.apiKey })), { kind: 'rejected', reason: /redirect \(307/ });
    t.equal(mock.counts.received, before, 'the redirect target was not requested');
  });

  t.test('before the request left: retry', async (t) => beforeSendSuite(t, (base, extra) => provider.send(sendRequest(email(), settings(base), { apiKey: mock.apiKey }, extra))));
  t.test('SSRF', async (t) => ssrfSuite(t, mock, (base, extra) => provider.send(sendRequest(email(), settings(base), { apiKey: mock.apiKey }, { allowPrivateTargets: false, ...extra }))));
});

// --- Twilio --------------------------------------------------------------------------------------

t.test('twilio', async (t) => {
  const mock = await startTwilioMock();
  t.teardown(() => mock.close());
  const provider = createTwilioProvider();
  const sms = (to = '+14155550100'): Payload => ({ kind: 'sms', to, text: 'Your code is 1234', statusCallbackUrl: 'https://herald.dev/webhooks/sms/cfg_1' });
  const settings = (base = mock.url) => ({ accountSid: mock.accountSid, from: '+14155550199', apiBaseUrl: base });
  const secrets = { authToken: mock.authToken };
  const send: Send = (extra = {}) => provider.send(sendRequest(sms(), settings(), secrets, extra));

  const sent = await send();
  t.equal(mock.messages.length, 1);
  const record = mock.messages[0]!;
  t.same(sent, { kind: 'sent', providerMessageId: record.message.sid }, 'sent, with the message sid');
  t.match(record.message.sid, /^SM[0-9a-f]{32}$/);
  t.same(record.params, { To: '+14155550100', From: '+14155550199', Body: 'Your code is 1234', StatusCallback: 'https://herald.dev/webhooks/sms/cfg_1' }, 'the form fields (Basic auth checked by the mock)');
  const noCallback = await provider.send(sendRequest({ kind: 'sms', to: '+14155550101', text: 'x' }, settings(), secrets));
  t.equal(noCallback.kind, 'sent');
  t.notOk('StatusCallback' in mock.messages[1]!.params, 'no StatusCallback when the payload has none');

  t.same(await provider.send(sendRequest(sms('+0123'), settings(), secrets)), { kind: 'rejected', reason: "21211: The 'To' number +0123 is not a valid phone number." }, '400 21211: rejected with code: message');
  t.match(await provider.send(sendRequest(sms(), settings(), { authToken: 'wrong' })), { kind: 'rejected', reason: /authentication failed \(20003: Authenticate\)/ }, '401: rejected');

  t.test('400 21610 (unsubscribed recipient)', async (t) => {
    const server = await customServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 21610, message: 'Attempt to send to unsubscribed recipient', more_info: 'https://www.twilio.com/docs/errors/21610', status: 400 }));
    });
    t.teardown(server.close);
    t.same(await provider.send(sendRequest(sms(), settings(server.url), secrets)), { kind: 'unsubscribed', reason: '21610: Attempt to send to unsubscribed recipient' }, 'the recipient opted out: unsubscribed, not a plain rejection');
  });

  t.test('faults (a 500 is unknown: the SMS may exist)', async (t) => faultSuite(t, mock, send, 'sent', 'unknown'));
  t.test('before the request left: retry', async (t) => beforeSendSuite(t, (base, extra) => provider.send(sendRequest(sms(), settings(base), secrets, extra))));
  t.test('SSRF', async (t) => ssrfSuite(t, mock, (base, extra) => provider.send(sendRequest(sms(), settings(base), secrets, { allowPrivateTargets: false, ...extra }))));
});

// --- Web push ------------------------------------------------------------------------------------

t.test('web_push', async (t) => {
  const mock = await startWebPushMock();
  const provider = createWebPushProvider({ ca: MOCK_TLS.cert });
  t.teardown(async () => {
    provider.close();
    await mock.close();
  });
  const vapid = webpush.generateVAPIDKeys();
  const settings = { subject: 'mailto:ops@herald.dev', vapidPublicKey: vapid.publicKey };
  const secrets = { vapidPrivateKey: vapid.privateKey };
  const subscription = createSubscription(mock, { applicationServerKey: vapid.publicKey });
  const push = (endpoint = subscription.endpoint, over: Partial<PushPayload> = {}): PushPayload => ({
    kind: 'web_push', to: { endpoint, keys: subscription.keys }, title: 'Sale', body: 'Everything -20%', imageUrl: 'https://herald.dev/i.png', clickUrl: 'https://herald.dev/t/c/xyz',
    data: { herald_receipt_url: 'https://herald.dev/t/p/xyz', campaign: 'spring' }, ...over,
  });
  const send: Send = (extra = {}) => provider.send(sendRequest(push(), settings, secrets, extra));

  const sent = await send();
  t.equal(mock.messages.length, 1);
  const record = mock.messages[0]!;
  t.same(sent, { kind: 'sent', providerMessageId: `${mock.origin}/m/${record.messageId}` }, 'sent, with the Location');
  t.same(record.json, { title: 'Sale', body: 'Everything -20%', image: 'https://herald.dev/i.png', url: 'https://herald.dev/t/c/xyz', data: { herald_receipt_url: 'https://herald.dev/t/p/xyz', campaign: 'spring' } }, 'the payload, as the mock decrypted it');
  t.equal(record.ttl, 86_400, 'TTL 24 h');
  t.match(record.vapid, { aud: mock.origin, sub: 'mailto:ops@herald.dev', publicKey: vapid.publicKey }, 'VAPID with the config keys');

  const exact = 'x'.repeat(MAX_WEB_PUSH_PAYLOAD - Buffer.byteLength(JSON.stringify({ title: '', body: '', data: {} })));
  const bare = { title: '', imageUrl: undefined, clickUrl: undefined, data: {} };
  t.equal((await provider.send(sendRequest(push(undefined, { ...bare, body: exact }), settings, secrets))).kind, 'sent', `a ${MAX_WEB_PUSH_PAYLOAD}-byte payload fits the service's 4096 bytes`);
  const received = mock.counts.received;
  t.match(await provider.send(sendRequest(push(undefined, { ...bare, body: `${exact}x` }), settings, secrets)), { kind: 'rejected', reason: /over the 3993-byte limit/ }, 'one byte more: rejected before sending');
  t.equal(mock.counts.received, received, 'nothing sent for it');
  t.match(await provider.send(sendRequest(push(undefined, { to: { endpoint: subscription.endpoint, keys: null } }), settings, secrets)), { kind: 'rejected', reason: /no encryption keys/ });

  mock.gone.add(subscriptionId(subscription));
  t.match(await send(), { kind: 'gone', reason: /410/ }, '410: gone');
  mock.gone.clear();
  t.match(await provider.send(sendRequest(push(`${mock.url}/push/unknown-subscription`), settings, secrets)), { kind: 'gone', reason: /404/ }, '404: gone');
  mock.setFaults({ status: 413, times: 1 });
  t.match(await send(), { kind: 'rejected', reason: /413/ }, '413: rejected');
  const other = webpush.generateVAPIDKeys();
  t.match(await provider.send(sendRequest(push(), { ...settings, vapidPublicKey: other.publicKey }, { vapidPrivateKey: other.privateKey })), { kind: 'rejected', reason: /403: VAPID public key mismatch/ }, '403: rejected');
  t.match(await provider.send(sendRequest(push(), { ...settings, subject: 'not-a-contact' }, secrets)), { kind: 'rejected', reason: /could not be built/ }, 'a config web-push refuses locally: rejected, no request');
  t.match(await provider.send(sendRequest(push(subscription.endpoint.replace('https:', 'http:')), settings, secrets)), { kind: 'rejected', reason: /https/ });

  t.test('faults', async (t) => faultSuite(t, mock, send));
  t.test('before the request left: retry', async (t) =>
    beforeSendSuite(t, (base, extra) => provider.send(sendRequest(push(`${base.replace('http:', 'https:')}/push/${subscriptionId(subscription)}`), settings, secrets, extra))));
  t.test('SSRF', async (t) => ssrfSuite(t, mock, (base, extra) => provider.send(sendRequest(push(`${base}/push/${subscriptionId(subscription)}`), settings, secrets, { allowPrivateTargets: false, ...extra }))));
});

// --- FCM -----------------------------------------------------------------------------------------

t.test('fcm', async (t) => {
  const mock = await startFcmMock();
  t.teardown(() => mock.close());
  const provider = createFcmProvider();
  const push = (token = 'device-token-1'): Payload => ({
    kind: 'mobile_push', to: { endpoint: token }, title: 'Sale', body: 'Everything -20%', imageUrl: 'https://herald.dev/i.png', clickUrl: 'https://herald.dev/t/c/xyz',
    data: { herald_receipt_url: 'https://herald.dev/t/p/xyz' },
  });
  const settings = (base = mock.url) => ({ projectId: mock.projectId, apiBaseUrl: base });
  const secrets = { accessToken: mock.accessToken };
  const send: Send = (extra = {}) => provider.send(sendRequest(push(), settings(), secrets, extra));

  const sent = await send();
  t.equal(mock.messages.length, 1);
  const record = mock.messages[0]!;
  t.same(sent, { kind: 'sent', providerMessageId: record.name }, 'sent, with the message name');
  t.match(record.name, /^projects\/herald-test\/messages\/0:/);
  t.same(record.message, {
    token: 'device-token-1',
    notification: { title: 'Sale', body: 'Everything -20%', image: 'https://herald.dev/i.png' },
    data: { herald_receipt_url: 'https://herald.dev/t/p/xyz', click_url: 'https://herald.dev/t/c/xyz' },
  }, 'the v1 message');
  t.equal(record.headers.authorization, `Bearer ${mock.accessToken}`);

  mock.unregistered.add('old-token');
  t.match(await provider.send(sendRequest(push('old-token'), settings(), secrets)), { kind: 'gone', reason: /UNREGISTERED/ }, '404 UNREGISTERED: gone');
  mock.setFaults({ status: 404, times: 1 });
  t.match(await send(), { kind: 'gone' }, '404: gone');
  mock.invalid.add('bad-token');
  t.match(await provider.send(sendRequest(push('bad-token'), settings(), secrets)), { kind: 'rejected', reason: /^400 INVALID_ARGUMENT: The registration token is not a valid FCM registration token/ }, '400 INVALID_ARGUMENT: rejected');
  t.match(await provider.send(sendRequest(push(), settings(), { accessToken: 'ya29.expired' })), { kind: 'rejected', reason: /^not authorized \(401/ }, '401: rejected');
  t.match(await provider.send(sendRequest(push(), { projectId: 'someone-else', apiBaseUrl: mock.url }, secrets)), { kind: 'rejected', reason: /^not authorized \(403/ }, '403: rejected');

  t.test('faults', async (t) => faultSuite(t, mock, send));
  t.test('before the request left: retry', async (t) => beforeSendSuite(t, (base, extra) => provider.send(sendRequest(push(), settings(base), secrets, extra))));
  t.test('SSRF', async (t) => ssrfSuite(t, mock, (base, extra) => provider.send(sendRequest(push(), settings(base), secrets, { allowPrivateTargets: false, ...extra }))));
});

// --- Webhook -------------------------------------------------------------------------------------

t.test('webhook', async (t) => {
  const secret = generateWebhookSecret();
  const mock = await startWebhookReceiver({ secret });
  t.teardown(() => mock.close());
  const provider = createWebhookProvider();
  const hook = (url = `${mock.url}/hooks/herald?src=1`, over: Partial<Extract<Payload, { kind: 'webhook' }>> = {}): Payload => ({
    kind: 'webhook', method: 'POST', url, headers: { 'X-Custom': 'yes', 'webhook-id': 'forged' }, body: JSON.stringify({ event: 'signup', customer: 'c_1' }), ...over,
  });
  const secrets = { signingSecret: secret };
  const send: Send = (extra = {}) => provider.send(sendRequest(hook(), {}, secrets, extra));

  const req = sendRequest(hook(), {}, secrets);
  t.same(await provider.send(req), { kind: 'sent', providerMessageId: null }, '2xx: sent');
  const record = mock.requests[0]!;
  t.equal(record.verified, true, 'the receiver verified the signature');
  t.equal(record.id, req.messageId, 'webhook-id is the message id (a template cannot forge it)');
  t.equal(record.method, 'POST');
  t.equal(record.path, '/hooks/herald?src=1');
  t.equal(record.headers['x-custom'], 'yes');
  t.equal(record.headers['content-type'], 'application/json');
  t.same(record.json, { event: 'signup', customer: 'c_1' });
  t.ok(Math.abs(Number(record.timestamp) - Date.now() / 1000) < 5, 'webhook-timestamp is now, in seconds');
  t.same(new Webhook(secret).verify(record.body, record.headers as Record<string, string>), { event: 'signup', customer: 'c_1' }, 'and so does the standardwebhooks library');

  t.same(await provider.send(sendRequest(hook(undefined, { method: 'get', body: undefined }), {}, secrets)), { kind: 'sent', providerMessageId: null }, 'a GET without a body');
  t.equal(mock.requests[1]?.method, 'GET');
  t.equal(mock.requests[1]?.verified, true, 'signed over the empty body');
  t.match(await provider.send(sendRequest(hook(undefined, { method: 'GET' }), {}, secrets)), { kind: 'rejected', reason: /GET request cannot carry a body/ });
  t.match(await provider.send(sendRequest(hook(undefined, { method: 'TRACE' }), {}, secrets)), { kind: 'rejected', reason: /unsupported method/ });

  for (const [status, kind] of [[410, 'gone'], [404, 'rejected'], [400, 'rejected'], [401, 'rejected'], [422, 'rejected']] as const) {
    mock.status = status;
    t.match(await send(), { kind, reason: new RegExp(String(status)) }, `${status}: ${kind}`);
  }
  mock.status = 204;
  t.same(await send(), { kind: 'sent', providerMessageId: null }, '204: sent');
  mock.status = 200;

  t.test('a redirect is rejected, not followed', async (t) => {
    const redirecting = await customServer((_req, res) => void res.writeHead(302, { location: `${mock.url}/elsewhere` }).end());
    t.teardown(redirecting.close);
    const before = mock.counts.received;
    t.match(await provider.send(sendRequest(hook(`${redirecting.url}/hook`), {}, secrets)), { kind: 'rejected', reason: /redirect \(302 to http:\/\/127\.0\.0\.1:\d+\/elsewhere\) not followed/ });
    t.equal(redirecting.hits(), 1);
    t.equal(mock.counts.received, before, 'the redirect target got nothing');
  });

  t.test('a huge answer is read up to the cap and dropped', async (t) => {
    const chatty = await customServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(Buffer.alloc(2 * 1024 * 1024, 'z'));
    });
    t.teardown(chatty.close);
    t.same(await provider.send(sendRequest(hook(`${chatty.url}/hook`), {}, secrets)), { kind: 'sent', providerMessageId: null });
  });

  t.test('faults', async (t) => faultSuite(t, mock, send));
  t.test('before the request left: retry', async (t) => beforeSendSuite(t, (base, extra) => provider.send(sendRequest(hook(`${base}/hook`), {}, secrets, extra))));
  t.test('SSRF', async (t) => ssrfSuite(t, mock, (base, extra) => provider.send(sendRequest(hook(`${base}/hook`), {}, secrets, { allowPrivateTargets: false, ...extra }))));
});

// --- registry ------------------------------------------------------------------------------------

t.test('defaultProviders names every provider a channel config can use', async (t) => {
  const providers: Record<string, Provider> = defaultProviders();
  t.same(Object.keys(providers).sort(), ['fcm', 'sandbox', 'sendgrid', 'twilio', 'web_push', 'webhook']);
  for (const provider of Object.values(providers)) t.type(provider.send, 'function');
  t.match(await providers.webhook!.send(sendRequest({ kind: 'sms', to: '+1', text: 'x' }, {}, { signingSecret: generateWebhookSecret() })), { kind: 'rejected' }, 'a payload for another channel: rejected, not thrown');
});
