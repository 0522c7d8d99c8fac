// The send pipeline end to end: outbox, re-checks before sending, provider outcomes and their
// retry rules, action templates, tracking, and the read models.
import t from 'tap';
import { enqueueMessages, type NewMessage } from '../src/modules/messages/outbox.ts';
import { applyMessageEvents } from '../src/modules/messages/message-events.ts';
import { drainDueMessages, MAX_ATTEMPTS, recoverAbandoned, RENDER_RETRY_MS, RETRY_MAX_MS, sendDueMessages, sendJob, SENDING_LEASE_MS } from '../src/modules/messages/send.worker.ts';
import { CAP_HOLD_MS } from '../src/modules/messages/send.ledger.ts';
import { registerJobs } from '../src/jobs/queue.ts';
import type { Provider, SendOutcome, SendRequest } from '../src/providers/types.ts';
import { sandboxProvider } from '../src/providers/sandbox.ts';
import { newId } from '../src/ids.ts';
import { trackingUrls } from '../src/modules/messages/compose.ts';
import { caller, eventually, startHerald, workspaceWithKey } from './helpers/app.ts';

// Role api: no background workers, so each test drives the send loop itself with the test clock.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, runtime } = herald;
const { deps } = runtime;
const { sql } = deps.database;

/** A provider that answers what the test scripts, and records what it was asked. */
function scripted(outcomes: SendOutcome[]): Provider & { requests: SendRequest[] } {
  const requests: SendRequest[] = [];
  return {
    requests,
    async send(request) {
      requests.push(request);
      return outcomes.length > 1 ? outcomes.shift()! : (outcomes[0] ?? { kind: 'sent', providerMessageId: 'x' });
    },
  };
}

/** The message's one-click unsubscribe path (its List-Unsubscribe link, as stored in the view). */
const unsubscribeLinkOf = (view: { rendered: { links: string[] } }) => new URL(view.rendered.links.find((l) => l.includes('/t/u/'))!).pathname;

/** Puts `provider` in the sandbox's place for one test; the sandbox is back when the test ends. */
function useProvider<P extends Provider>(t: { teardown(fn: () => void): void }, provider: P): P {
  deps.providers.sandbox = provider;
  t.teardown(() => { deps.providers.sandbox = sandboxProvider; });
  return provider;
}

async function setup(channel: 'email' | 'sms' | 'web_push' = 'email') {
  const ws = await workspaceWithKey(app);
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel, ...(channel === 'email' ? { settings: { fromEmail: 'shop@acme.example' } } : {}) })).json().id as string;
  const content = channel === 'email'
    ? { subject: 'Hi {{ customer.first_name | default: "there" }}', html: '<html><body><p>Total {{ event.total }}</p><a href="https://shop.example/cart?a=1&amp;b=2">cart</a><a href="{{ unsubscribe_url }}">unsubscribe</a></body></html>', text: 'Total {{ event.total }}' }
    : channel === 'sms' ? { text: 'Code {{ event.code }}' } : { title: 'Hi', body: 'Sale', clickUrl: 'https://shop.example/sale' };
  const template = (await ws.call('POST', '/v1/templates', { name: 't', channel, content })).json().id as string;
  return { ...ws, config, template };
}

const enqueue = (rows: NewMessage[]) => sql.begin((tx) => enqueueMessages(tx, deps.boss, rows, herald.clock.now()));
const message = (s: Awaited<ReturnType<typeof setup>>, customerId: string, sourceId: string, extra: Partial<NewMessage> = {}): NewMessage => ({
  workspaceId: s.workspaceId, customerId, channel: 'email', channelConfigId: s.config, templateId: s.template, templateVersion: 1, sourceType: 'action', sourceId, event: { type: 'order.placed', total: 42 }, ...extra,
});
const statusOf = async (id: string) => (await sql`select status, reason, attempts from messages where id = ${id}`)[0]!;

