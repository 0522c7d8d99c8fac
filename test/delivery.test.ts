// End to end through real providers and local mock servers speaking their protocols: the
// outbox, the send worker, the provider call, the provider's webhook back, the customer's
// timeline; and the SSRF guard on the real path.
import t from 'tap';
import { enqueueMessages, type NewMessage } from '../src/modules/messages/outbox.ts';
import { sendDueMessages } from '../src/modules/messages/send.worker.ts';
import { newId } from '../src/ids.ts';
import { eventWebhookHeaders, generateEventWebhookKeys, sendgridEvent, startSendGridMock, startTwilioMock, startWebhookReceiver, twilioSignature } from './mocks/index.ts';
import { caller, ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, runtime } = herald;
const { deps } = runtime;
const { sql } = deps.database;
const root = caller(app, ROOT_TOKEN);

async function workspace(allowPrivate: boolean) {
  const ws = await workspaceWithKey(app);
  await root('PATCH', `/v1/workspaces/${ws.workspaceId}`, { settings: { allowPrivateNetworkTargets: allowPrivate } });
  return ws;
}
const enqueue = (rows: NewMessage[]) => sql.begin((tx) => enqueueMessages(tx, deps.boss, rows, herald.clock.now()));
const base = (ws: { workspaceId: string }, customerId: string, channel: string, channelConfigId: string, templateId: string): NewMessage => ({
  workspaceId: ws.workspaceId, customerId, channel, channelConfigId, templateId, templateVersion: 1, sourceType: 'action', sourceId: newId(), event: { type: 'order.placed', total: 12 },
});

t.test('email through SendGrid and back through its Event Webhook', async (t) => {
  const mock = await startSendGridMock({ apiKey: 'SG.test-key' });
  t.teardown(() => mock.close());
  const keys = generateEventWebhookKeys();
  const ws = await workspace(true);
  const config = (await ws.call('POST', '/v1/channel-configs', {
    name: 'SendGrid', provider: 'sendgrid', settings: { fromEmail: 'shop@acme.example', fromName: 'Acme', apiBaseUrl: mock.url, eventWebhookPublicKey: keys.publicKey }, secrets: { apiKey: 'SG.test-key' },
  })).json().id;
  const template = (await ws.call('POST', '/v1/templates', { name: 'Receipt', channel: 'email', content: { subject: 'Order total {{ event.total }}', html: '<html><body><a href="https://shop.example/o">order</a></body></html>', text: 'Thanks, "Zoë" \\ 😀' } })).json().id;
  const customer = (await ws.call('POST', '/v1/customers', { externalId: 'e2e', email: 'e2e@example.com' })).json().id;
  const [id] = await enqueue([base(ws, customer, 'email', config, template)]);
  await sendDueMessages(deps);

  t.equal(mock.messages.length, 1, 'the mock got the mail once');
  const mail = mock.messages[0]!;
  t.match(mail.body, { from: { email: 'shop@acme.example', name: 'Acme' }, subject: 'Order total 12', personalizations: [{ to: [{ email: 'e2e@example.com' }] }], custom_args: { herald_message_id: id, herald_workspace_id: ws.workspaceId } });
  t.match(JSON.stringify(mail.body), /List-Unsubscribe-Post/);
  const message = (await ws.call('GET', `/v1/messages/${id}`)).json();
  t.match(message, { status: 'sent', providerMessageId: mail.id });
  // The content stored as sent is what the provider got (both are made from one encoding of it).
  t.same(mail.body.content, [{ type: 'text/plain', value: message.rendered.text }, { type: 'text/html', value: message.rendered.html }], 'stored as sent');
  t.match(message.rendered.html, /<a href="http:\/\/[^"]+\/t\/c\/[\w-]+">order<\/a>/);
  t.equal(message.rendered.text, 'Thanks, "Zoë" \\ 😀');

  const batch = JSON.stringify([sendgridEvent('delivered', mail.id, { customArgs: { herald_message_id: id! } }), sendgridEvent('open', mail.id, { customArgs: { herald_message_id: id! } })]);
  const res = await app.inject({ method: 'POST', url: `/webhooks/sendgrid/${config}`, payload: batch, headers: { 'content-type': 'application/json', ...eventWebhookHeaders(keys.privateKey, batch, String(Math.floor(herald.clock.now().getTime() / 1000))) } });
  t.match(res.json(), { stored: 2 });
  const timeline = (await ws.call('GET', `/v1/customers/${customer}/timeline?kinds=action`)).json().data.map((e: { data: { kind: string } }) => e.data.kind);
  t.same(timeline.sort(), ['delivered', 'opened', 'sent']);

  mock.setFaults({ status: 500, times: 1 });
  const [retried] = await enqueue([base(ws, customer, 'email', config, template)]);
  await sendDueMessages(deps);
  t.match((await sql`select status, attempts from messages where id = ${retried!}`)[0], { status: 'queued', attempts: 1 }, 'a 5xx is retried');
  herald.clock.advance(60_000);
  await sendDueMessages(deps);
  t.match((await sql`select status from messages where id = ${retried!}`)[0], { status: 'sent' });
  t.equal(mock.messages.length, 2, 'and sent once in the end');

  mock.setFaults({ reset: true, times: 1 });
  const [reset] = await enqueue([base(ws, customer, 'email', config, template)]);
  await sendDueMessages(deps);
  herald.clock.advance(60 * 60_000);
  await sendDueMessages(deps);
  t.match((await sql`select status from messages where id = ${reset!}`)[0], { status: 'unknown' }, 'a reset after the request left is unknown, never resent');
});

