// A channel's default config: what actions, flow send steps and test sends use when they name no
// channelConfigId; and the development default, a sandbox config for every channel, so that a
// workspace made on a laptop can send (recorded, not sent) before any provider account exists.
import t from 'tap';
import { executePendingRuns } from '../src/modules/actions/actions.runs.ts';
import { drainFlows } from '../src/engine/engine.ts';
import { drainDueMessages } from '../src/modules/messages/send.worker.ts';
import { caller, ROOT_TOKEN, startHerald, workspaceWithKey, type Call } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const { sql } = deps.database;

const sandbox = (call: Call, name: string, channel = 'email', extra: Record<string, unknown> = {}) =>
  call('POST', '/v1/channel-configs', { name, provider: 'sandbox', channel, ...(channel === 'email' ? { settings: { fromEmail: 'news@acme.example' } } : {}), ...extra });
const defaults = async (call: Call) =>
  ((await call('GET', '/v1/channel-configs?limit=100')).json().data as { name: string; channel: string; isDefault: boolean }[])
    .filter((c) => c.isDefault).map((c) => `${c.channel}:${c.name}`).sort();
const emailTemplate = async (call: Call) =>
  (await call('POST', '/v1/templates', { name: 'Hello', channel: 'email', content: { subject: 'Hello {{ customer.first_name | default: "you" }}', html: '<p>Hi</p>' } })).json().id as string;

t.test('the first config of a channel is its default; isDefault on create or PUT moves it; false or a delete leaves none', async (t) => {
  const { call } = await workspaceWithKey(app);
  const first = (await sandbox(call, 'first')).json();
  t.equal(first.isDefault, true, 'the channel had none');
  const second = (await sandbox(call, 'second')).json();
  t.equal(second.isDefault, false, 'the channel has one already');
  t.equal((await sandbox(call, 'texts', 'sms')).json().isDefault, true, 'each channel its own');
  t.same(await defaults(call), ['email:first', 'sms:texts']);

  const third = await sandbox(call, 'third', 'email', { isDefault: true });
  t.equal(third.statusCode, 201, third.body);
  t.equal(third.json().isDefault, true);
  t.same(await defaults(call), ['email:third', 'sms:texts'], 'created as the default, it took it');

  const moved = await call('PUT', `/v1/channel-configs/${second.id}`, { isDefault: true });
  t.equal(moved.statusCode, 200, moved.body);
  t.equal(moved.json().isDefault, true);
  t.same(await defaults(call), ['email:second', 'sms:texts'], 'made the default with PUT, it took it');
  t.equal((await call('PUT', `/v1/channel-configs/${first.id}`, { name: 'first, renamed' })).json().isDefault, false, 'a PUT that does not name isDefault leaves it');
  t.same(await defaults(call), ['email:second', 'sms:texts']);

  t.equal((await call('PUT', `/v1/channel-configs/${second.id}`, { isDefault: false })).json().isDefault, false);
  t.same(await defaults(call), ['sms:texts'], 'false: the channel has no default');
  t.equal((await sandbox(call, 'fourth')).json().isDefault, true, 'the next config of a channel without one becomes it');
  const fourth = ((await call('GET', '/v1/channel-configs?channel=email&limit=100')).json().data as { id: string; name: string }[]).find((c) => c.name === 'fourth')!;
  t.equal((await call('DELETE', `/v1/channel-configs/${fourth.id}`)).statusCode, 204);
  t.same(await defaults(call), ['sms:texts'], 'a deleted default leaves none (nothing is picked behind the user\'s back)');
  t.equal((await call('PUT', `/v1/channel-configs/${first.id}`, { isDefault: 'yes' })).statusCode, 400, 'isDefault is a boolean');
});

t.test('concurrent creates on a channel without a default: exactly one becomes it', async (t) => {
  const { call } = await workspaceWithKey(app);
  const created = await Promise.all(Array.from({ length: 8 }, (_, i) => sandbox(call, `racer ${i}`, 'web_push')));
  t.same(created.map((r) => r.statusCode), Array(8).fill(201));
  t.equal(created.filter((r) => r.json().isDefault).length, 1, 'one default in the answers');
  t.equal((await defaults(call)).length, 1, 'and one stored');
  const taken = await Promise.all(created.slice(0, 4).map((r) => call('PUT', `/v1/channel-configs/${r.json().id}`, { isDefault: true })));
  t.same(taken.map((r) => r.statusCode), Array(4).fill(200), 'concurrent PUTs each succeed in turn');
  t.equal((await defaults(call)).length, 1, 'still one default');
});

