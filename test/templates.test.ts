import t from 'tap';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;

const email = { subject: 'Hi {{ customer.first_name | default: "there" }}', html: '<p>Your plan: {{ customer.plan }}</p><a href="https://acme.example/a?x=1&amp;y=2">go</a>', text: 'Plan {{ customer.plan }}' };

t.test('create, read, versions that never change, clone, delete', async (t) => {
  const { call } = await workspaceWithKey(app);
  const created = await call('POST', '/v1/templates', { name: 'Welcome', channel: 'email', content: email });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { name: 'Welcome', channel: 'email', version: 1, currentVersion: 1, content: email });
  t.same(created.json().mergeTags.sort(), ['customer.first_name', 'customer.plan']);
  const id = created.json().id;
  const renamed = await call('PUT', `/v1/templates/${id}`, { name: 'Welcome v1' });
  t.equal(renamed.json().currentVersion, 1, 'a rename makes no version');
  const v2 = await call('PUT', `/v1/templates/${id}`, { content: { ...email, subject: 'Hello {{ customer.first_name }}' } });
  t.match(v2.json(), { version: 2, currentVersion: 2, content: { subject: 'Hello {{ customer.first_name }}' } });
  const same = await call('PUT', `/v1/templates/${id}`, { content: { ...email, subject: 'Hello {{ customer.first_name }}' } });
  t.equal(same.json().currentVersion, 2, 'saving the same content makes no version');
  const old = await call('GET', `/v1/templates/${id}?version=1`);
  t.match(old.json(), { version: 1, currentVersion: 2, content: { subject: email.subject } }, 'version 1 is exactly as it was');
  t.equal((await call('GET', `/v1/templates/${id}?version=9`)).statusCode, 404);
  const clone = await call('POST', `/v1/templates/${id}/clone`, {});
  t.match(clone.json(), { name: 'Welcome v1 (copy)', version: 1, content: { subject: 'Hello {{ customer.first_name }}' } });
  t.not(clone.json().id, id);
  t.equal((await call('GET', '/v1/templates?channel=email')).json().data.length, 2);
  t.equal((await call('DELETE', `/v1/templates/${id}`)).statusCode, 204);
  t.equal((await call('GET', `/v1/templates/${id}`)).statusCode, 404);
  t.equal((await call('GET', '/v1/templates')).json().data.length, 1);
});

t.test('every channel; SMS length is counted', async (t) => {
  const { call } = await workspaceWithKey(app);
  const sms = await call('POST', '/v1/templates', { name: 's', channel: 'sms', content: { text: 'Hi {{ customer.first_name }}, your code is {{ event.code }}' } });
  t.match(sms.json().sms, { encoding: 'GSM-7', segments: 1 });
  const emoji = await call('POST', '/v1/templates', { name: 'e', channel: 'sms', content: { text: '🎉'.repeat(40) } });
  t.match(emoji.json().sms, { encoding: 'UCS-2', segments: 2 });
  const push = await call('POST', '/v1/templates', { name: 'p', channel: 'web_push', content: { title: 'Sale', body: 'For {{ customer.email }}', clickUrl: 'https://acme.example/sale', data: { campaign: '{{ event.campaign }}' } } });
  t.equal(push.statusCode, 201);
  t.same(push.json().mergeTags.sort(), ['customer.email', 'event.campaign']);
  t.equal((await call('POST', '/v1/templates', { name: 'm', channel: 'mobile_push', content: { title: 'a', body: 'b' } })).statusCode, 201);
  const hook = await call('POST', '/v1/templates', { name: 'w', channel: 'webhook', content: { method: 'POST', url: 'https://crm.example/hook/{{ customer.external_id }}', headers: { 'X-Source': 'herald' }, body: '{"email":"{{ customer.email }}"}' } });
  t.equal(hook.statusCode, 201);
  const mjml = await call('POST', '/v1/templates', { name: 'mj', channel: 'email', content: { subject: 'x', mjml: '<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ customer.first_name }}</mj-text></mj-column></mj-section></mj-body></mjml>' } });
  t.equal(mjml.statusCode, 201);
  t.same(mjml.json().mergeTags, ['customer.first_name'], 'MJML is compiled and its merge tags found');
});