t.test('SMS through Twilio, with its signed delivery receipt', async (t) => {
  const accountSid = `AC${'2'.repeat(32)}`;
  const mock = await startTwilioMock({ accountSid, authToken: 'tw-secret' });
  t.teardown(() => mock.close());
  const ws = await workspace(true);
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'SMS', provider: 'twilio', settings: { accountSid, from: '+15005550006', apiBaseUrl: mock.url }, secrets: { authToken: 'tw-secret' } })).json().id;
  const template = (await ws.call('POST', '/v1/templates', { name: 'Code', channel: 'sms', content: { text: 'Total {{ event.total }}' } })).json().id;
  const customer = (await ws.call('POST', '/v1/customers', { externalId: 'sms', phone: '+33612345678' })).json().id;
  const [id] = await enqueue([base(ws, customer, 'sms', config, template)]);
  await sendDueMessages(deps);
  t.equal(mock.messages.length, 1);
  const sent = mock.messages[0]!;
  t.match(sent.params, { To: '+33612345678', From: '+15005550006', Body: 'Total 12', StatusCallback: new RegExp(`/webhooks/sms/${config}\\?message=${id}$`) }, 'the status callback names the message');
  const sid = sent.message.sid as string;
  t.equal((await ws.call('GET', `/v1/messages/${id}`)).json().providerMessageId, sid);
  // Twilio calls the StatusCallback URL it was given, as it was given.
  const callback = new URL(String(sent.params.StatusCallback));
  const path = `${callback.pathname}${callback.search}`;
  const params = new URLSearchParams({ MessageSid: sid, MessageStatus: 'delivered', AccountSid: accountSid });
  const receipt = await app.inject({ method: 'POST', url: path, payload: params.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature('tw-secret', `${deps.config.publicUrl}${path}`, params) } });
  t.match(receipt.json(), { stored: 1 });
  t.equal((await ws.call('GET', `/v1/messages/${id}`)).json().status, 'delivered');
});

t.test('the Web API channel: Standard Webhooks signature, and the SSRF guard on the real path', async (t) => {
  const ws = await workspace(true);
  const created = (await ws.call('POST', '/v1/channel-configs', { name: 'CRM', provider: 'webhook' })).json();
  const receiver = await startWebhookReceiver({ secret: created.generatedSecrets.signingSecret });
  t.teardown(() => receiver.close());
  const template = (await ws.call('POST', '/v1/templates', { name: 'Hook', channel: 'webhook', content: { method: 'POST', url: `${receiver.url}/crm/{{ customer.external_id }}`, headers: { 'X-Source': 'herald' }, body: '{"total": {{ event.total }}}' } })).json().id;
  const customer = (await ws.call('POST', '/v1/customers', { externalId: 'hooked' })).json().id;
  const [id] = await enqueue([base(ws, customer, 'webhook', created.id, template)]);
  await sendDueMessages(deps);
  const [request] = await receiver.waitFor(1);
  t.match(request, { method: 'POST', path: '/crm/hooked', verified: true, json: { total: 12 } }, 'signed the Standard Webhooks way');
  t.equal(request!.headers['x-source'], 'herald');
  t.equal((await ws.call('GET', `/v1/messages/${id}`)).json().status, 'sent');

  const strict = await workspace(false);
  const config = (await strict.call('POST', '/v1/channel-configs', { name: 'CRM', provider: 'webhook' })).json().id;
  const customer2 = (await strict.call('POST', '/v1/customers', { externalId: 'x' })).json().id;
  for (const target of [receiver.url, 'http://169.254.169.254/latest/meta-data', 'http://[::1]:9/x', 'http://localhost:9/x']) {
    const tpl = (await strict.call('POST', '/v1/templates', { name: 'h', channel: 'webhook', content: { method: 'POST', url: target } })).json().id;
    const [mid] = await enqueue([base(strict, customer2, 'webhook', config, tpl)]);
    await sendDueMessages(deps);
    t.match((await strict.call('GET', `/v1/messages/${mid}`)).json(), { status: 'not_sent', reason: /^provider_rejected: / }, `${target} is refused`);
  }
  t.equal(receiver.requests.length, 1, 'nothing reached the receiver from the strict workspace');
});