t.test('an action that names no config gets the channel\'s default, kept when the default changes; without one it is a 400', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const template = await emailTemplate(call);
  await call('POST', '/v1/customers', { externalId: 'ann', email: 'ann@x.example' });
  const body = { name: 'Hello all', kind: 'single_send', channel: 'email', templateId: template, audience: { type: 'field', field: 'email', op: 'exists' } };

  const none = await call('POST', '/v1/actions', body);
  t.equal(none.statusCode, 400, none.body);
  t.match(none.json().errors, [{ pointer: '/channelConfigId', detail: /no default email config/ }]);
  t.equal((await sql`select 1 from actions a join workspaces w on w.id = a.workspace_id where a.name = 'Hello all'`).length, 0, 'nothing written');

  const config = (await sandbox(call, 'the default')).json();
  const created = await call('POST', '/v1/actions', body);
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.json().channelConfigId, config.id, 'the default, written into the action');
  await sandbox(call, 'a new default', 'email', { isDefault: true });
  t.equal((await call('GET', `/v1/actions/${created.json().id}`)).json().channelConfigId, config.id, 'a later default does not move it');

  t.equal((await call('POST', `/v1/actions/${created.json().id}/launch`)).statusCode, 200);
  await executePendingRuns(deps);
  await drainDueMessages(deps);
  const [message] = await sql<{ channel_config_id: string; status: string }[]>`select channel_config_id, status from messages where source_id = ${created.json().id}`;
  t.match(message, { channel_config_id: config.id, status: 'sent' }, 'sent through it');

  const sms = await call('POST', '/v1/actions', { ...body, name: 'texts', channel: 'sms', template: { content: { text: 'hi' } }, templateId: undefined });
  t.equal(sms.statusCode, 400, 'a channel without a default is still a 400 when another channel has one');
  t.match(sms.json().errors, [{ pointer: '/channelConfigId', detail: /no default sms config/ }]);
});

