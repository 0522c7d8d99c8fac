// The content as sent, stored lean (as-sent.ts): an email's html is stored as its layout's
// merge-tag values and rebuilt when read. What the API, "view online" and GraphQL show must be
// byte for byte what the provider was sent.
import t from 'tap';
import { enqueueMessages } from '../src/modules/messages/outbox.ts';
import { sendDueMessages } from '../src/modules/messages/send.worker.ts';
import { trackingUrls } from '../src/modules/messages/compose.ts';
import type { Provider, SendRequest } from '../src/providers/types.ts';
import { sandboxProvider } from '../src/providers/sandbox.ts';
import { newId } from '../src/ids.ts';
import { caller, startHerald, workspaceWithKey } from './helpers/app.ts';

// Role api: no background workers; the test drives the send loop.
const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, runtime } = herald;
const { deps } = runtime;
const { sql } = deps.database;
const anonymous = caller(app, null);

const requests: SendRequest[] = [];
const recording: Provider = {
  async send(request) {
    requests.push(request);
    return { kind: 'sent', providerMessageId: `rec-${request.messageId}` };
  },
};
deps.providers.sandbox = recording;
t.teardown(() => { deps.providers.sandbox = sandboxProvider; });

async function sendWith(content: Record<string, unknown>, custom: Record<string, unknown>, event: Record<string, unknown>) {
  const ws = await workspaceWithKey(app);
  const config = (await ws.call('POST', '/v1/channel-configs', { name: 'c', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'shop@acme.example' } })).json().id;
  const created = await ws.call('POST', '/v1/templates', { name: 't', channel: 'email', content });
  t.equal(created.statusCode, 201, created.body);
  const customer = (await ws.call('POST', '/v1/customers', { externalId: newId(), email: 'ada@x.io', custom })).json().id;
  const [id] = await sql.begin((tx) => enqueueMessages(tx, deps.boss, [{
    workspaceId: ws.workspaceId, customerId: customer, channel: 'email', channelConfigId: config, templateId: created.json().id, templateVersion: 1,
    sourceType: 'action', sourceId: newId(), event,
  }], herald.clock.now()));
  t.equal(await sendDueMessages(deps), 1);
  const request = requests.find((r) => r.messageId === id)!;
  t.ok(request, 'the provider was called');
  return { ...ws, id: id!, customer, sent: request.payload as { html: string; text?: string; subject: string } };
}

/** The same message as the API, "view online" and GraphQL show it. */
async function views(s: Awaited<ReturnType<typeof sendWith>>) {
  const api = (await s.call('GET', `/v1/messages/${s.id}`)).json();
  const viewPath = new URL(trackingUrls(deps.config.publicUrl, deps.config.secret!, s.workspaceId, s.id).view).pathname;
  const online = await anonymous('GET', viewPath);
  const gql = await s.call('POST', '/graphql', {
    query: 'query($id: ID) { customer(id: $id) { timeline(kinds: [message]) { edges { node { message { id content } } } } } }',
    variables: { id: s.customer },
  });
  const content = gql.json().data.customer.timeline.edges[0].node.message.content;
  const [stored] = await sql<{ rendered: Record<string, unknown>; size: number }[]>`
    select rendered, pg_column_size(rendered) as size from messages where workspace_id = ${s.workspaceId} and id = ${s.id}`;
  return { api: api.rendered, online: online.body, onlineStatus: online.statusCode, graphql: content, stored: stored!.rendered, storedBytes: stored!.size };
}