t.test('one message per (source, customer, step, entry); re-checks before sending; visible reasons', async (t) => {
  const s = await setup();
  const ok = (await s.call('POST', '/v1/customers', { externalId: 'ok', email: 'ok@x.io', custom: { first_name: 'Ada' } })).json().id;
  const unsub = (await s.call('POST', '/v1/customers', { externalId: 'unsub', email: 'u@x.io' })).json().id;
  const noEmail = (await s.call('POST', '/v1/customers', { externalId: 'noemail' })).json().id;
  await s.call('PUT', `/v1/customers/${unsub}/consents/email`, { status: 'unsubscribed' });
  const source = newId();
  const first = await enqueue([message(s, ok, source), message(s, unsub, source), message(s, noEmail, source)]);
  t.equal(first.length, 3);
  t.same(await enqueue([message(s, ok, source)]), [], 'a retried decision makes no second message');
  t.equal((await enqueue([message(s, ok, source, { stepId: 'step-2' })])).length, 1, 'another step is another message');

  const provider = scripted([{ kind: 'sent', providerMessageId: 'p-1' }]);
  useProvider(t, provider);
  t.equal(await sendDueMessages(deps), 4);
  t.equal(await sendDueMessages(deps), 0, 'nothing is claimed twice');
  t.equal(provider.requests.length, 2, 'only the sendable messages reach the provider');
  const byCustomer = Object.fromEntries((await sql`select customer_id, status, reason from messages where source_id = ${source} and step_id = ''`).map((r) => [r.customer_id, r]));
  t.match(byCustomer[ok], { status: 'sent' });
  t.match(byCustomer[unsub], { status: 'not_sent', reason: 'unsubscribed' });
  t.match(byCustomer[noEmail], { status: 'not_sent', reason: 'no_address' });

  const sent = provider.requests[0]!;
  t.match(sent.payload, { kind: 'email', to: 'ok@x.io', subject: 'Hi Ada', text: 'Total 42' });
  const html = (sent.payload as { html: string }).html;
  t.match(html, /\/t\/o\/[A-Za-z0-9_-]+/, 'an open pixel');
  t.notMatch(html, /href="https:\/\/shop\.example/, 'links are rewritten');
  t.match((sent.payload as { headers: Record<string, string> }).headers, { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click', 'List-Unsubscribe': /^<http.*\/t\/u\/.+>$/ });

  const all = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${source}`)).json().data as { id: string; stepId: string; kind: string }[];
  const kinds = ['sent', 'delivered', 'opened', 'clicked', 'unsubscribed', 'forwarded', 'bounced', 'complained', 'not_sent', 'failed'];
  t.same(all.map((a) => `${a.stepId}:${a.kind}`), [...kinds.map((k) => `:${k}`), ...kinds.map((k) => `step-2:${k}`)], 'generated for the source, a set per step');
  const ats = all.filter((a) => a.stepId === '');
  t.match(ats.find((a: { kind: string }) => a.kind === 'sent'), { customers: 1 });
  t.match(ats.find((a: { kind: string }) => a.kind === 'not_sent'), { customers: 2 });
  const notSent = ats.find((a: { kind: string }) => a.kind === 'not_sent');
  const same = (await s.call('GET', `/v1/action-templates/${notSent!.id}/customers`)).json().data;
  t.same(same.map((c: { customerId: string }) => c.customerId).sort(), [unsub, noEmail].sort(), '"same actions" lists the customers');

  const timeline = (await s.call('GET', `/v1/customers/${unsub}/timeline`)).json().data;
  t.match(timeline.find((e: { kind: string }) => e.kind === 'message'), { data: { status: 'not_sent', reason: 'unsubscribed', channel: 'email' } }, 'the reason is on the timeline');
  t.match(timeline.find((e: { kind: string }) => e.kind === 'action'), { data: { kind: 'not_sent', touchpoint: { reason: 'unsubscribed' } } });
});

t.test('tracking: opens, clicks to the original URL, one-click unsubscribe; statuses only move forward', async (t) => {
  const s = await setup();
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'tr', email: 'tr@x.io' })).json().id;
  const source = newId();
  const [id] = await enqueue([message(s, customer, source)]);
  await sendDueMessages(deps);
  const view = (await s.call('GET', `/v1/messages/${id}`)).json();
  t.match(view, { status: 'sent', toAddress: 'tr@x.io', rendered: { subject: 'Hi there', links: ['https://shop.example/cart?a=1&b=2', /\/t\/u\//] } });
  const html = view.rendered.html as string;
  const pixel = /src="https?:\/\/[^/]+(\/t\/o\/[^"]+)"/.exec(html)![1]!;
  const clicks = [...html.matchAll(/href="https?:\/\/[^/]+(\/t\/c\/[^"]+)"/g)].map((m) => m[1]!);
  const anonymous = caller(app, null);

  const open = await anonymous('GET', pixel, undefined, { 'user-agent': 'Mail/1.0' });
  t.equal(open.statusCode, 200);
  t.equal(open.headers['content-type'], 'image/gif');
  await anonymous('GET', pixel);
  const click = await anonymous('GET', clicks[0]!);
  t.equal(click.statusCode, 302);
  t.equal(click.headers.location, 'https://shop.example/cart?a=1&b=2', 'to the URL that was in the message');
  await anonymous('GET', clicks[0]!);
  const after = (await s.call('GET', `/v1/messages/${id}`)).json();
  t.equal(after.status, 'clicked');
  t.same(after.events.map((e: { kind: string }) => e.kind), ['opened', 'opened', 'clicked', 'clicked'], 'repeated opens and clicks are kept as events');
  t.match(after.events[2].data, { url: 'https://shop.example/cart?a=1&b=2' });
  const ats = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${source}`)).json().data;
  t.match(ats.find((a: { kind: string }) => a.kind === 'opened'), { customers: 1 }, 'but assign the action template once');

  await applyMessageEvents(sql, [{ workspaceId: s.workspaceId, messageId: id!, kind: 'delivered', occurredAt: herald.clock.now(), providerEventId: 'late-delivery' }]);
  t.equal((await statusOf(id!)).status, 'clicked', 'a late "delivered" does not move the status back');
  const late = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${source}`)).json().data;
  t.match(late.find((a: { kind: string }) => a.kind === 'delivered'), { customers: 1 }, 'but what happened is recorded: the customer gets "delivered"');
  t.match(late.find((a: { kind: string }) => a.kind === 'clicked'), { customers: 1 });

  const tampered = clicks[0]!.slice(0, -1) + (clicks[0]!.endsWith('A') ? 'B' : 'A');
  t.equal((await anonymous('GET', tampered)).statusCode, 404, 'a token tampered by one byte is a 404');
  for (const byte of ['.', '=', '~', '!', '%2B', '%2F', '%00']) {
    for (const path of [clicks[0]!, pixel, unsubscribeLinkOf(view)]) {
      const changed = path.slice(0, -1) + byte;
      const res = await anonymous(path.startsWith('/t/u/') ? 'POST' : 'GET', changed);
      t.equal(res.statusCode, 404, `${changed.slice(0, 5)}: the last byte changed to ${byte}: 404`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
    }
  }
  t.equal((await anonymous('GET', pixel.replace('/t/o/', '/t/c/'))).statusCode, 404, 'an open token is not a click token');

  const unsubscribe = clicks[1]!;
  const unsubUrl = view.rendered.links[1] as string;
  const unsubPath = new URL(unsubUrl).pathname;
  t.equal((await anonymous('GET', unsubscribe)).headers.location, unsubUrl, 'the unsubscribe link in the body is tracked like any link');
  const page = await anonymous('GET', unsubPath);
  t.equal(page.statusCode, 200);
  t.match(page.body, /<form method="post">/);
  t.equal((await s.call('GET', `/v1/customers/${customer}`)).json().consents.length, 0, 'GET never unsubscribes');
  const oneClick = await anonymous('POST', unsubPath, 'List-Unsubscribe=One-Click', { 'content-type': 'application/x-www-form-urlencoded' });
  t.equal(oneClick.statusCode, 200);
  await anonymous('POST', unsubPath, 'List-Unsubscribe=One-Click', { 'content-type': 'application/x-www-form-urlencoded' });
  const consents = (await s.call('GET', `/v1/customers/${customer}`)).json().consents;
  t.match(consents, [{ channel: 'email', status: 'unsubscribed', history: [{ toStatus: 'unsubscribed' }] }], 'unsubscribed once');
  t.equal(consents[0].history.length, 1, 'idempotent');
  t.equal((await statusOf(id!)).status, 'unsubscribed');
});

t.test('retry rules: retry with backoff then dead-letter, never resend an unknown outcome, rejected and gone', async (t) => {
  const s = await setup();
  const c = (await s.call('POST', '/v1/customers', { externalId: 'r', email: 'r@x.io' })).json().id;
  const retrying = scripted([{ kind: 'retry', reason: '503 from provider' }]);
  useProvider(t, retrying);
  const [id] = await enqueue([message(s, c, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(id!), { status: 'queued', attempts: 1, reason: '503 from provider' });
  t.equal(await sendDueMessages(deps), 0, 'not before its backoff');
  for (let i = 2; i <= MAX_ATTEMPTS; i++) {
    // 15 s, 1 min, 4 min, 16 min, 1 h (±25%): not due just before the shortest it can be, due after the longest.
    const wait = Math.min(15_000 * 4 ** (i - 2), RETRY_MAX_MS);
    herald.clock.advance(wait * 0.75 - 1000);
    t.equal(await sendDueMessages(deps), 0, `attempt ${i}: not yet`);
    herald.clock.advance(wait * 0.5 + 2000);
    t.equal(await sendDueMessages(deps), 1, `attempt ${i}`);
  }
  t.match(await statusOf(id!), { status: 'failed', attempts: MAX_ATTEMPTS, reason: new RegExp(`gave up after ${MAX_ATTEMPTS} attempts`) }, 'dead-lettered as failed');
  t.equal(retrying.requests.length, MAX_ATTEMPTS);

  deps.providers.sandbox = scripted([{ kind: 'unknown', reason: 'socket reset after the request was sent' }]);
  const [unknown] = await enqueue([message(s, c, newId())]);
  await sendDueMessages(deps);
  herald.clock.advance(60 * 60_000);
  t.equal(await sendDueMessages(deps), 0, 'an unknown outcome is not sent again');
  t.match(await statusOf(unknown!), { status: 'unknown', reason: /reset/ });

  deps.providers.sandbox = scripted([{ kind: 'rejected', reason: 'invalid address' }]);
  const [rejected] = await enqueue([message(s, c, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(rejected!), { status: 'not_sent', reason: 'provider_rejected: invalid address' });

  // As a worker that died mid-call leaves them: marked 'sending', the mark's lease running out.
  const [stuck, busy] = await enqueue([message(s, c, newId()), message(s, c, newId())]);
  const now = herald.clock.now().getTime();
  await sql`update messages set status = 'sending' where id in ${sql([stuck!, busy!])}`;
  await sql`update message_queue set sending = true, due_at = ${new Date(now - 60_000)} where message_id = ${stuck!}`;
  await sql`update message_queue set sending = true, due_at = ${new Date(now + 60_000)} where message_id = ${busy!}`;
  t.equal(await recoverAbandoned(sql, herald.clock.now()), 1, 'only the mark whose lease has passed');
  t.match(await statusOf(busy!), { status: 'sending' }, 'a call still within its lease is left alone');
  t.equal(await sendDueMessages(deps), 0, 'neither is claimed again');
  t.match(await statusOf(stuck!), { status: 'unknown', reason: /worker stopped/ }, 'a message abandoned mid-send is marked unknown, not resent');
});

t.test('web push: a gone subscription is removed and not retried', async (t) => {
  const s = await setup('web_push');
  const c = (await s.call('POST', '/v1/customers', { externalId: 'wp' })).json().id;
  await s.call('POST', `/v1/customers/${c}/push-subscriptions`, { kind: 'web_push', endpoint: 'https://push.example/abc', keys: { p256dh: 'k', auth: 'a' } });
  const gone = scripted([{ kind: 'gone', reason: '410 Gone' }]);
  useProvider(t, gone);
  const [id] = await enqueue([message(s, c, newId(), { channel: 'web_push', event: null })]);
  await sendDueMessages(deps);
  t.match(gone.requests[0]!.payload, { kind: 'web_push', to: { endpoint: 'https://push.example/abc', keys: { p256dh: 'k', auth: 'a' } }, title: 'Hi', data: { herald_receipt_url: /\/t\/p\// } });
  t.match(await statusOf(id!), { status: 'not_sent', reason: 'no_address' });
  t.same((await s.call('GET', `/v1/customers/${c}`)).json().pushSubscriptions, [], 'the subscription is gone');
});

t.test('push receipts and clicks come back through /t/p; the push click goes to the clickUrl; an email forward is recorded', async (t) => {
  const s = await setup('web_push');
  const c = (await s.call('POST', '/v1/customers', { externalId: 'wp-ok' })).json().id;
  await s.call('POST', `/v1/customers/${c}/push-subscriptions`, { kind: 'web_push', endpoint: 'https://push.example/ok', keys: { p256dh: 'k', auth: 'a' } });
  const provider = useProvider(t, scripted([{ kind: 'sent', providerMessageId: 'wp-1' }]));
  const [id] = await enqueue([message(s, c, newId(), { channel: 'web_push', event: null })]);
  await sendDueMessages(deps);
  const payload = provider.requests[0]!.payload as unknown as { clickUrl: string; data: { herald_receipt_url: string } };
  const anonymous = caller(app, null);
  const receipt = new URL(payload.data.herald_receipt_url).pathname;
  t.equal((await anonymous('POST', receipt, { event: 'delivered' })).statusCode, 204);
  t.equal((await statusOf(id!)).status, 'delivered');
  const bare = await anonymous('POST', receipt);
  t.equal(bare.statusCode, 204, `no body (a beacon without data): an open ${bare.body}`);
  t.equal((await statusOf(id!)).status, 'opened');
  t.equal((await anonymous('POST', receipt, { event: 'bounced' })).statusCode, 400, 'only delivered, opened, clicked');
  const click = await anonymous('GET', new URL(payload.clickUrl).pathname);
  t.equal(click.statusCode, 302);
  t.equal(click.headers.location, 'https://shop.example/sale', 'the push click redirects to the template\'s clickUrl');
  t.equal((await statusOf(id!)).status, 'clicked');
  const events = (await s.call('GET', `/v1/messages/${id}`)).json().events.map((e: { kind: string }) => e.kind);
  t.same(events, ['delivered', 'opened', 'clicked']);
  t.equal((await anonymous('POST', `${receipt.slice(0, -1)}${receipt.endsWith('A') ? 'B' : 'A'}`, { event: 'clicked' })).statusCode, 404, 'a tampered receipt token');

  const e = await setup();
  const customer = (await e.call('POST', '/v1/customers', { externalId: 'fw', email: 'fw@x.io' })).json().id;
  useProvider(t, scripted([{ kind: 'sent', providerMessageId: 'fw-1' }]));
  const [mail] = await enqueue([message(e, customer, newId())]);
  await sendDueMessages(deps);
  const forward = new URL(trackingUrls(deps.config.publicUrl, deps.config.secret!, e.workspaceId, mail!).forward).pathname;
  const page = await anonymous('GET', forward);
  t.equal(page.statusCode, 200);
  t.match(page.body, /Total 42/, 'the email as sent');
  const after = (await e.call('GET', `/v1/messages/${mail}`)).json();
  t.same(after.events.map((x: { kind: string }) => x.kind), ['forwarded'], 'recorded as forwarded');
  t.equal(after.status, 'sent', 'a forward moves no status');
});

t.test('a provider that says the recipient opted out (Twilio 21610): not sent, the address off the list, the next message stopped before the provider', async (t) => {
  const s = await setup('sms');
  const c = (await s.call('POST', '/v1/customers', { externalId: 'stop', phone: '+33612345671' })).json().id;
  const provider = useProvider(t, scripted([{ kind: 'unsubscribed', reason: '21610: Attempt to send to unsubscribed recipient' }]));
  const [first] = await enqueue([message(s, c, newId(), { channel: 'sms', event: { code: '1' } })]);
  await sendDueMessages(deps);
  t.match(await statusOf(first!), { status: 'not_sent', reason: /^unsubscribed: 21610/ });
  const consents = (await s.call('GET', `/v1/customers/${c}`)).json().consents;
  t.match(consents, [{ channel: 'sms', status: 'unsubscribed', source: 'message:provider_opt_out' }], 'the SMS consent is off');
  const [second] = await enqueue([message(s, c, newId(), { channel: 'sms', event: { code: '2' } })]);
  await sendDueMessages(deps);
  t.match(await statusOf(second!), { status: 'not_sent', reason: 'unsubscribed' }, 'the next one is not sent');
  t.equal(provider.requests.length, 1, 'and never reached the provider');
});

t.test('the send job picks messages up by itself (pg-boss, woken in the enqueue transaction)', async (t) => {
  await registerJobs(deps.boss, deps, 'worker', [sendJob]);
  // Stopped (waiting for a job in flight) when the test ends: left running, it raced the later
  // tests' own sendDueMessages for their messages (CI saw a batch still 'queued' after a claim).
  t.teardown(() => deps.boss.offWork(sendJob.name));
  const s = await setup('sms');
  const c = (await s.call('POST', '/v1/customers', { externalId: 'sms', phone: '+33612345678' })).json().id;
  const [id] = await enqueue([message(s, c, newId(), { channel: 'sms', event: { code: '1234' } })]);
  const done = await eventually(async () => ((await statusOf(id!)).status === 'sent' ? true : undefined));
  t.ok(done);
  t.match((await s.call('GET', `/v1/messages/${id}`)).json(), { status: 'sent', rendered: { text: 'Code 1234' }, providerMessageId: `sandbox-${id}` });
});

t.test('test-send renders and sends through a chosen config; another channel is refused', async (t) => {
  const s = await setup();
  const res = await s.call('POST', `/v1/templates/${s.template}/test-send`, { channelConfigId: s.config, to: 'qa@x.io', sample: { customer: { first_name: 'QA' }, event: { total: 7 } } });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { messageId: null, outcome: 'sent', rendered: { subject: 'Hi QA', text: 'Total 7' } });
  // Sample data: nobody to record it for, so it goes out untracked: links as written, no pixel, no List-Unsubscribe.
  t.equal(res.json().rendered.html, '<html><body><p>Total 7</p><a href="https://shop.example/cart?a=1&amp;b=2">cart</a><a href="http://localhost:3000/t/u/preview">unsubscribe</a></body></html>'.replace('http://localhost:3000', herald.runtime.deps.config.publicUrl));

  // For a customer: recorded as their message (source "test"), tracked, and harmless to their consent and caps.
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'tested', email: 'tested@x.io', custom: { first_name: 'Tess' } })).json().id;
  const provider = useProvider(t, scripted([{ kind: 'sent', providerMessageId: 'test-1' }]));
  const recorded = await s.call('POST', `/v1/templates/${s.template}/test-send`, { channelConfigId: s.config, to: 'qa@x.io', customerId: customer });
  t.equal(recorded.statusCode, 200, recorded.body);
  const messageId = recorded.json().messageId as string;
  t.match(recorded.json(), { outcome: 'sent', providerMessageId: 'test-1', rendered: { subject: 'Hi Tess' } });
  t.equal(provider.requests[0]!.messageId, messageId, 'the provider is given the recorded message\'s id (webhooks find it)');
  const view = (await s.call('GET', `/v1/messages/${messageId}`)).json();
  t.match(view, { status: 'sent', source: { type: 'test', id: s.template }, toAddress: 'qa@x.io', providerMessageId: 'test-1', customerId: customer });
  const anonymous = caller(app, null);
  const html = view.rendered.html as string;
  const click = /href="https?:\/\/[^/]+(\/t\/c\/[^"]+)"/.exec(html)![1]!;
  const redirect = await anonymous('GET', click);
  t.equal(redirect.statusCode, 302, 'its tracked links work');
  t.equal(redirect.headers.location, 'https://shop.example/cart?a=1&b=2');
  const unsubscribe = unsubscribeLinkOf(view);
  const page = await anonymous('POST', unsubscribe);
  t.equal(page.statusCode, 200);
  t.match(page.body, /test send/, 'the unsubscribe page says it was a test');
  const after = (await s.call('GET', `/v1/messages/${messageId}`)).json();
  t.same(after.events.map((e: { kind: string }) => e.kind), ['clicked', 'unsubscribed'], 'its events are kept');
  t.same((await s.call('GET', `/v1/customers/${customer}`)).json().consents, [], 'the customer\'s consent is untouched');
  const timeline = (await s.call('GET', `/v1/customers/${customer}/timeline?kinds=message`)).json().data;
  t.match(timeline, [{ kind: 'message', id: messageId }], 'on the customer\'s timeline');
  // An event that comes back before the provider's answer finds the message (it is written before the call).
  let early: { stored: number } | undefined;
  useProvider(t, {
    async send(request) {
      early = await applyMessageEvents(sql, [{ workspaceId: s.workspaceId, messageId: request.messageId, kind: 'delivered', occurredAt: herald.clock.now(), providerEventId: `early-${request.messageId}` }]);
      return { kind: 'sent', providerMessageId: 'test-2' };
    },
  });
  const quick = await s.call('POST', `/v1/templates/${s.template}/test-send`, { channelConfigId: s.config, to: 'qa@x.io', customerId: customer });
  t.match(early, { stored: 1 }, 'the early event was stored against the test message');
  t.match((await s.call('GET', `/v1/messages/${quick.json().messageId}`)).json(), { status: 'delivered', providerMessageId: 'test-2' }, 'and the answer did not move its status back');
  useProvider(t, sandboxProvider);
  // A cap of one email a day is not used up by the test.
  await sql`update workspaces set settings = ${JSON.stringify({ frequencyCaps: { email: { perDay: 1 } } })}::jsonb where id = ${s.workspaceId}`;
  const [real] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(real!), { status: 'sent' }, 'the test send counts against no frequency cap');

  const sms = (await s.call('POST', '/v1/channel-configs', { name: 'sms', provider: 'sandbox', channel: 'sms' })).json().id;
  const wrong = await s.call('POST', `/v1/templates/${s.template}/test-send`, { channelConfigId: sms, to: '+33600000000' });
  t.equal(wrong.statusCode, 400);
  t.match(wrong.json().errors, [{ pointer: '/channelConfigId' }]);
});

t.test("another workspace's messages, action templates and timelines are 404s", async (t) => {
  const s = await setup();
  const c = (await s.call('POST', '/v1/customers', { externalId: 'iso', email: 'iso@x.io' })).json().id;
  const source = newId();
  const [id] = await enqueue([message(s, c, source)]);
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('GET', `/v1/messages/${id}`)).statusCode, 404);
  t.equal((await stranger.call('GET', `/v1/customers/${c}/timeline`)).statusCode, 404);
  t.same((await stranger.call('GET', `/v1/action-templates?sourceType=action&sourceId=${source}`)).json().data, []);
  const at = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${source}`)).json().data[0].id;
  t.equal((await stranger.call('GET', `/v1/action-templates/${at}/customers`)).statusCode, 404);
  t.equal((await s.call('GET', `/v1/customers/${c}/timeline?cursor=nope`)).statusCode, 400);
});