t.test('a flow send step that names no config: not ready without a default, launched with it written into the version', async (t) => {
  clock.set('2026-06-01T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const created = await welcomeFlow(call);
  t.match(created.problems, [{ nodeId: 'hello', field: 'steps/0/channelConfigId', detail: /no default email config/ }], 'saved, with the problem named');
  const id = created.id as string;
  const refused = await call('POST', `/v1/flows/${id}/launch`);
  t.equal(refused.statusCode, 422, refused.body);
  t.match(refused.json().errors, [{ pointer: '/nodes/hello/steps/0/channelConfigId' }]);

  const config = (await sandbox(call, 'the default')).json();
  const validated = await call('POST', `/v1/flows/${id}/validate`, {});
  t.match(validated.json(), { ready: true, problems: [] }, validated.body);
  const launched = await call('POST', `/v1/flows/${id}/launch`);
  t.equal(launched.statusCode, 200, launched.body);
  const version = (await call('GET', `/v1/flows/${id}/versions/1`)).json();
  t.equal(version.graph.nodes[1].steps[0].channelConfigId, config.id, 'the launched version records the config it sends through');

  await sandbox(call, 'a new default', 'email', { isDefault: true });
  const posted = await call('POST', '/v1/events', { externalId: 'ann', type: 'signed_up', occurredAt: clock.now().toISOString() });
  t.equal(posted.statusCode, 200, posted.body);
  await drainFlows(deps);
  await drainDueMessages(deps);
  const [message] = await sql<{ channel_config_id: string; status: string }[]>`select channel_config_id, status from messages where source_id = ${id}`;
  t.match(message, { channel_config_id: config.id, status: 'sent' }, 'sent through the version\'s config, not the newer default');
});

t.test('a test send that names no config goes through the default of the template\'s channel', async (t) => {
  const { call } = await workspaceWithKey(app);
  const template = await emailTemplate(call);
  const none = await call('POST', `/v1/templates/${template}/test-send`, { to: 'qa@x.example' });
  t.equal(none.statusCode, 400, none.body);
  t.match(none.json().errors, [{ pointer: '/channelConfigId', detail: /no default email config/ }]);
  await sandbox(call, 'texts', 'sms');
  t.equal((await call('POST', `/v1/templates/${template}/test-send`, { to: 'qa@x.example' })).statusCode, 400, 'another channel\'s default is not used');
  await sandbox(call, 'the default');
  const sent = await call('POST', `/v1/templates/${template}/test-send`, { to: 'qa@x.example' });
  t.equal(sent.statusCode, 200, sent.body);
  t.match(sent.json(), { outcome: 'sent' }, sent.body);
});

t.test('in development a new workspace starts with a sandbox default for every channel; elsewhere with none', async (t) => {
  const dev = await startHerald(t, { HERALD_ROLE: 'api', NODE_ENV: 'development' });
  const root = caller(dev.app, ROOT_TOKEN);
  const ws = (await root('POST', '/v1/workspaces', { name: 'laptop' })).json();
  const key = (await root('POST', `/v1/workspaces/${ws.id}/api-keys`, { name: 'dev', scopes: ['read', 'write'] })).json();
  const call = caller(dev.app, key.token);
  const configs = (await call('GET', '/v1/channel-configs')).json().data as { provider: string; channel: string; isDefault: boolean; settings: Record<string, unknown> }[];
  t.same(configs.map((c) => `${c.channel}:${c.provider}:${c.isDefault}`).sort(), ['email:sandbox:true', 'mobile_push:sandbox:true', 'sms:sandbox:true', 'web_push:sandbox:true', 'webhook:sandbox:true']);
  t.match(configs.find((c) => c.channel === 'email')!.settings, { fromEmail: 'sandbox@example.com' }, 'the email sandbox names a sender, so sends need no other setting');

  const template = await emailTemplate(call);
  const sent = await call('POST', `/v1/templates/${template}/test-send`, { to: 'me@laptop.example' });
  t.equal(sent.statusCode, 200, sent.body);
  t.match(sent.json(), { outcome: 'sent', providerMessageId: /^sandbox-/ }, 'recorded by the sandbox, sent nowhere');

  const real = await call('POST', '/v1/channel-configs', { name: 'SendGrid', provider: 'sendgrid', settings: { fromEmail: 'news@acme.example' }, secrets: { apiKey: 'SG.x' } });
  t.equal(real.json().isDefault, false, 'a real config does not take over by itself');
  const { call: elsewhere } = await workspaceWithKey(app);
  t.same((await elsewhere('GET', '/v1/channel-configs')).json().data, [], 'NODE_ENV=test: a workspace starts with no configs');
});

t.test('defaults are per workspace', async (t) => {
  const a = await workspaceWithKey(app);
  const b = await workspaceWithKey(app);
  const mine = (await sandbox(a.call, 'a\'s')).json();
  t.equal(mine.isDefault, true);
  t.equal((await sandbox(b.call, 'b\'s')).json().isDefault, true, 'another workspace\'s default does not count');
  t.equal((await b.call('PUT', `/v1/channel-configs/${mine.id}`, { isDefault: true })).statusCode, 404, 'nor can it be taken');
  t.same(await defaults(a.call), ['email:a\'s']);
});

/** A flow of one event trigger and one send step that names no config, as created (201). */
async function welcomeFlow(call: Call) {
  const template = await emailTemplate(call);
  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'signed_up' },
      { id: 'hello', type: 'steps', steps: [{ type: 'send', channel: 'email', templateId: template }] },
      { id: 'done', type: 'exit' },
    ],
    edges: [{ from: 'start', to: 'hello' }, { from: 'hello', to: 'done' }],
  };
  const created = await call('POST', '/v1/flows', { name: 'Welcome', graph });
  if (created.statusCode !== 201) throw new Error(created.body);
  return created.json() as { id: string; problems: unknown[] };
}