t.test("an email from a layout: stored as its values, shown exactly as sent, links and all", async (t) => {
  const product = '<Zoë & "friends">';
  const html = `<html><head><title>Hi</title></head><body>
    <p>Hello {{ customer.first_name }}, your order of {{ event.total }} is on its way. ${'Static paragraph of the newsletter. '.repeat(60)}</p>
    <a href="https://shop.example/p/{{ event.sku }}?ref=mail">{{ event.product }}</a>
    <a href="{{ event.url }}">track it</a> <a href='https://shop.example/static'>shop</a>
    <a href="{{ view_url }}">view online</a> <a href="{{ unsubscribe_url }}">unsubscribe</a>
  </body></html>`;
  const s = await sendWith(
    { subject: 'Order {{ event.total }}', preheader: 'For {{ customer.first_name }}', html, text: 'Hi {{ customer.first_name }}' },
    { first_name: 'Ada 😀' },
    { total: '42 €', sku: 'a b/ç', product, url: 'https://track.example/x?a=1&b=2' },
  );
  const v = await views(s);
  t.equal(v.api.html, s.sent.html, 'the API shows the html the provider got, byte for byte');
  t.equal(v.online, s.sent.html, '"view online" too');
  t.equal(v.onlineStatus, 200);
  t.equal(v.graphql.html, s.sent.html, 'and GraphQL');
  t.match(v.api, { subject: 'Order 42 €', preheader: 'For Ada 😀', text: 'Hi Ada 😀', from: { email: 'shop@acme.example' } });
  t.same(Object.keys(v.api), ['subject', 'from', 'preheader', 'html', 'text', 'links'], 'the fields in their order, html in its place');
  t.notOk('html' in v.stored, 'the html itself is not stored');
  t.match(v.stored.htmlFromLayout, { layout: /^[\w-]{22}$/, values: ['Ada 😀', '42 €', 'a b/ç', '&lt;Zoë &amp; &#34;friends&#34;&gt;', 'https://track.example/x?a=1&amp;b=2', /\/t\/v\//, /\/t\/u\//] });
  t.ok(v.storedBytes < s.sent.html.length / 2, `stored ${v.storedBytes} B for ${s.sent.html.length} B of html`);

  // The rebuilt links are the message's: each click goes where the sent email's link went.
  const clicks = [...v.api.html.matchAll(/href=["']https?:\/\/[^/]+(\/t\/c\/[^"']+)["']/g)].map((m) => m[1]!);
  const targets = [];
  for (const click of clicks) targets.push((await anonymous('GET', click)).headers.location);
  // As the URL parser writes them (a space and a ç percent-encoded): what a Location header can hold.
  t.same(targets, ['https://shop.example/p/a%20b/%C3%A7?ref=mail', 'https://track.example/x?a=1&b=2', 'https://shop.example/static', v.api.links[3], v.api.links[4]]);
});

t.test('an html with Liquid tags has no layout: stored whole, shown as sent', async (t) => {
  const s = await sendWith(
    { subject: 's', html: '<p>{% if customer.vip %}Dear VIP{% else %}Hello{% endif %} <a href="https://shop.example/">shop</a></p>' },
    { vip: true },
    {},
  );
  const v = await views(s);
  t.equal(v.stored.html, s.sent.html, 'stored as sent');
  t.notOk('htmlFromLayout' in v.stored);
  t.equal(v.api.html, s.sent.html);
  t.equal(v.online, s.sent.html);
});

t.test('an html with `| raw` has no layout either; an email with no html at all', async (t) => {
  const s = await sendWith({ subject: 's', html: '<p>{{ customer.bio | raw }} <a href="https://shop.example/">shop</a></p>', text: 't' }, { bio: '<i>x</i>' }, {});
  const v = await views(s);
  t.equal(v.stored.html, s.sent.html, 'stored as sent');
  t.notOk('htmlFromLayout' in v.stored);
  t.equal(v.api.html, s.sent.html);
  const textOnly = await sendWith({ subject: 's', text: 'Only {{ customer.first_name }}' }, { first_name: 'text' }, {});
  const w = await views(textOnly);
  t.same(w.stored, w.api, 'nothing to rebuild');
  t.match(w.online, /<pre>Only text<\/pre>/, '"view online" shows the text');
});

t.test('a layout that no longer matches is reported, never shown wrong', async (t) => {
  const s = await sendWith({ subject: 's', html: '<p>Hi {{ customer.first_name }}</p>', text: 'Hi {{ customer.first_name }}' }, { first_name: 'Bo' }, {});
  await sql`update messages set rendered = jsonb_set(rendered::jsonb, '{htmlFromLayout,layout}', '"not-the-layout"')::json where workspace_id = ${s.workspaceId} and id = ${s.id}`;
  const v = await views(s);
  t.notOk('html' in v.api, 'no html');
  t.match(v.api.htmlUnavailable, /cannot be rebuilt/);
  t.equal(v.api.text, 'Hi Bo', 'the rest as sent');
  t.match(v.online, /<pre>Hi Bo<\/pre>/, '"view online" shows the text');
});

t.test("a lean message of another workspace is not readable through this one", async (t) => {
  const s = await sendWith({ subject: 's', html: '<p>Hi {{ customer.first_name }}</p>' }, { first_name: 'Cy' }, {});
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('GET', `/v1/messages/${s.id}`)).statusCode, 404);
});