t.test('click redirects: links outside ASCII are sent as the URL parser writes them, never a 500; one-click unsubscribe takes multipart too; "view online" runs no script', async (t) => {
  const s = await setup();
  const html = '<p><a href="https://例え.jp/カート?q=靴">jp</a><a href="https://shop.example/ürün">tr</a><a href="https://x.example/a&#13;&#10;Set-Cookie: z=1">crlf</a><a href="{{ unsubscribe_url }}">u</a><a href="{{ view_url }}">v</a></p>';
  const template = (await s.call('POST', '/v1/templates', { name: 'intl', channel: 'email', content: { subject: 's', html } })).json().id as string;
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'intl', email: 'intl@x.io' })).json().id;
  const [id] = await enqueue([message(s, customer, newId(), { templateId: template })]);
  await sendDueMessages(deps);
  const view = (await s.call('GET', `/v1/messages/${id}`)).json();
  const clicks = [...(view.rendered.html as string).matchAll(/href="https?:\/\/[^/]+(\/t\/c\/[^"]+)"/g)].map((m) => m[1]!);
  const anonymous = caller(app, null);
  const expected = ['https://xn--r8jz45g.jp/%E3%82%AB%E3%83%BC%E3%83%88?q=%E9%9D%B4', 'https://shop.example/%C3%BCr%C3%BCn', 'https://x.example/aSet-Cookie:%20z=1'];
  for (const [i, location] of expected.entries()) {
    const res = await anonymous('GET', clicks[i]!);
    t.equal(res.statusCode, 302, `link ${i}: ${res.body}`);
    t.equal(res.headers.location, location, `link ${i}: punycode, percent-encoding, line breaks dropped`);
  }
  t.equal(view.events?.length ?? 0, 0);
  const clicked = (await s.call('GET', `/v1/messages/${id}`)).json().events.filter((e: { kind: string }) => e.kind === 'clicked');
  t.equal(clicked.length, 3, 'each click recorded with its redirect');

  const unsubscribe = unsubscribeLinkOf(view);
  const boundary = '----herald';
  const multipart = `--${boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--${boundary}--\r\n`;
  const oneClick = await anonymous('POST', unsubscribe, multipart, { 'content-type': `multipart/form-data; boundary=${boundary}` });
  t.equal(oneClick.statusCode, 200, `RFC 8058 says SHOULD be multipart/form-data: ${oneClick.body}`);
  t.match((await s.call('GET', `/v1/customers/${customer}`)).json().consents, [{ channel: 'email', status: 'unsubscribed' }]);

  const viewOnline = new URL(view.rendered.links.find((l: string) => l.includes('/t/v/'))).pathname;
  const page = await anonymous('GET', viewOnline);
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-security-policy'], /^sandbox/, 'the template\'s HTML on our origin runs no script');
});

