// npm run seed: a demo workspace with customers, consents and a few weeks of events.
import { arg, baseUrl, call, createWorkspaceAndKey } from './lib/client.ts';

const customers = Number(arg('customers', '200'));
const { workspaceId, token } = await createWorkspaceAndKey(arg('name', 'Demo'));
const plans = ['free', 'pro', 'team'];
const zones = ['Europe/Paris', 'America/New_York', 'Asia/Tokyo', 'UTC'];
const now = Date.now();

for (let start = 0; start < customers; start += 100) {
  const events = [];
  for (let i = start; i < Math.min(start + 100, customers); i++) {
    const externalId = `demo-${i}`;
    await call(token, 'POST', '/v1/customers', {
      externalId,
      email: `demo-${i}@example.com`,
      timeZone: zones[i % zones.length],
      locale: i % 3 ? 'en-US' : 'fr-FR',
      custom: { plan: plans[i % plans.length], birthday: `19${70 + (i % 30)}-0${1 + (i % 9)}-1${i % 10}` },
    });
    events.push({ externalId, type: 'registration', occurredAt: new Date(now - (30 + (i % 30)) * 86_400_000).toISOString() });
    for (let k = 0; k < i % 4; k++) {
      events.push({ externalId, type: 'order.placed', properties: { total: 10 + ((i * 7 + k) % 90), currency: 'EUR' }, occurredAt: new Date(now - (k + 1) * 3 * 86_400_000).toISOString() });
    }
  }
  await call(token, 'POST', '/v1/events', { events });
}
const page = await call<{ data: { id: string }[] }>(token, 'GET', '/v1/customers?limit=50');
for (const [i, c] of page.data.entries()) {
  await call(token, 'PUT', `/v1/customers/${c.id}/consents/email`, { status: i % 5 ? 'subscribed' : 'unsubscribed', source: 'seed' });
}
process.stdout.write(`seeded ${customers} customers with events in workspace ${workspaceId} on ${baseUrl}\n`);
process.stdout.write(`export HERALD_KEY=${token}\n`);
