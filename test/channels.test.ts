import t from 'tap';
import { open } from '../src/security/secrets.ts';
import { loadChannelConfig } from '../src/modules/channels/channels.service.ts';
import { startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t);
const { app } = herald;
const { sql } = herald.runtime.deps.database;

t.test('a SendGrid config: secrets sealed at rest, never returned, usable by the pipeline', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/channel-configs', {
    name: 'Marketing email', provider: 'sendgrid',
    settings: { fromEmail: 'news@acme.example', fromName: 'Acme', apiBaseUrl: 'http://127.0.0.1:9/mock' },
    secrets: { apiKey: 'SG.super-secret-key' },
  });
  t.equal(res.statusCode, 201);
  t.match(res.json(), { provider: 'sendgrid', channel: 'email', settings: { fromEmail: 'news@acme.example' }, secretsSet: ['apiKey'] });
  t.notMatch(res.body, /super-secret/, 'the answer never holds the secret');
  const id = res.json().id;
  t.notMatch((await call('GET', `/v1/channel-configs/${id}`)).body, /super-secret/);
  t.notMatch((await call('GET', '/v1/channel-configs')).body, /super-secret/);
  const [row] = await sql`select sealed_secrets::text as s, settings::text as settings from channel_configs where id = ${id}`;
  t.notMatch(row!.s, /super-secret/, 'sealed in the database');
  t.match(row!.s, /^v1\./);
  t.throws(() => open('another-secret-another-secret-another-1', `channel-config/${workspaceId}/${id}`, row!.s), 'another HERALD_SECRET cannot open it');
  t.throws(() => open(herald.runtime.deps.config.secret!, `channel-config/${workspaceId}/00000000-0000-4000-8000-000000000000`, row!.s), 'bound to its row');
  const loaded = await loadChannelConfig(herald.runtime.deps, workspaceId, id);
  t.same(loaded.secrets, { apiKey: 'SG.super-secret-key' });

  const updated = await call('PUT', `/v1/channel-configs/${id}`, { name: 'Renamed', settings: { fromEmail: 'hello@acme.example' } });
  t.equal(updated.statusCode, 200);
  t.same(updated.json().settings, { fromEmail: 'hello@acme.example' }, 'settings are replaced');
  t.same((await loadChannelConfig(herald.runtime.deps, workspaceId, id)).secrets, { apiKey: 'SG.super-secret-key' }, 'secrets not named are kept');
  await call('PUT', `/v1/channel-configs/${id}`, { secrets: { apiKey: 'SG.rotated' } });
  t.same((await loadChannelConfig(herald.runtime.deps, workspaceId, id)).secrets, { apiKey: 'SG.rotated' }, 'a secret is rotated');
});

t.test('web push: VAPID keys generated on request, or both supplied', async (t) => {
  const { call, workspaceId } = await workspaceWithKey(app);
  const gen = await call('POST', '/v1/channel-configs', { name: 'Browser push', provider: 'web_push', settings: { subject: 'mailto:ops@acme.example' } });
  t.equal(gen.statusCode, 201);
  t.match(gen.json().settings.vapidPublicKey, /^[A-Za-z0-9_-]{87}$/);
  t.same(gen.json().secretsSet, ['vapidPrivateKey']);
  t.notOk(gen.json().generatedSecrets, 'the private key is never shown');
  const loaded = await loadChannelConfig(herald.runtime.deps, workspaceId, gen.json().id);
  t.match(loaded.secrets.vapidPrivateKey, /^[A-Za-z0-9_-]{43}$/);
  const half = await call('POST', '/v1/channel-configs', { name: 'x', provider: 'web_push', settings: { subject: 'mailto:a@b.c', vapidPublicKey: gen.json().settings.vapidPublicKey } });
  t.equal(half.statusCode, 400);
  t.match(half.json().errors, [{ pointer: '/secrets/vapidPrivateKey' }]);
});

t.test('webhook: a Standard Webhooks signing secret is generated and shown once', async (t) => {
  const { call } = await workspaceWithKey(app);
  const res = await call('POST', '/v1/channel-configs', { name: 'CRM hook', provider: 'webhook' });
  t.equal(res.statusCode, 201);
  t.match(res.json().generatedSecrets.signingSecret, /^whsec_[A-Za-z0-9+/=]+$/);
  t.notOk((await call('GET', `/v1/channel-configs/${res.json().id}`)).json().generatedSecrets);
});

t.test('sandbox configs name their channel; other providers derive it', async (t) => {
  const { call } = await workspaceWithKey(app);
  t.match((await call('POST', '/v1/channel-configs', { name: 'dev sms', provider: 'sandbox', channel: 'sms' })).json(), { provider: 'sandbox', channel: 'sms', secretsSet: [] });
  t.equal((await call('POST', '/v1/channel-configs', { name: 'x', provider: 'sandbox' })).statusCode, 400, 'a sandbox needs a channel');
  const twilio = await call('POST', '/v1/channel-configs', { name: 'SMS', provider: 'twilio', settings: { accountSid: `AC${'a'.repeat(32)}`, from: '+15005550006' }, secrets: { authToken: 'tok' } });
  t.match(twilio.json(), { channel: 'sms' });
  const list = await call('GET', '/v1/channel-configs?channel=sms');
  t.equal(list.json().data.length, 2);
});

t.test('bad configs are refused with pointers; other workspaces see nothing', async (t) => {
  const { call } = await workspaceWithKey(app);
  const noKey = await call('POST', '/v1/channel-configs', { name: 'x', provider: 'sendgrid', settings: { fromEmail: 'a@b.c' } });
  t.equal(noKey.statusCode, 400);
  t.match(noKey.json().errors, [{ pointer: '/secrets' }]);
  const badSettings = await call('POST', '/v1/channel-configs', { name: 'x', provider: 'sendgrid', settings: { fromEmail: 'nope', colour: 1 }, secrets: { apiKey: 'k' } });
  t.same(badSettings.json().errors.map((e: { pointer: string }) => e.pointer).sort(), ['/settings/colour', '/settings/fromEmail']);
  t.equal((await call('POST', '/v1/channel-configs', { name: 'x', provider: 'carrier-pigeon' })).statusCode, 400);
  const sid = await call('POST', '/v1/channel-configs', { name: 'x', provider: 'twilio', settings: { accountSid: 'nope', from: '+1' }, secrets: { authToken: 't' } });
  t.match(sid.json().errors, [{ pointer: '/settings/accountSid' }]);
  const created = await call('POST', '/v1/channel-configs', { name: 'mine', provider: 'sandbox', channel: 'email' });
  const id = created.json().id;
  const badPut = await call('PUT', `/v1/channel-configs/${id}`, { settings: { accountSid: `AC${'a'.repeat(32)}` } });
  t.equal(badPut.statusCode, 400, 'settings of another provider');
  const stranger = await workspaceWithKey(app);
  t.equal((await stranger.call('GET', `/v1/channel-configs/${id}`)).statusCode, 404);
  t.equal((await stranger.call('PUT', `/v1/channel-configs/${id}`, { name: 'stolen' })).statusCode, 404);
  t.equal((await stranger.call('DELETE', `/v1/channel-configs/${id}`)).statusCode, 404);
  t.equal((await call('DELETE', `/v1/channel-configs/${id}`)).statusCode, 204);
  t.equal((await call('GET', `/v1/channel-configs/${id}`)).statusCode, 404, 'deleted');
});