t.test('a push click URL that is not http(s) (an app\'s deep link) goes to the device as written, untracked', async (t) => {
  const s = await setup('web_push');
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'deep' })).json().id;
  await s.call('POST', `/v1/customers/${customer}/push-subscriptions`, { kind: 'web_push', endpoint: 'https://push.example/sub/1', keys: { p256dh: 'BNc', auth: 'tBH' } });
  const deep = (await s.call('POST', '/v1/templates', { name: 'deep', channel: 'web_push', content: { title: 'Hi', body: 'Open the app', clickUrl: 'myapp://orders/42' } })).json().id as string;
  const requests = useProvider(t, scripted([{ kind: 'sent', providerMessageId: 'p' }])).requests;
  await enqueue([message(s, customer, newId(), { channel: 'web_push', templateId: deep })]);
  await sendDueMessages(deps);
  t.match(requests[0]?.payload, { kind: 'web_push', clickUrl: 'myapp://orders/42' }, 'as written');
  await enqueue([message(s, customer, newId(), { channel: 'web_push' })]);
  await sendDueMessages(deps);
  t.match(requests[1]?.payload, { kind: 'web_push', clickUrl: /\/t\/c\// }, 'an https click URL is tracked');
});

t.test('timeline cursors keep microseconds: entries whose times differ below the millisecond are neither skipped nor repeated (REST and GraphQL)', async (t) => {
  const { call } = await workspaceWithKey(app);
  const customer = (await call('POST', '/v1/customers', { externalId: 'micro' })).json().id as string;
  // Python's isoformat() writes microseconds: a and b tie, c is 56 µs before them, d an hour before.
  for (const [name, at] of [['a', '2026-06-01T09:00:00.123456Z'], ['b', '2026-06-01T09:00:00.123456Z'], ['c', '2026-06-01T09:00:00.123400Z'], ['d', '2026-06-01T08:00:00.000000Z']]) {
    t.equal((await call('POST', '/v1/events', { externalId: 'micro', type: name, occurredAt: at })).statusCode, 200);
  }
  const all = (await call('GET', `/v1/customers/${customer}/timeline?limit=10`)).json().data.map((e: { data: { type: string } }) => e.data.type);
  t.equal(all.length, 4);
  const paged: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { data: { data: { type: string } }[]; nextCursor: string | null } = (await call('GET', `/v1/customers/${customer}/timeline?limit=1${cursor ? `&cursor=${cursor}` : ''}`)).json();
    paged.push(...page.data.map((e) => e.data.type));
    cursor = page.nextCursor;
  } while (cursor && paged.length < 10);
  t.same(paged, all, 'page by page, the same entries in the same order as one page');

  const graphql = async (after: string | null) => (await call('POST', '/graphql', {
    query: 'query($after: String) { customer(externalId: "micro") { timeline(first: 1, after: $after) { edges { node { data } } pageInfo { hasNextPage endCursor } } } }', variables: { after },
  })).json().data.customer.timeline;
  const viaGraphql: string[] = [];
  let after: string | null = null;
  for (let i = 0; i < 10; i++) {
    const page = await graphql(after);
    viaGraphql.push(...page.edges.map((e: { node: { data: { type: string } } }) => e.node.data.type));
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  t.same(viaGraphql, all, 'GraphQL pages the same way');
});

