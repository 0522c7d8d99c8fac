// Provider faults end to end (issue 7, faults): a Herald worker (`node src/server.ts`,
// HERALD_ROLE=worker) sends through the SendGrid, Twilio and webhook mocks on 127.0.0.1, which
// answer 429 and 5xx, reset connections after reading the request, hang until Herald's deadline
// (10 s), or are not listening at all. The rules of the send pipeline, seen from both sides (the
// mock's log of each request and Herald's message rows):
// - retried only when the request did not reach the provider (connection refused) or the
//   provider said it did not accept it (429, 5xx), after the backoff (Retry-After, or base·4^(n-1)
//   with jitter), at most 5 attempts, then `failed` with the reason (the dead letter);
// - a reset or a timeout after the request left is `unknown`, never sent again; a 4xx is
//   `not_sent` at once;
// - no message is accepted twice, and the mock's own count of accepted requests agrees;
// - a call that hangs until its deadline holds back nothing else: the retries that come due
//   meanwhile are made on time (the worker starts once every message is queued, so they all
//   share its first batch with the hanging calls).
// Each scenario has a mock (and a channel config) of its own, so faults never cross; they all
// run at once. Nothing wakes the worker but Herald itself: the job that records a retry schedules
// a wake-up for when it comes due, so a retry comes within LATE_MS of its backoff (the per-minute
// cron alone would make it up to a minute late).
import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { enqueueMessages } from '../src/modules/messages/outbox.ts';
import { SEND_QUEUE } from '../src/modules/messages/outbox.ts';
import { MAX_ATTEMPTS, recoverAbandoned, SENDING_LEASE_MS } from '../src/modules/messages/send.worker.ts';
import { startHerald, workspaceWithKey } from './helpers/app.ts';
import { allowLoopback, makeCustomers, repeated, sleep, until as untilIn, watch, workerPool, type Arrival } from './helpers/faults-setup.ts';
import { startSendGridMock, startTwilioMock, startWebhookReceiver, type Faults, type MockServer } from './mocks/index.ts';
import { freePort } from './helpers/pg-server.ts';

/** Messages through the chaos mock (random faults on every request). */
const CHAOS = 200;
/** The backoff counts from the provider's answer, after its request arrived: a retry comes at least that long after (ms rounding aside). */
const SLACK_MS = 5;
/** And this much later than its backoff at most: the wake-ups, a claim, a loaded machine. */
const LATE_MS = 3000;
const TERMINAL = new Set(['sent', 'not_sent', 'failed', 'unknown']);

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, databaseUrl } = herald;
const { sql } = herald.runtime.deps.database;
const { boss } = herald.runtime.deps;
const until = <T>(what: string, check: () => Promise<T | undefined>, ms: number, every?: number) => untilIn(sql, what, check, ms, every);

const sendgridKey = (_h: IncomingHttpHeaders, body: string) => (JSON.parse(body) as { custom_args?: { herald_message_id?: string } }).custom_args?.herald_message_id ?? '?';
const webhookKey = (h: IncomingHttpHeaders) => String(h['webhook-id'] ?? '?');
const twilioKey = (_h: IncomingHttpHeaders, body: string) => new URLSearchParams(body).get('To') ?? '?';

interface Row { id: string; status: string; reason: string | null; attempts: number; phone: string }
interface Scenario {
  name: string;
  mock: MockServer;
  log: Arrival[];
  /** Herald's message ids of this scenario. */
  ids: string[];
  /** The mock's key of a message (its id, or its phone for Twilio). */
  key: (row: Row) => string;
}

