// The merge tags from the customer's records: promo_code (a code the message's flow issued, else
// the newest code issued to the customer) and points_balance (0 without a ledger), in real sends,
// previews and test sends; and dates in the customer's zone, else the workspace's, everywhere.
import t from 'tap';
import { drainFlows } from '../src/engine/engine.ts';
import { sendDueMessages } from '../src/modules/messages/send.worker.ts';
import { caller, ROOT_TOKEN, startHerald, workspaceWithKey } from './helpers/app.ts';

const herald = await startHerald(t, { HERALD_ROLE: 'api' });
const { app, clock } = herald;
const { deps } = herald.runtime;
const root = caller(app, ROOT_TOKEN);

const TEXT = 'Code {{ promo_code | default: "none" }}, {{ points_balance }} points, on {{ event.at | default: "2026-07-01T20:30:00Z" | local_date: "%Y-%m-%d %H:%M" }}';

t.test('promo_code and points_balance in a flow\'s email, an action\'s, a preview and a test send; dates in the workspace zone when the customer has none', async (t) => {
  clock.set('2026-07-01T08:00:00Z');
  const { call, workspaceId } = await workspaceWithKey(app);
  t.equal((await root('PATCH', `/v1/workspaces/${workspaceId}`, { timeZone: 'Asia/Tokyo' })).statusCode, 200);
  const config = (await call('POST', '/v1/channel-configs', { name: 'sandbox', provider: 'sandbox', channel: 'email', settings: { fromEmail: 'shop@acme.example' } })).json().id as string;
  const template = (await call('POST', '/v1/templates', { name: 'Perks', channel: 'email', content: { subject: 'Perks', text: TEXT, html: `<p>${TEXT}</p>` } })).json().id as string;
  t.equal((await call('POST', '/v1/promo-codes', { pool: 'VIP', codes: ['V-1', 'V-2'] })).statusCode, 200);
  const ann = (await call('POST', '/v1/customers', { externalId: 'ann', email: 'ann@x.io' })).json().id as string;
  const bob = (await call('POST', '/v1/customers', { externalId: 'bob', email: 'bob@x.io', timeZone: 'America/New_York' })).json().id as string;

  const graph = {
    nodes: [
      { id: 'start', type: 'event_trigger', eventType: 'join' },
      { id: 'give', type: 'steps', steps: [{ type: 'points', delta: 120 }, { type: 'promo_code', pool: 'VIP' }] },
      { id: 'mail', type: 'steps', steps: [{ type: 'send', channel: 'email', channelConfigId: config, templateId: template }] },
      { id: 'end', type: 'exit' },
    ],
    edges: [{ from: 'start', to: 'give' }, { from: 'give', to: 'mail' }, { from: 'mail', to: 'end' }],
  };
  const flow = (await call('POST', '/v1/flows', { name: 'Perks', graph })).json().id as string;
  t.equal((await call('POST', `/v1/flows/${flow}/launch`)).statusCode, 200);
  await call('POST', '/v1/events', { externalId: 'ann', type: 'join', occurredAt: clock.now().toISOString() });
  await drainFlows(deps);
  await sendDueMessages(deps);
  const [sent] = await deps.database.sql<{ id: string }[]>`select id from messages where workspace_id = ${workspaceId} and source_id = ${flow}`;
  const view = (await call('GET', `/v1/messages/${sent!.id}`)).json();
  t.equal(view.status, 'sent', JSON.stringify(view));
  t.equal(view.rendered.text, 'Code V-1, 120 points, on 2026-07-02 05:30', 'the flow\'s code, the balance after its points, Tokyo time (the workspace\'s)');
  t.match(view.rendered.html, /<p>Code V-1, 120 points, on 2026-07-02 05:30<\/p>/);

  // A flow that issues nothing, triggered by an event that carries a code of its own (one the
  // customer used): the merge tag is still the customer's issued code (bob has none).
  const echo = (await call('POST', '/v1/flows', { name: 'Echo', graph: {
    nodes: [{ id: 'start', type: 'event_trigger', eventType: 'order' }, { id: 'mail', type: 'steps', steps: [{ type: 'send', channel: 'email', channelConfigId: config, templateId: template }] }, { id: 'end', type: 'exit' }],
    edges: [{ from: 'start', to: 'mail' }, { from: 'mail', to: 'end' }],
  } })).json().id as string;
  t.equal((await call('POST', `/v1/flows/${echo}/launch`)).statusCode, 200);
  await call('POST', '/v1/events', { externalId: 'bob', type: 'order', properties: { promo_code: 'USED-9' }, occurredAt: clock.now().toISOString() });
  await drainFlows(deps);
  await sendDueMessages(deps);
  const [echoed] = await deps.database.sql<{ id: string }[]>`select id from messages where workspace_id = ${workspaceId} and source_id = ${echo}`;
  t.match((await call('GET', `/v1/messages/${echoed!.id}`)).json().rendered.text, /^Code none, 0 points/, 'an event\'s own promo_code property is not an issued code');

  const preview = async (body: Record<string, unknown>) => {
    const res = await call('POST', `/v1/templates/${template}/preview`, body);
    t.equal(res.statusCode, 200, res.body);
    return res.json().rendered.text as string;
  };
  t.equal(await preview({ customerId: ann }), 'Code V-1, 120 points, on 2026-07-02 05:30', 'a preview for ann shows hers');
  t.equal(await preview({ customerId: bob }), 'Code none, 0 points, on 2026-07-01 16:30', 'bob: no code, no points, his own zone');
  t.equal(await preview({ sample: { customer: { first_name: 'S' } } }), 'Code none,  points, on 2026-07-02 05:30', 'sample data: no customer records; the workspace zone');

  const test = await call('POST', `/v1/templates/${template}/test-send`, { channelConfigId: config, to: 'qa@acme.example', customerId: ann });
  t.equal(test.statusCode, 200, test.body);
  t.equal(test.json().rendered.text, 'Code V-1, 120 points, on 2026-07-02 05:30', 'a test send renders what ann would get');

  // An action's message (no flow, no code in its event): the newest code issued to the customer.
  await deps.database.sql`update promo_codes set customer_id = ${ann}, issued_at = ${new Date('2026-07-01T09:00:00Z')} where workspace_id = ${workspaceId} and code = 'V-2'`;
  t.equal(await preview({ customerId: ann }), 'Code V-2, 120 points, on 2026-07-02 05:30', 'the newest code issued to her');
});
