// Provider webhooks: signatures checked before parsing, events stored once, statuses and
// consents updated, unknown messages counted and ignored.
import { createRequire } from 'node:module';
import t from 'tap';
import { enqueueMessages } from '../src/modules/messages/outbox.ts';
import { sendDueMessages } from '../src/modules/messages/send.worker.ts';
import type { Provider } from '../src/providers/types.ts';
import { newId } from '../src/ids.ts';
import { applyMessageEvents } from '../src/modules/messages/message-events.ts';
import { verifySendgridSignature } from '../src/modules/webhooks/webhooks.service.ts';
import { eventWebhookHeaders, generateEventWebhookKeys, sendgridEvent, signEventWebhook, twilioSignature } from './mocks/index.ts';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, runtime } = herald;
const { deps } = runtime;
const { sql } = deps.database;
const keys = generateEventWebhookKeys();
const fixed = (id: string): Provider => ({ send: async () => ({ kind: 'sent', providerMessageId: id }) });

async function sentEmail(externalId: string) {
  const ws = await workspaceWithKey(app);
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'sg', provider: 'sendgrid', settings: { fromEmail: 'shop@acme.example', eventWebhookPublicKey: keys.publicKey }, secrets: { apiKey: 'SG.x' } })).json().id as string;
  const template = (await ws.call('POST', '/v1/templates', { name: 't', channel: 'email', content: { subject: 's', html: '<p>hi</p>' } })).json().id as string;
  const customer = (await ws.call('POST', '/v1/customers', { externalId, email: `${externalId}@x.io` })).json().id as string;
  const source = newId();
  const [id] = await sql.begin((tx) => enqueueMessages(tx, deps.boss, [{ workspaceId: ws.workspaceId, customerId: customer, channel: 'email', channelConfigId: config, templateId: template, templateVersion: 1, sourceType: 'action', sourceId: source }], herald.clock.now()));
  const previous = deps.providers.sendgrid;
  deps.providers.sendgrid = fixed(`sg-${externalId}`);
  await sendDueMessages(deps);
  deps.providers.sendgrid = previous!;
  return { ...ws, config, customer, messageId: id!, source };
}

const post = (configId: string, body: string, headers: Record<string, string>) =>
  app.inject({ method: 'POST', url: `/webhooks/sendgrid/${configId}`, payload: body, headers: { 'content-type': 'application/json', ...headers } });
const nowSeconds = () => String(Math.floor(herald.clock.now().getTime() / 1000));
const args = (s: { messageId: string; workspaceId: string }) => ({ customArgs: { herald_message_id: s.messageId, herald_workspace_id: s.workspaceId } });
const eventsOf = async (messageId: string) => (await sql`select count(*)::int as n from message_events where message_id = ${messageId}`)[0]!.n as number;