t.test('429, 5xx, resets, hangs and refused connections: the retry and dead-letter rules hold and nothing is sent twice', async (t) => {
  const started = Date.now();
  const { call, workspaceId } = await workspaceWithKey(app);
  await allowLoopback(app, workspaceId);
  // Backoffs of 1 s, 4 s... instead of 15 s, 1 min...: the same rule, in seconds of a test.
  const pool = workerPool(databaseUrl, { HERALD_RETRY_BASE_MS: '1000' });
  t.teardown(pool.teardown);

  const email = (await call('POST', '/v1/templates', { name: 'Mail', channel: 'email', content: { subject: 'Hi {{ customer.external_id }}', html: '<p>Hello</p>' } })).json().id as string;
  const sms = (await call('POST', '/v1/templates', { name: 'Text', channel: 'sms', content: { text: 'Hi {{ customer.external_id }}' } })).json().id as string;
  const scenarios: Scenario[] = [];
  const mocks: MockServer[] = [];
  t.teardown(() => Promise.all(mocks.map((m) => m.close())));
  let prefix = 0;

  /** A scenario: a mock with faultOf(i) for its i-th request, a config on it, `n` customers and a message to each. */
  async function scenario(name: string, provider: 'sendgrid' | 'twilio' | 'webhook', faultOf: (i: number) => Faults, n = 1, baseUrl?: string): Promise<Scenario & { configId: string }> {
    let mock: MockServer;
    let configId: string;
    let templateId = email;
    let channel = 'email';
    let keyOf = sendgridKey;
    if (provider === 'sendgrid') {
      mock = await startSendGridMock({ apiKey: 'SG.faults' });
      configId = (await call('POST', '/v1/channel-configs', { name, provider, settings: { fromEmail: 'news@acme.example', apiBaseUrl: baseUrl ?? mock.url }, secrets: { apiKey: 'SG.faults' } })).json().id;
    } else if (provider === 'twilio') {
      const twilio = await startTwilioMock({ accountSid: `AC${'f'.repeat(32)}`, authToken: 'tw-faults' });
      mock = twilio;
      configId = (await call('POST', '/v1/channel-configs', { name, provider, settings: { accountSid: twilio.accountSid, from: '+15005550006', apiBaseUrl: mock.url }, secrets: { authToken: 'tw-faults' } })).json().id;
      [templateId, channel, keyOf] = [sms, 'sms', twilioKey];
    } else {
      const created = (await call('POST', '/v1/channel-configs', { name, provider: 'webhook' })).json();
      mock = await startWebhookReceiver({ secret: created.generatedSecrets.signingSecret });
      configId = created.id;
      templateId = (await call('POST', '/v1/templates', { name, channel: 'webhook', content: { method: 'POST', url: `${mock.url}/hook/{{ customer.external_id }}`, body: '{"hello":"{{ customer.external_id }}"}' } })).json().id;
      [channel, keyOf] = ['webhook', webhookKey];
    }
    mocks.push(mock);
    const log = watch(mock, keyOf, faultOf);
    const customers = await makeCustomers(sql, workspaceId, `s${prefix++}-`, n);
    const ids = await sql.begin((tx) => enqueueMessages(tx, boss, customers.map((customerId) => ({
      workspaceId, customerId, channel, channelConfigId: configId, templateId, templateVersion: 1, sourceType: 'action', sourceId: `faults:${name}`,
    })), new Date()));
    const s = { name, mock, log, ids, configId, key: provider === 'twilio' ? (r: Row) => r.phone : (r: Row) => r.id };
    scenarios.push(s);
    return s;
  }

  const always = (f: Faults) => () => f;
  const first = (k: number, f: Faults) => (i: number) => (i < k ? f : {});
  const sg429 = await scenario('sendgrid: 429 twice, Retry-After 1', 'sendgrid', first(2, { status: 429, retryAfter: 1 }));
  const sg500 = await scenario('sendgrid: 500 twice, no Retry-After (exponential backoff)', 'sendgrid', first(2, { status: 500 }));
  const sgDead = await scenario('sendgrid: 503 every time (dead letter)', 'sendgrid', always({ status: 503, retryAfter: 1 }));
  const sgReset = await scenario('sendgrid: reset after the request was read', 'sendgrid', first(1, { reset: true }));
  const sgHang = await scenario('sendgrid: no answer until the deadline', 'sendgrid', first(1, { hang: true }));
  const sg400 = await scenario('sendgrid: 400', 'sendgrid', first(1, { status: 400 }));
  const refusedPort = await freePort(); // nobody listens on it (it was free a moment ago)
  const sgRefused = await scenario('sendgrid: connection refused, then reachable', 'sendgrid', () => ({}), 1, `http://127.0.0.1:${refusedPort}`);
  const chaosFault = (): Faults => {
    const r = Math.random();
    if (r < 0.12) return { status: 429, retryAfter: 1 };
    if (r < 0.24) return { status: 500, retryAfter: 1 };
    if (r < 0.27) return { status: 503, retryAfter: 1 };
    if (r < 0.31) return { reset: true };
    if (r < 0.32) return { hang: true };
    return Math.random() < 0.5 ? { delayMs: 20 } : {};
  };
  const chaos = await scenario('sendgrid: random faults on every request', 'sendgrid', chaosFault, CHAOS);
  const tw429 = await scenario('twilio: 429 twice, Retry-After 1', 'twilio', first(2, { status: 429, retryAfter: 1 }));
  const twDead = await scenario('twilio: 503 every time (dead letter)', 'twilio', always({ status: 503, retryAfter: 1 }));
  const tw500 = await scenario('twilio: 500 (the SMS may exist)', 'twilio', first(1, { status: 500 }));
  const twReset = await scenario('twilio: reset after the request was read', 'twilio', first(1, { reset: true }));
  const wh503 = await scenario('webhook: 503 once, no Retry-After', 'webhook', first(1, { status: 503 }));
  const whReset = await scenario('webhook: reset after the request was read', 'webhook', first(1, { reset: true }));
  const whHang = await scenario('webhook: no answer until the deadline', 'webhook', first(1, { hang: true }));
  await pool.start();
  t.comment(`setup: ${scenarios.length} scenarios, ${scenarios.reduce((n, s) => n + s.ids.length, 0)} messages, a worker, in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const rows = async () => {
    const list = await sql<Row[]>`
      select m.id, m.status, m.reason, m.attempts, c.phone from messages m join customers c on c.workspace_id = m.workspace_id and c.id = m.customer_id
      where m.workspace_id = ${workspaceId}`;
    return new Map(list.map((r) => [r.id, r]));
  };
  // Connection refused: nothing reached the provider, so it is retried; once the config points at
  // the mock, the retry is sent.
  const refusedId = sgRefused.ids[0]!;
  const repoint = (async () => {
    const refused = await until('the refused attempt', async () => {
      const r = (await rows()).get(refusedId)!;
      return r.attempts >= 1 && r.status !== 'sending' ? r : undefined;
    }, 30_000, 50);
    t.match(refused, { status: 'queued', attempts: 1, reason: /^not sent: .*ECONNREFUSED/ }, 'connection refused: queued for a retry, the attempt counted');
    const res = await call('PUT', `/v1/channel-configs/${sgRefused.configId}`, { settings: { fromEmail: 'news@acme.example', apiBaseUrl: sgRefused.mock.url } });
    t.equal(res.statusCode, 200, res.body);
  })();

  // Wake the workers until every message has its outcome.
  const all = scenarios.flatMap((s) => s.ids);
  await until('every message to reach an outcome', async () => {
    const now = await rows();
    return all.every((id) => TERMINAL.has(now.get(id)!.status)) ? true : undefined;
  }, 60_000, 250);
  await repoint;
  // A little longer: nothing that has an outcome is sent again.
  const counts = () => scenarios.map((s) => s.log.length);
  const settled = counts();
  for (let i = 0; i < 6; i++) {
    await boss.send(SEND_QUEUE, {});
    await sleep(250);
  }
  t.same(counts(), settled, 'no request reached any mock once every message had its outcome');
  t.equal(await recoverAbandoned(sql, new Date(Date.now() + SENDING_LEASE_MS + 1000)), 0, "no message is left 'sending'");
  const final = await rows();

  const arrivalsOf = (s: Scenario, row: Row) => s.log.filter((a) => a.key === s.key(row));
  const gaps = (list: Arrival[]) => list.slice(1).map((a, i) => a.at - list[i]!.at);
  /** The one message of a scenario, its requests at the mock and the gaps between them. */
  const single = (s: Scenario) => {
    const row = final.get(s.ids[0]!)!;
    const got = arrivalsOf(s, row);
    return { row, faults: got.map((a) => a.fault), gaps: gaps(got) };
  };
  const report: string[] = [];
  /** backoff: [least, most] ms before each retry. */
  const check = (s: Scenario, expected: { status: string; attempts: number; faults: string[]; reason?: RegExp; backoff?: [number, number][] }) => {
    const { row, faults, gaps: g } = single(s);
    t.match(row, { status: expected.status, attempts: expected.attempts, ...(expected.reason ? { reason: expected.reason } : {}) }, `${s.name}: ${expected.status} after ${expected.attempts} attempt(s)`);
    t.same(faults, expected.faults, `${s.name}: the mock saw ${faults.length} request(s): ${faults.join(', ')}`);
    expected.backoff?.forEach(([least, most], i) => {
      const gap = g[i] ?? 0;
      t.ok(gap >= least - SLACK_MS && gap <= most + LATE_MS, `${s.name}: retry ${i + 1} came ${gap} ms after the previous attempt (backoff ${least}-${most} ms)`);
    });
    t.equal(s.mock.counts.accepted, expected.status === 'sent' ? 1 : 0, `${s.name}: the mock accepted it ${expected.status === 'sent' ? 'once' : 'never'}`);
    report.push(`${s.name}: ${row.status}, ${faults.join(' -> ')}${g.length ? ` (gaps ${g.join(', ')} ms)` : ''}`);
  };
  const second: [number, number] = [1000, 1000];
  check(sg429, { status: 'sent', attempts: 3, faults: ['429', '429', 'none'], backoff: [second, second] });
  check(sg500, { status: 'sent', attempts: 3, faults: ['500', '500', 'none'], backoff: [[750, 1250], [3000, 5000]] });
  check(sgDead, { status: 'failed', attempts: MAX_ATTEMPTS, faults: Array(MAX_ATTEMPTS).fill('503'), reason: new RegExp(`^gave up after ${MAX_ATTEMPTS} attempts: 503`), backoff: Array(MAX_ATTEMPTS - 1).fill(second) });
  check(sgReset, { status: 'unknown', attempts: 1, faults: ['reset'], reason: /after the request was sent/ });
  check(sgHang, { status: 'unknown', attempts: 1, faults: ['hang'], reason: /timed out waiting for the answer/ });
  check(sg400, { status: 'not_sent', attempts: 1, faults: ['400'], reason: /^provider_rejected: 400/ });
  check(sgRefused, { status: 'sent', attempts: 2, faults: ['none'] });
  check(tw429, { status: 'sent', attempts: 3, faults: ['429', '429', 'none'], backoff: [second, second] });
  check(twDead, { status: 'failed', attempts: MAX_ATTEMPTS, faults: Array(MAX_ATTEMPTS).fill('503'), reason: new RegExp(`^gave up after ${MAX_ATTEMPTS} attempts: HTTP 503`), backoff: Array(MAX_ATTEMPTS - 1).fill(second) });
  check(tw500, { status: 'unknown', attempts: 1, faults: ['500'], reason: /HTTP 500 after Twilio had the request/ });
  check(twReset, { status: 'unknown', attempts: 1, faults: ['reset'], reason: /after the request was sent/ });
  check(wh503, { status: 'sent', attempts: 2, faults: ['503', 'none'], backoff: [[750, 1250]] });
  check(whReset, { status: 'unknown', attempts: 1, faults: ['reset'], reason: /after the request was sent/ });
  check(whHang, { status: 'unknown', attempts: 1, faults: ['hang'], reason: /timed out waiting for the answer/ });

  // Chaos: each message's requests are retryable refusals until the last, which decides.
  const outcome = (last: string | undefined, n: number) =>
    last === 'none' ? 'sent' : last === 'reset' || last === 'hang' ? 'unknown' : n === MAX_ATTEMPTS ? 'failed' : 'queued';
  const wrong: string[] = [];
  const tally: Record<string, number> = {};
  for (const id of chaos.ids) {
    const row = final.get(id)!;
    const got = arrivalsOf(chaos, row).map((a) => a.fault);
    const expected = outcome(got.at(-1), got.length);
    tally[row.status] = (tally[row.status] ?? 0) + 1;
    const early = got.slice(0, -1).filter((f) => !['429', '500', '503'].includes(f));
    if (row.status !== expected || row.attempts !== got.length || early.length) wrong.push(`${id}: ${row.status} after ${row.attempts} attempts, the mock saw ${got.join(', ')}`);
  }
  t.same(wrong, [], `chaos: every message's status follows from what the mock did with its requests (${JSON.stringify(tally)})`);
  const accepted = chaos.log.filter((a) => a.fault === 'none').map((a) => a.key);
  t.same(repeated(accepted), {}, 'chaos: no message was accepted twice');
  t.equal(chaos.mock.counts.accepted, new Set(accepted).size, "chaos: the mock's own count of accepted mails is its count of distinct messages");
  t.equal(tally.sent, new Set(accepted).size, 'chaos: the messages recorded as sent are the ones the mock accepted');

  for (const line of report) t.comment(line);
  t.comment(`chaos (${CHAOS} messages, ${chaos.log.length} requests: ${JSON.stringify(Object.fromEntries(['none', '429', '500', '503', 'reset', 'hang'].map((f) => [f, chaos.log.filter((a) => a.fault === f).length])))}): ${JSON.stringify(tally)}; ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
});