t.test('workspace rules: quiet hours in the customer time zone (skip or defer, DST-safe), frequency caps, default sender', async (t) => {
  const s = await setup('sms');
  const root = caller(app, (await import('./helpers/app.ts')).ROOT_TOKEN);
  const setRules = async (settings: object) => {
    const res = await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings });
    t.equal(res.statusCode, 200);
    return res;
  };
  const paris = (await s.call('POST', '/v1/customers', { externalId: 'paris', phone: '+33611111111', timeZone: 'Europe/Paris' })).json().id;
  const sms = (extra: Partial<NewMessage> = {}) => message(s, paris, newId(), { channel: 'sms', event: { code: '1' }, ...extra });
  deps.providers.sandbox = sandboxProvider;

  // 30 March 2026, 20:30 UTC = 22:30 in Paris (summer time began on the 29th).
  herald.clock.set('2026-03-30T20:30:00.000Z');
  await setRules({ quietHours: { start: '22:00', end: '08:00', behavior: 'skip' } });
  const [skipped] = await enqueue([sms()]);
  await sendDueMessages(deps);
  t.match(await statusOf(skipped!), { status: 'not_sent', reason: 'quiet_hours' });

  await setRules({ quietHours: { start: '22:00', end: '08:00', behavior: 'defer' } });
  const [deferred] = await enqueue([sms()]);
  await sendDueMessages(deps);
  const [row] = await sql`select status, attempts, next_attempt_at from messages where id = ${deferred!}`;
  t.match(row, { status: 'queued', attempts: 0 }, 'deferred without spending an attempt');
  t.equal(row!.next_attempt_at.toISOString(), '2026-03-31T06:00:00.000Z', '08:00 in Paris, summer time');
  herald.clock.set('2026-03-31T05:59:00.000Z');
  t.equal(await sendDueMessages(deps), 0);
  herald.clock.set('2026-03-31T06:00:00.000Z');
  t.equal(await sendDueMessages(deps), 1);
  t.match(await statusOf(deferred!), { status: 'sent' }, 'sent when the window ended');
  const email = (await s.call('POST', '/v1/channel-configs', { name: 'e', provider: 'sandbox', channel: 'email' })).json().id;
  const emailTemplate = (await s.call('POST', '/v1/templates', { name: 'e', channel: 'email', content: { subject: 's', text: 't' } })).json().id;
  await s.call('PATCH', `/v1/customers/${paris}`, { email: 'p@x.io' });
  herald.clock.set('2026-03-30T21:00:00.000Z');
  const [night] = await enqueue([message(s, paris, newId(), { channel: 'email', channelConfigId: email, templateId: emailTemplate })]);
  await setRules({ quietHours: { start: '22:00', end: '08:00', behavior: 'skip' }, defaultSender: { email: 'hello@acme.example', name: 'Acme' } });
  await sendDueMessages(deps);
  t.match(await statusOf(night!), { status: 'sent' }, 'email is not bound by quiet hours unless listed');
  t.match((await s.call('GET', `/v1/messages/${night}`)).json().rendered, { from: { email: 'hello@acme.example', name: 'Acme' } }, 'the workspace default sender');

  herald.clock.set('2026-04-01T12:00:00.000Z');
  await setRules({ frequencyCaps: { sms: { perDay: 2, perWeek: 3 } } });
  const batch = await enqueue([sms(), sms(), sms()]);
  t.equal(await sendDueMessages(deps), 3, 'this loop claims the batch (no other worker does)');
  const statuses = await Promise.all(batch.map(statusOf));
  t.same(statuses.map((x) => x.status).sort(), ['not_sent', 'sent', 'sent'], 'two a day, even within one batch');
  t.equal(statuses.filter((x) => x.reason === 'frequency_capped').length, 1);
  herald.clock.advance(25 * 3600_000);
  const [tomorrow, beyondWeek] = await enqueue([sms(), sms()]);
  await sendDueMessages(deps);
  t.match(await statusOf(tomorrow!), { status: 'sent' }, 'a new day');
  t.match(await statusOf(beyondWeek!), { status: 'not_sent', reason: 'frequency_capped' }, 'but the week is full (deferred earlier one counted too)');

  const bad = await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings: { quietHours: { start: '25:00', end: '08:00', behavior: 'skip' } } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().errors, [{ pointer: '/settings/quietHours/start' }]);
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('PATCH', `/v1/workspaces/${s.workspaceId}`, { name: 'x' })).statusCode, 404);
  t.equal((await s.call('PATCH', `/v1/workspaces/${s.workspaceId}`, { name: 'Renamed' })).json().name, 'Renamed', 'a write key may change its own workspace');
});