t.test('a dry run runs a step that names no config (with the default, or without one), and the launch after it sends through the default', async (t) => {
  clock.set('2026-06-02T10:00:00Z');
  const { call } = await workspaceWithKey(app);
  const { id } = await welcomeFlow(call);
  await call('POST', '/v1/events', { externalId: 'ann', type: 'signed_up', occurredAt: clock.now().toISOString() });
  const before = await call('POST', `/v1/flows/${id}/dry-run`, { since: '2026-06-01T00:00:00Z' });
  t.equal(before.statusCode, 200, `no default yet: the dry run still runs ${before.body}`);
  t.match(before.json().messages, [{ nodeId: 'hello', channel: 'email', count: 1 }]);

  const config = (await sandbox(call, 'the default')).json();
  const dry = await call('POST', `/v1/flows/${id}/dry-run`, { since: '2026-06-01T00:00:00Z' });
  t.equal(dry.statusCode, 200, dry.body);
  t.equal((await call('GET', `/v1/flows/${id}/versions/1`)).json().graph.nodes[1].steps[0].channelConfigId, undefined, 'the dry run wrote nothing into the draft');

  t.equal((await call('POST', `/v1/flows/${id}/launch`)).statusCode, 200);
  await call('POST', '/v1/events', { externalId: 'bob', type: 'signed_up', occurredAt: clock.now().toISOString() });
  // In this process the dry runs loaded the draft's graph; the engine must run the launched one.
  await drainFlows(deps);
  const messages = await sql<{ channel_config_id: string }[]>`select channel_config_id from messages where source_id = ${id}`;
  t.same(messages.map((m) => m.channel_config_id), [config.id], 'sent through the default the launch wrote in');
});

t.test('a draft saved before its channel had a default: validate brings its draftStatus up to date; a failed launch keeps its problems', async (t) => {
  const { call } = await workspaceWithKey(app);
  const { id } = await welcomeFlow(call);
  t.match((await call('GET', `/v1/flows/${id}`)).json(), { draftStatus: 'draft' });
  const config = (await sandbox(call, 'the default')).json();
  t.match((await call('POST', `/v1/flows/${id}/validate`, {})).json(), { ready: true });
  t.match((await call('GET', `/v1/flows/${id}`)).json(), { draftStatus: 'ready', problems: [] }, 'the stored draft follows');

  await call('DELETE', `/v1/channel-configs/${config.id}`);
  const refused = await call('POST', `/v1/flows/${id}/launch`);
  t.equal(refused.statusCode, 422);
  const flow = (await call('GET', `/v1/flows/${id}`)).json();
  t.match(flow, { draftStatus: 'draft', problems: [{ nodeId: 'hello', field: 'steps/0/channelConfigId' }] }, 'the launch\'s problems are kept on the draft');
});

t.test('a launch while the default moves waits for the move and takes the new default (no spurious 422)', async (t) => {
  const { workspaceId, call } = await workspaceWithKey(app);
  const { id } = await welcomeFlow(call);
  const old = (await sandbox(call, 'old default')).json();
  const next = (await sandbox(call, 'new default')).json();
  // A move of the default, as PUT isDefault makes it, held open until the launch waits.
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let moved!: () => void;
  const ready = new Promise<void>((r) => (moved = r));
  const move = sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtextextended(${`channel-default:${workspaceId}:email`}, 0))`;
    await tx`update channel_configs set is_default = false where workspace_id = ${workspaceId} and id = ${old.id}`;
    await tx`update channel_configs set is_default = true where workspace_id = ${workspaceId} and id = ${next.id}`;
    moved();
    await gate;
  });
  await ready;
  const launch = call('POST', `/v1/flows/${id}/launch`);
  const until = Date.now() + 5000;
  while ((await sql`select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid where not l.granted and a.datname = current_database()`).length === 0) {
    if (Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(Date.now() <= until, 'the launch waits on the move');
  release();
  await move;
  const launched = await launch;
  t.equal(launched.statusCode, 200, launched.body);
  t.equal((await call('GET', `/v1/flows/${id}/versions/1`)).json().graph.nodes[1].steps[0].channelConfigId, next.id, 'the default after the move');
});