t.test('a signed SendGrid batch: stored once, statuses forward, action templates, unknowns counted', async (t) => {
  const s = await sentEmail('sg1');
  const batch = JSON.stringify([
    sendgridEvent('processed', 'sg-sg1', args(s)),
    sendgridEvent('delivered', 'sg-sg1', args(s)),
    sendgridEvent('open', 'sg-sg1', { ...args(s), useragent: 'Mail/1.0', ip: '203.0.113.9' }),
    sendgridEvent('click', 'sg-sg1', { ...args(s), url: 'https://shop.example/x' }),
    sendgridEvent('delivered', 'sg-other', { customArgs: { herald_message_id: newId() } }),
    sendgridEvent('delivered', 'sg-none'),
  ]);
  const res = await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, nowSeconds()));
  t.equal(res.statusCode, 200);
  t.same(res.json(), { stored: 4, duplicates: 0, unknownMessages: 1, ignored: 1 });
  const message = (await s.call('GET', `/v1/messages/${s.messageId}`)).json();
  t.equal(message.status, 'clicked');
  t.match(message.events.find((e: { kind: string }) => e.kind === 'opened').data, { userAgent: 'Mail/1.0', ip: '203.0.113.9' });
  const ats = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${s.source}`)).json().data;
  for (const kind of ['sent', 'delivered', 'opened', 'clicked']) t.match(ats.find((a: { kind: string }) => a.kind === kind), { customers: 1 }, kind);

  const replay = await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, nowSeconds()));
  t.same(replay.json(), { stored: 0, duplicates: 4, unknownMessages: 1, ignored: 1 }, 'a replayed batch is stored once');
  t.equal(await eventsOf(s.messageId), 4);
});

t.test('a deleted config still takes the events of the mail it sent: a bounce after the delete takes the address off the list', async (t) => {
  const s = await sentEmail('gone-config');
  t.equal((await s.call('DELETE', `/v1/channel-configs/${s.config}`)).statusCode, 204);
  const batch = JSON.stringify([sendgridEvent('bounce', 'sg-gone-config', { ...args(s), type: 'bounce', reason: '550 no such user' })]);
  const res = await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, nowSeconds()));
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { stored: 1 });
  t.equal((await s.call('GET', `/v1/messages/${s.messageId}`)).json().status, 'bounced');
  t.match((await s.call('GET', `/v1/customers/${s.customer}`)).json().consents, [{ channel: 'email', status: 'unsubscribed' }]);
  const forged = await post(s.config, batch, eventWebhookHeaders(generateEventWebhookKeys().privateKey, batch, nowSeconds()));
  t.equal(forged.statusCode, 401, 'still only with its signature');
});

t.test('forged, tampered, stale and unsigned posts are 401 and store nothing', async (t) => {
  const s = await sentEmail('sg2');
  const batch = JSON.stringify([sendgridEvent('delivered', 'sg-sg2', args(s))]);
  const headers = eventWebhookHeaders(keys.privateKey, batch, nowSeconds());
  const tampered = batch.replace('delivered', 'delivereD');
  t.equal((await post(s.config, tampered, headers)).statusCode, 401, 'one byte changed');
  const other = generateEventWebhookKeys();
  t.equal((await post(s.config, batch, eventWebhookHeaders(other.privateKey, batch, nowSeconds()))).statusCode, 401, 'signed by another key');
  const old = String(Math.floor(herald.clock.now().getTime() / 1000) - 3600);
  t.equal((await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, old))).statusCode, 401, 'a stale timestamp');
  const unsigned = await post(s.config, batch, {});
  t.equal(unsigned.statusCode, 401);
  t.equal(unsigned.headers['content-type'], 'application/problem+json');
  t.equal((await post(s.config, 'not json', eventWebhookHeaders(keys.privateKey, 'not json', nowSeconds()))).statusCode, 400, 'signed garbage is a 400');
  t.equal(await eventsOf(s.messageId), 0, 'nothing stored');
  t.equal((await post(newId(), batch, headers)).statusCode, 404, 'an unknown config');
  const sandbox = (await s.call('POST', '/v1/channel-configs', { name: 'x', provider: 'sandbox', channel: 'email' })).json().id;
  t.equal((await post(sandbox, batch, headers)).statusCode, 404, 'a config of another provider');
  t.equal((await post('nope', batch, headers)).statusCode, 400);
});

t.test('Herald\'s signature check agrees with @sendgrid/eventwebhook', async (t) => {
  const { EventWebhook } = createRequire(import.meta.url)('@sendgrid/eventwebhook');
  const library = new EventWebhook();
  const pem = `-----BEGIN PUBLIC KEY-----\n${keys.publicKey}\n-----END PUBLIC KEY-----`;
  const other = generateEventWebhookKeys();
  const body = JSON.stringify([sendgridEvent('delivered', 'x', { reason: 'ünïcode 🎉 "quoted"' })]);
  const ts = nowSeconds();
  const cases: [string, string, string, string][] = [
    ['as signed', body, signEventWebhook(keys.privateKey, body, ts), ts],
    ['another timestamp', body, signEventWebhook(keys.privateKey, body, ts), String(Number(ts) + 1)],
    ['one byte changed', body.replace('delivered', 'delivereD'), signEventWebhook(keys.privateKey, body, ts), ts],
    ['another key', body, signEventWebhook(other.privateKey, body, ts), ts],
    ['not base64', body, '!!!', ts],
  ];
  for (const [what, payload, signature, timestamp] of cases) {
    const ours = verifySendgridSignature(keys.publicKey, Buffer.from(payload), signature, timestamp);
    let theirs = false;
    try {
      theirs = library.verifySignature(library.convertPublicKeyToECDSA(pem), payload, signature, timestamp);
    } catch {
      theirs = false;
    }
    t.equal(ours, theirs, what);
    t.equal(verifySendgridSignature(pem, Buffer.from(payload), signature, timestamp), ours, `${what} (PEM key)`);
  }
  t.ok(verifySendgridSignature(keys.publicKey, Buffer.from(body), signEventWebhook(keys.privateKey, body, ts), ts));
  t.notOk(verifySendgridSignature('not a key', Buffer.from(body), signEventWebhook(keys.privateKey, body, ts), ts), 'a broken key verifies nothing');
});

t.test('across batches: statuses never go backwards, repeated events kept but assigned once, replays within a batch stored once', async (t) => {
  const s = await sentEmail('order');
  const send = async (events: Record<string, unknown>[]) => {
    const body = JSON.stringify(events);
    const res = await post(s.config, body, eventWebhookHeaders(keys.privateKey, body, nowSeconds()));
    t.equal(res.statusCode, 200);
    return res.json();
  };
  const status = async () => (await s.call('GET', `/v1/messages/${s.messageId}`)).json().status;
  const open = sendgridEvent('open', 'x', args(s));
  t.same(await send([sendgridEvent('click', 'x', { ...args(s), url: 'https://shop.example/a' }), open, open]), { stored: 2, duplicates: 1, unknownMessages: 0, ignored: 0 }, 'the same event twice in a batch is stored once');
  t.equal(await status(), 'clicked');
  t.same(await send([sendgridEvent('delivered', 'x', args(s)), sendgridEvent('open', 'x', args(s)), sendgridEvent('open', 'x', args(s))]), { stored: 3, duplicates: 0, unknownMessages: 0, ignored: 0 });
  t.equal(await status(), 'clicked', 'a late delivery or open does not move the status back');
  t.equal(await eventsOf(s.messageId), 5, 'repeated opens are kept as events');
  const actions = await sql<{ kind: string; n: number; touchpoint: Record<string, unknown> }[]>`
    select at.kind, count(*)::int as n, min(ca.touchpoint::text)::jsonb as touchpoint from customer_actions ca join action_templates at on at.workspace_id = ca.workspace_id and at.id = ca.action_template_id
    where ca.workspace_id = ${s.workspaceId} and ca.message_id = ${s.messageId} group by 1 order by 1`;
  t.same(actions.map((a) => [a.kind, a.n]), [['clicked', 1], ['delivered', 1], ['opened', 1], ['sent', 1]], 'each action template assigned once');
  t.match(actions.find((a) => a.kind === 'clicked')!.touchpoint, { channel: 'email', url: 'https://shop.example/a', provider: 'sendgrid' });
  t.same(await send([sendgridEvent('unsubscribe', 'x', args(s)), sendgridEvent('spamreport', 'x', args(s))]), { stored: 2, duplicates: 0, unknownMessages: 0, ignored: 0 });
  const final = await status();
  t.match(final, /^(unsubscribed|complained)$/, 'the highest status of the batch (the two rank the same)');
  t.same(await send([sendgridEvent('unsubscribe', 'x', args(s)), sendgridEvent('click', 'x', args(s))]), { stored: 2, duplicates: 0, unknownMessages: 0, ignored: 0 });
  t.equal(await status(), final, 'a later click does not move it back');
  const [history] = await sql<{ n: number }[]>`select count(*)::int as n from consent_changes where workspace_id = ${s.workspaceId} and customer_id = ${s.customer}`;
  t.equal(history!.n, 1, 'the address went off the list once, with one history row');
});

t.test('a config id that only looks like a UUID (36 hyphens, 36 hex digits) is a 400, never a 500', async (t) => {
  for (const id of ['-'.repeat(36), 'a'.repeat(36)]) {
    for (const url of [`/webhooks/sendgrid/${id}`, `/webhooks/sms/${id}`]) {
      const res = await app.inject({ method: 'POST', url, payload: '[]', headers: { 'content-type': 'application/json' } });
      t.equal(res.statusCode, 400, `${url}: ${res.body}`);
    }
  }
});

t.test('events with malformed message ids or timestamps are ignored or dated now, never a 500', async (t) => {
  const s = await sentEmail('odd');
  const body = JSON.stringify([
    sendgridEvent('delivered', 'x', { customArgs: { herald_message_id: '-'.repeat(36) } }),
    sendgridEvent('delivered', 'x', { customArgs: { herald_message_id: 'zz' } }),
    sendgridEvent('open', 'x', { ...args(s), timestamp: 1e20 }),
    sendgridEvent('click', 'x', { ...args(s), timestamp: 'yesterday' as unknown as number }),
  ]);
  const res = await post(s.config, body, eventWebhookHeaders(keys.privateKey, body, nowSeconds()));
  t.equal(res.statusCode, 200);
  t.same(res.json(), { stored: 2, duplicates: 0, unknownMessages: 0, ignored: 2 });
  // Ids go unquoted into array literals: one that would shift the columns is refused outright.
  for (const messageId of [`${s.messageId},${newId()}`, '{}', s.messageId.replace(/.$/, '"')]) {
    await t.rejects(applyMessageEvents(sql, [{ workspaceId: s.workspaceId, messageId, kind: 'delivered', occurredAt: herald.clock.now() }]), TypeError, messageId);
  }
  await t.rejects(applyMessageEvents(sql, [{ workspaceId: s.workspaceId, messageId: s.messageId, kind: 'delivered,opened' as 'delivered', occurredAt: herald.clock.now() }]), TypeError);
});

t.test('one call with events of two workspaces: each stored against its own messages, times to the millisecond', async (t) => {
  const a = await sentEmail('mixed-a');
  const b = await sentEmail('mixed-b');
  const at = new Date('2026-03-04T05:06:07.891Z');
  const result = await applyMessageEvents(sql, [
    { workspaceId: a.workspaceId, messageId: a.messageId, kind: 'opened', occurredAt: at, providerEventId: 'mixed:1' },
    { workspaceId: b.workspaceId, messageId: b.messageId, kind: 'clicked', occurredAt: at, providerEventId: 'mixed:2', data: { url: 'https://x.example/"q"' } },
    { workspaceId: b.workspaceId, messageId: a.messageId, kind: 'clicked', occurredAt: at, providerEventId: 'mixed:3' },
    { workspaceId: a.workspaceId, messageId: a.messageId, kind: 'unsubscribed', occurredAt: at, providerEventId: 'mixed:4' },
  ]);
  t.same(result, { stored: 3, duplicates: 0, unknownMessages: 1 }, "a message of another workspace is unknown");
  const rows = await sql<{ workspace_id: string; kind: string; occurred_at: Date; data: Record<string, unknown> }[]>`
    select workspace_id, kind, occurred_at, data from message_events where provider_event_id like 'mixed:%' order by provider_event_id`;
  t.same(rows.map((r) => [r.workspace_id, r.kind, r.occurred_at.toISOString()]), [[a.workspaceId, 'opened', at.toISOString()], [b.workspaceId, 'clicked', at.toISOString()], [a.workspaceId, 'unsubscribed', at.toISOString()]]);
  t.same(rows[1]!.data, { url: 'https://x.example/"q"' });
  t.equal((await a.call('GET', `/v1/messages/${a.messageId}`)).json().status, 'unsubscribed');
  t.equal((await b.call('GET', `/v1/messages/${b.messageId}`)).json().status, 'clicked');
  t.same((await a.call('GET', `/v1/customers/${a.customer}`)).json().consents.map((c: { status: string }) => c.status), ['unsubscribed']);
  t.same((await b.call('GET', `/v1/customers/${b.customer}`)).json().consents, []);
});

t.test('spam reports, hard bounces and unsubscribes take the address off the list; soft bounces do not', async (t) => {
  for (const [kind, extra, expected] of [
    ['spamreport', {}, 'unsubscribed'],
    ['bounce', { type: 'bounce', reason: '550 no such user' }, 'unsubscribed'],
    ['unsubscribe', {}, 'unsubscribed'],
    ['bounce', { type: 'blocked', reason: 'try later' }, null],
  ] as const) {
    const s = await sentEmail(`c-${kind}-${'type' in extra ? extra.type : 'x'}`);
    const batch = JSON.stringify([sendgridEvent(kind, 'x', { ...args(s), ...extra })]);
    t.equal((await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, nowSeconds()))).statusCode, 200);
    const consents = (await s.call('GET', `/v1/customers/${s.customer}`)).json().consents;
    t.same(consents.map((c: { status: string }) => c.status), expected ? [expected] : [], `${kind} ${JSON.stringify(extra)}`);
    if (expected) t.match(consents[0], { source: /^message:/ });
  }
});

t.test('every SendGrid event type: its event, status, action template and consent', async (t) => {
  const cases = [
    // [SendGrid type, extra fields, Herald's event kind, the message's status after, the action template, consent after]
    ['processed', {}, 'processed', 'sent', null, []],
    ['deferred', {}, 'deferred', 'sent', null, []],
    ['delivered', {}, 'delivered', 'delivered', 'delivered', []],
    ['open', {}, 'opened', 'opened', 'opened', []],
    ['click', {}, 'clicked', 'clicked', 'clicked', []],
    ['bounce', { type: 'bounce' }, 'bounced', 'bounced', 'bounced', ['unsubscribed']],
    ['bounce', { type: 'blocked', reason: 'try later' }, 'bounced', 'bounced', 'bounced', []],
    ['dropped', {}, 'failed', 'failed', 'failed', []],
    ['spamreport', {}, 'complained', 'complained', 'complained', ['unsubscribed']],
    ['unsubscribe', {}, 'unsubscribed', 'unsubscribed', 'unsubscribed', ['unsubscribed']],
    ['group_unsubscribe', {}, 'unsubscribed', 'unsubscribed', 'unsubscribed', ['unsubscribed']],
    ['group_resubscribe', {}, 'resubscribed', 'sent', null, []],
  ] as const;
  for (const [type, extra, kind, status, action, consent] of cases) {
    const label = `${type}${'type' in extra ? ` (${extra.type})` : ''}`;
    const s = await sentEmail(`all-${type}-${'type' in extra ? extra.type : 'x'}`);
    const batch = JSON.stringify([sendgridEvent(type, `sg-all-${type}`, { ...args(s), ...extra })]);
    const res = await post(s.config, batch, eventWebhookHeaders(keys.privateKey, batch, nowSeconds()));
    t.same(res.json(), { stored: 1, duplicates: 0, unknownMessages: 0, ignored: 0 }, `${label}: stored`);
    const message = (await s.call('GET', `/v1/messages/${s.messageId}`)).json();
    t.same(message.events.map((e: { kind: string }) => e.kind), [kind], `${label}: recorded as ${kind}`);
    t.equal(message.status, status, `${label}: status ${status}`);
    const ats = (await s.call('GET', `/v1/action-templates?sourceType=action&sourceId=${s.source}`)).json().data as { kind: string; customers: number }[];
    t.same(ats.filter((a) => a.customers > 0).map((a) => a.kind).sort(), ['sent', ...(action ? [action] : [])].sort(), `${label}: action templates`);
    const consents = (await s.call('GET', `/v1/customers/${s.customer}`)).json().consents as { status: string }[];
    t.same(consents.map((c) => c.status), consent, `${label}: consent`);
  }
});

t.test('an SMS refused because the recipient replied STOP (Twilio 21610) is their unsubscribe; every channel has its own set of action templates', async (t) => {
  const ws = await workspaceWithKey(app);
  const accountSid = `AC${'2'.repeat(32)}`;
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'sms', provider: 'twilio', settings: { accountSid, from: '+15005550006' }, secrets: { authToken: 'tw-stop' } })).json().id;
  const template = (await ws.call('POST', '/v1/templates', { name: 't', channel: 'sms', content: { text: 'hi' } })).json().id;
  const customer = (await ws.call('POST', '/v1/customers', { externalId: 'stop', phone: '+33612345679', custom: { plan: 'gold' } })).json().id;
  const action = await ws.call('POST', '/v1/actions', { name: 'SMS', kind: 'single_send', channel: 'sms', channelConfigId: config, templateId: template, audience: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } });
  t.equal(action.statusCode, 201, action.body);
  const kinds = async (sourceId: string) => ((await ws.call('GET', `/v1/action-templates?sourceType=action&sourceId=${sourceId}`)).json().data as { kind: string }[]).map((a) => a.kind).sort();
  t.same(await kinds(action.json().id), ['delivered', 'failed', 'not_sent', 'sent', 'unsubscribed'], 'SMS: no clicked (its links are not tracked), no opened');
  for (const [channel, settings, content, expected] of [
    ['web_push', {}, { title: 't', body: 'b' }, ['clicked', 'delivered', 'failed', 'not_sent', 'opened', 'sent']],
    ['webhook', {}, { method: 'POST', url: 'https://hooks.example/x' }, ['failed', 'not_sent', 'sent']],
  ] as const) {
    const c = (await ws.call('POST', '/v1/channel-configs', { name: channel, provider: 'sandbox', channel, settings })).json().id;
    const tp = (await ws.call('POST', '/v1/templates', { name: channel, channel, content })).json().id;
    const a = await ws.call('POST', '/v1/actions', { name: channel, kind: 'single_send', channel, channelConfigId: c, templateId: tp, audience: { type: 'field', field: 'custom.plan', op: 'eq', value: 'gold' } });
    t.equal(a.statusCode, 201, a.body);
    t.same(await kinds(a.json().id), expected, `${channel}: its own set`);
  }

  const [id] = await sql.begin((tx) => enqueueMessages(tx, deps.boss, [{ workspaceId: ws.workspaceId, customerId: customer, channel: 'sms', channelConfigId: config, templateId: template, templateVersion: 1, sourceType: 'action', sourceId: action.json().id }], herald.clock.now()));
  const previous = deps.providers.twilio;
  deps.providers.twilio = fixed('SM-stop');
  await sendDueMessages(deps);
  deps.providers.twilio = previous!;
  const path = `/webhooks/sms/${config}?message=${id}`;
  const params = new URLSearchParams({ MessageSid: 'SM-stop', MessageStatus: 'undelivered', ErrorCode: '21610', AccountSid: accountSid, To: '+33612345679' });
  const res = await app.inject({ method: 'POST', url: path, payload: params.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature('tw-stop', `${deps.config.publicUrl}${path}`, params) } });
  t.same(res.json(), { stored: 1, duplicates: 0, unknownMessages: 0, ignored: 0 });
  const message = (await ws.call('GET', `/v1/messages/${id}`)).json();
  t.equal(message.status, 'unsubscribed');
  t.match(message.events, [{ kind: 'unsubscribed', data: { errorCode: '21610' } }]);
  const assigned = ((await ws.call('GET', `/v1/action-templates?sourceType=action&sourceId=${action.json().id}`)).json().data as { kind: string; customers: number }[]).filter((a) => a.customers > 0).map((a) => a.kind).sort();
  t.same(assigned, ['sent', 'unsubscribed']);
  t.match((await ws.call('GET', `/v1/customers/${customer}`)).json().consents, [{ channel: 'sms', status: 'unsubscribed' }]);
});

t.test('SMS delivery receipts: Twilio-signed, mapped to the message named by the callback URL and its provider id', async (t) => {
  const ws = await workspaceWithKey(app);
  const accountSid = `AC${'1'.repeat(32)}`;
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'sms', provider: 'twilio', settings: { accountSid, from: '+15005550006' }, secrets: { authToken: 'tw-token' } })).json().id;
  const template = (await ws.call('POST', '/v1/templates', { name: 't', channel: 'sms', content: { text: 'hi' } })).json().id;
  const customer = (await ws.call('POST', '/v1/customers', { externalId: 'sms', phone: '+33612345678' })).json().id;
  const [id] = await sql.begin((tx) => enqueueMessages(tx, deps.boss, [{ workspaceId: ws.workspaceId, customerId: customer, channel: 'sms', channelConfigId: config, templateId: template, templateVersion: 1, sourceType: 'action', sourceId: newId() }], herald.clock.now()));
  const previous = deps.providers.twilio;
  deps.providers.twilio = fixed('SM0123');
  await sendDueMessages(deps);
  deps.providers.twilio = previous!;
  const path = `/webhooks/sms/${config}?message=${id}`;
  const url = `${deps.config.publicUrl}${path}`;
  const params = new URLSearchParams({ MessageSid: 'SM0123', MessageStatus: 'delivered', AccountSid: accountSid, To: '+33612345678' });
  const send = (p: URLSearchParams, signature: string, at = path) => app.inject({ method: 'POST', url: at, payload: p.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature } });
  // The message's id in the URL and its provider id in the body must both match; the URL is signed.
  const early = new URLSearchParams({ ...Object.fromEntries(params), MessageStatus: 'failed' });
  const elsewhere = async (query: string) => {
    const at = `/webhooks/sms/${config}${query}`;
    return (await send(early, twilioSignature('tw-token', `${deps.config.publicUrl}${at}`, early), at));
  };
  for (const query of ['', `?message=${newId()}`, '?message=not-a-uuid', '?message=']) {
    const res = await elsewhere(query);
    t.equal(res.statusCode, 200, `callback URL "${query}"`);
    t.match(res.json(), { stored: 0, unknownMessages: 1 }, `callback URL "${query}": counted as an unknown message`);
  }
  t.equal((await send(early, twilioSignature('tw-token', `${deps.config.publicUrl}/webhooks/sms/${config}`, early))).statusCode, 401, 'a message id added to a URL signed without it');
  t.equal((await ws.call('GET', `/v1/messages/${id}`)).json().status, 'sent', 'none of them touched the message');
  const ok = await send(params, twilioSignature('tw-token', url, params));
  t.equal(ok.statusCode, 200);
  t.match(ok.json(), { stored: 1 });
  t.equal((await ws.call('GET', `/v1/messages/${id}`)).json().status, 'delivered');
  t.match((await send(params, twilioSignature('tw-token', url, params))).json(), { stored: 0, duplicates: 1 }, 'a repeated receipt is stored once');
  t.equal((await send(params, twilioSignature('wrong-token', url, params))).statusCode, 401);
  const forged = new URLSearchParams(params);
  forged.set('MessageStatus', 'failed');
  t.equal((await send(forged, twilioSignature('tw-token', url, params))).statusCode, 401, 'a parameter changed after signing');
  const unknown = new URLSearchParams({ MessageSid: 'SMnope', MessageStatus: 'delivered', AccountSid: accountSid });
  t.match((await send(unknown, twilioSignature('tw-token', url, unknown))).json(), { unknownMessages: 1 });
});