t.test('frequency caps hold across concurrent claims: three batches at once for one customer send once under a cap of one a day', async (t) => {
  const s = await setup();
  const root = caller(app, (await import('./helpers/app.ts')).ROOT_TOKEN);
  t.equal((await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings: { frequencyCaps: { email: { perDay: 1 } } } })).statusCode, 200);
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'capped', email: 'capped@x.io' })).json().id;
  const calls = useProvider(t, scripted([{ kind: 'sent', providerMessageId: 'x' }]));
  const ids = await enqueue([message(s, customer, newId()), message(s, customer, newId()), message(s, customer, newId())]);
  // Three claims of one message each, each with its own counts, as three loops or three workers have.
  await Promise.all([sendDueMessages(deps, 1), sendDueMessages(deps, 1), sendDueMessages(deps, 1)]);
  t.equal(calls.requests.length, 1, 'one provider call: the others were not started');
  herald.clock.advance(CAP_HOLD_MS); // the refused ones wait that long before they are claimed again
  for (let i = 0; i < 5 && (await Promise.all(ids.map(statusOf))).some((x) => x.status === 'queued'); i++) await sendDueMessages(deps);
  const statuses = await Promise.all(ids.map(statusOf));
  t.same(statuses.map((x) => `${x.status}:${x.reason ?? ''}`).sort(), ['not_sent:frequency_capped', 'not_sent:frequency_capped', 'sent:'], 'the others are capped once their claims see the send');
  t.equal(calls.requests.length, 1);

  // An outcome that is unknown most likely reached the customer: it counts too.
  const other = (await s.call('POST', '/v1/customers', { externalId: 'capped-unknown', email: 'cu@x.io' })).json().id;
  useProvider(t, scripted([{ kind: 'unknown', reason: 'the connection broke after the request left' }]));
  const [first] = await enqueue([message(s, other, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(first!), { status: 'unknown' });
  const [second] = await enqueue([message(s, other, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(second!), { status: 'not_sent', reason: 'frequency_capped' }, 'the next one is capped');
});

t.test('a capped message whose cap is full with a send in flight elsewhere waits, and is not claimed over and over', async (t) => {
  const s = await setup();
  const root = caller(app, (await import('./helpers/app.ts')).ROOT_TOKEN);
  t.equal((await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings: { frequencyCaps: { email: { perDay: 1 } } } })).statusCode, 200);
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'in-flight', email: 'if@x.io' })).json().id;
  const [a, b] = await enqueue([message(s, customer, newId()), message(s, customer, newId())]);
  // a: marked 'sending' by a worker that then died (as the ledger's start leaves it).
  await sql`update messages set status = 'sending' where id = ${a!}`;
  await sql`update message_queue set sending = true, due_at = ${new Date(herald.clock.now().getTime() + SENDING_LEASE_MS)} where message_id = ${a!}`;
  const claimed = await drainDueMessages(deps, 1, 400);
  t.equal(claimed, 1, 'claimed once, then held (it was claimed 400 times in one drain)');
  t.match(await statusOf(b!), { status: 'queued', attempts: 0 }, 'not sent, not started');
  const [queued] = await sql<{ due_at: Date }[]>`select due_at from message_queue where message_id = ${b!}`;
  t.equal(queued!.due_at.getTime(), herald.clock.now().getTime() + CAP_HOLD_MS, 'due again after CAP_HOLD_MS');
  // The send in flight turns out sent: the held one is capped when it comes due.
  await sql`update messages set status = 'sent', sent_at = ${herald.clock.now()} where id = ${a!}`;
  await sql`delete from message_queue where message_id = ${a!}`;
  herald.clock.advance(CAP_HOLD_MS);
  await sendDueMessages(deps);
  t.match(await statusOf(b!), { status: 'not_sent', reason: 'frequency_capped' });
});