t.test('bad templates: invalid Liquid points at the field and line; wrong shapes; other workspaces', async (t) => {
  const { call } = await workspaceWithKey(app);
  const bad = await call('POST', '/v1/templates', { name: 'x', channel: 'email', content: { subject: 'ok', html: '<p>line one</p>\n<p>{% if customer.vip %}unclosed</p>' } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().errors, [{ pointer: '/content/html', detail: /line 2/ }]);
  const filter = await call('POST', '/v1/templates', { name: 'x', channel: 'sms', content: { text: '{{ customer.email | no_such_filter }}' } });
  t.equal(filter.statusCode, 400, 'an unknown filter does not compile');
  t.match(filter.json().errors, [{ pointer: '/content/text' }]);
  const noBody = await call('POST', '/v1/templates', { name: 'x', channel: 'email', content: { subject: 'only a subject' } });
  t.match(noBody.json().errors, [{ pointer: '/content/html' }]);
  const wrongShape = await call('POST', '/v1/templates', { name: 'x', channel: 'sms', content: { title: 'push fields' } });
  t.equal(wrongShape.statusCode, 400);
  const badMjml = await call('POST', '/v1/templates', { name: 'x', channel: 'email', content: { subject: 'x', mjml: '<mjml><mj-body><mj-section><mj-text>a</mj-text></mj-section></mj-body></mjml>' } });
  t.equal(badMjml.statusCode, 400);
  t.match(badMjml.json().errors, [{ pointer: '/content/mjml', detail: /line 1: mj-text cannot be used inside mj-section/ }]);
  const liquidInMjml = await call('POST', '/v1/templates', { name: 'x', channel: 'email', content: { subject: 'x', mjml: '<mjml><mj-body><mj-section><mj-column>\n<mj-text>{% if customer.vip %}Hi</mj-text>\n</mj-column></mj-section></mj-body></mjml>' } });
  t.equal(liquidInMjml.statusCode, 400);
  t.same(liquidInMjml.json().errors.map((e: { pointer: string }) => e.pointer), ['/content/mjml'], 'bad Liquid in MJML points at the MJML the user wrote');
  t.match(liquidInMjml.json().errors[0].detail, /^line 2, column \d+: .*if/, 'at its line in the MJML, not in the compiled HTML');
  const id = (await call('POST', '/v1/templates', { name: 'ok', channel: 'sms', content: { text: 'hi' } })).json().id;
  const badPut = await call('PUT', `/v1/templates/${id}`, { content: { text: '{{ oops' } });
  t.equal(badPut.statusCode, 400);
  t.equal((await call('GET', `/v1/templates/${id}`)).json().currentVersion, 1, 'nothing half-written');
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('GET', `/v1/templates/${id}`)).statusCode, 404);
  t.equal((await stranger.call('PUT', `/v1/templates/${id}`, { name: 'mine' })).statusCode, 404);
  t.equal((await stranger.call('POST', `/v1/templates/${id}/clone`, {})).statusCode, 404);
  t.equal((await stranger.call('POST', `/v1/templates/${id}/preview`, {})).statusCode, 404);
});

t.test('preview for a real customer or sample data names every merge tag with no value', async (t) => {
  const { call } = await workspaceWithKey(app);
  const id = (await call('POST', '/v1/templates', { name: 'w', channel: 'email', content: { ...email, html: `${email.html}<p>{{ event.total }}</p><a href="{{ unsubscribe_url }}">stop</a>` } })).json().id;
  const customer = (await call('POST', '/v1/customers', { externalId: 'p1', email: 'p1@x.io', custom: { plan: 'gold' } })).json().id;
  const real = await call('POST', `/v1/templates/${id}/preview`, { customerId: customer, event: { total: 42 } });
  t.equal(real.statusCode, 200);
  t.match(real.json().rendered, { subject: 'Hi there', text: 'Plan gold' });
  t.match(real.json().rendered.html, /Your plan: gold.*42/s);
  t.match(real.json().rendered.html, /\/t\/u\//, 'unsubscribe_url is filled in');
  t.same(real.json().missing, ['customer.first_name']);
  const sample = await call('POST', `/v1/templates/${id}/preview`, { sample: { customer: { first_name: 'Ada' } } });
  t.match(sample.json().rendered, { subject: 'Hi Ada' });
  t.same(sample.json().missing.sort(), ['customer.plan', 'event.total']);
  t.equal((await call('POST', `/v1/templates/${id}/preview`, { customerId: '00000000-0000-4000-8000-000000000000' })).statusCode, 404);
});

t.test('a template that loops or explodes is stopped by the limits', async (t) => {
  const { call } = await workspaceWithKey(app);
  const loop = (await call('POST', '/v1/templates', { name: 'l', channel: 'sms', content: { text: '{% for i in (1..100000000) %}{% for j in (1..1000) %}x{% endfor %}{% endfor %}' } })).json().id;
  const started = Date.now();
  const res = await call('POST', `/v1/templates/${loop}/preview`, {});
  t.equal(res.statusCode, 400);
  t.ok(Date.now() - started < 5000, 'stopped quickly');
  const bomb = '{% assign s = "xxxxxxxxxx" %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s }}';
  const big = (await call('POST', '/v1/templates', { name: 'b', channel: 'sms', content: { text: bomb } })).json().id;
  const exploded = await call('POST', `/v1/templates/${big}/preview`, {});
  t.equal(exploded.statusCode, 400);
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the server is fine');
});