t.test('a queue row whose message is no longer queued, or gone, is dropped by the claim, not sent', async (t) => {
  const s = await setup();
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'stale', email: 'stale@x.io' })).json().id;
  const provider = scripted([{ kind: 'sent', providerMessageId: 'p-stale' }]);
  useProvider(t, provider);
  const [asideId, liveId] = await enqueue([message(s, customer, newId()), message(s, customer, newId())]);
  // Set aside by hand (its status changed without a word to the queue), and a row with no message.
  await sql`update messages set status = 'not_sent', reason = 'set aside' where id = ${asideId!}`;
  const orphan = newId();
  await sql`insert into message_queue (workspace_id, message_id, due_at) values (${s.workspaceId}, ${orphan}, ${herald.clock.now()})`;
  t.equal(await sendDueMessages(deps), 1, 'only the queued message is claimed');
  t.equal(provider.requests.length, 1);
  t.equal(provider.requests[0]!.messageId, liveId, 'and sent');
  t.match(await statusOf(asideId!), { status: 'not_sent', reason: 'set aside', attempts: 0 }, 'the one set aside stays as it was');
  t.equal((await sql`select 1 from message_queue where message_id in ${sql([asideId!, orphan, liveId!])}`).length, 0, 'the stale rows are gone from the queue');
});

t.test('a call that outlives its mark: the sweep calls it unknown, and what the worker learned still wins', async (t) => {
  const s = await setup();
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'slowcall', email: 'slow@x.io' })).json().id;
  t.teardown(() => { deps.providers.sandbox = sandboxProvider; });
  const late = () => new Date(herald.clock.now().getTime() + SENDING_LEASE_MS + 60_000);
  // The provider answers after the mark's lease has passed and another process swept it.
  const sweptThen = (outcome: SendOutcome): Provider => ({
    async send() {
      t.equal(await recoverAbandoned(sql, late()), 1, 'swept while the call was out');
      return outcome;
    },
  });
  deps.providers.sandbox = sweptThen({ kind: 'retry', reason: '503 from the provider' });
  const [retried] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(retried!), { status: 'queued', reason: '503 from the provider', attempts: 1 }, 'a retry: queued again');
  t.equal((await sql`select 1 from message_queue where message_id = ${retried!} and not sending`).length, 1, 'with its queue row put back');
  deps.providers.sandbox = sandboxProvider;
  herald.clock.advance(20 * 60_000);
  await sendDueMessages(deps);
  t.match(await statusOf(retried!), { status: 'sent', attempts: 2 }, 'and sent at its next attempt');

  deps.providers.sandbox = sweptThen({ kind: 'sent', providerMessageId: 'p-late' });
  const [sent] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(sent!), { status: 'sent' }, 'a success after the sweep: sent, not unknown');
  t.equal((await sql`select 1 from message_queue where message_id = ${sent!}`).length, 0, 'and out of the queue');
});

t.test('frequency caps count by when a message was sent, per capped channel only', async (t) => {
  const s = await setup();
  deps.providers.sandbox = sandboxProvider;
  const root = caller(app, (await import('./helpers/app.ts')).ROOT_TOKEN);
  t.equal((await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings: { frequencyCaps: { email: { perWeek: 1 } } } })).statusCode, 200);
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'capped', email: 'capped@x.io' })).json().id;
  const [first] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(first!), { status: 'sent' });
  // Created ten days ago and sent two days ago (queued through an outage, say): it counts.
  await sql`update messages set created_at = ${new Date(herald.clock.now().getTime() - 10 * 86_400_000)}, sent_at = ${new Date(herald.clock.now().getTime() - 2 * 86_400_000)} where id = ${first!}`;
  const [second] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(second!), { status: 'not_sent', reason: 'frequency_capped' }, 'sent within the week, created before it');
  // Sent more than a week ago: it does not.
  await sql`update messages set sent_at = ${new Date(herald.clock.now().getTime() - 8 * 86_400_000)} where id = ${first!}`;
  const [third] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(third!), { status: 'sent' }, 'a week later');
  // The cap is on email: an sms config's messages are neither capped nor counted.
  t.equal((await root('PATCH', `/v1/workspaces/${s.workspaceId}`, { settings: { frequencyCaps: { sms: { perWeek: 1 } } } })).statusCode, 200);
  const [fourth] = await enqueue([message(s, customer, newId())]);
  await sendDueMessages(deps);
  t.match(await statusOf(fourth!), { status: 'sent' }, 'email uncapped once the cap names only sms');
});

t.test('a render over its time limit is tried once more later (a starved machine), then not sent (a template that explodes)', async (t) => {
  const s = await setup();
  deps.providers.sandbox = sandboxProvider;
  const slow = (await s.call('POST', '/v1/templates', { name: 'slow', channel: 'email', content: { subject: 'Hi', html: '<p>{% for i in (1..5000) %}{% for j in (1..5000) %}x{% endfor %}{% endfor %}</p>' } })).json().id as string;
  const customer = (await s.call('POST', '/v1/customers', { externalId: 'slow', email: 'slow@x.io' })).json().id;
  const [id] = await enqueue([message(s, customer, newId(), { templateId: slow })]);
  await sendDueMessages(deps);
  const [first] = await sql`select status, reason, attempts, next_attempt_at from messages where id = ${id!}`;
  t.match(first, { status: 'queued', attempts: 0, reason: /^render_time_limit: html: template render limit exceeded/ }, 'deferred, no attempt spent');
  t.equal(first!.next_attempt_at.getTime(), herald.clock.now().getTime() + RENDER_RETRY_MS);
  await sendDueMessages(deps);
  t.equal((await statusOf(id!)).status, 'queued', 'not before its time');
  herald.clock.advance(RENDER_RETRY_MS);
  await sendDueMessages(deps);
  t.match(await statusOf(id!), { status: 'not_sent', reason: /^render_error: html: template render limit exceeded/ }, 'the second time is final');
});
