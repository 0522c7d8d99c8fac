// node scripts/bench-send-cpu.ts — the CPU one email costs in the send path without the database,
// the network or the job queue: render (Liquid), compose (tracking links, signed tokens), the
// SendGrid request body and the outcome row's JSON, for N (20,000) emails of bench:send's template
// (copied here: importing bench-send.ts runs it), in one process. Prints µs per email per stage,
// medians of 7 rounds (the machine is shared). No lock needed: it measures CPU, not a ceiling.
import { compileFields, customerContext, fieldLayout } from '../src/modules/templates/render.ts';
import { composePayload, trackingUrls } from '../src/modules/messages/compose.ts';
import { mailBody, sendGridMail } from '../src/providers/sendgrid.ts';
import { stringifyWith } from '../src/providers/json.ts';
import { newId } from '../src/ids.ts';
import { performance } from 'node:perf_hooks';

const N = Number(process.env.N ?? 20000);
const PRODUCTS = [
  ['Trail running shoes', 'Grippy, light and ready for wet rock: the pair our testers reached for all autumn.'],
  ['Merino base layer', 'Warm when it is cold, cool when it is not, and it never smells like last week.'],
  ['Insulated bottle', 'Keeps tea hot for twelve hours and water cold for a whole day on the trail.'],
  ['Headlamp 400 lm', 'Rechargeable over USB-C, with a red mode that keeps your night vision intact.'],
  ['Packable rain shell', 'Folds into its own pocket and weighs less than an apple. Taped seams throughout.'],
] as const;
function templateContent() {
  const link = (i: number) => `https://shop.example.com/p/${1040 + i}?utm_source=herald&amp;utm_medium=email&amp;utm_campaign=weekly-picks&amp;ref={{ customer.external_id }}`;
  const cards = PRODUCTS.map(([name, blurb], i) => `
<tr><td style="padding:16px 24px;border-bottom:1px solid #eee">
<h2 style="margin:0 0 6px;font-size:18px;color:#222">${name}</h2>
<p style="margin:0 0 12px;font-size:14px;color:#555">${blurb}</p>
<a href="${link(i)}" style="padding:8px 16px;background:#1a73e8;color:#fff">See it</a>
</td></tr>`).join('');
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>Your weekly picks</title>
<style>body{margin:0;background:#f4f4f4;font-family:Helvetica,Arial,sans-serif}a{color:#1a73e8}</style></head>
<body>
<table role="presentation" width="600" align="center" style="background:#fff">
<tr><td style="padding:24px">
<h1 style="font-size:22px">Hi {{ customer.first_name | default: "there" }},</h1>
<p style="font-size:15px">Five things {{ customer.tier }} members in {{ customer.city | default: "your area" }} liked this week (picks #{{ event.total }}).</p>
</td></tr>${cards}
<tr><td style="padding:24px;font-size:12px;color:#888">
You get this email because you are a {{ customer.tier }} member with the address {{ customer.email }}.<br>
<a href="{{ view_url }}" data-herald-no-track>View it online</a> &middot;
<a href="{{ unsubscribe_url }}" data-herald-no-track>Unsubscribe</a>
</td></tr></table></body></html>`;
  const text = ['Hi {{ customer.first_name | default: "there" }},', '', 'Five things {{ customer.tier }} members in {{ customer.city | default: "your area" }} liked this week:',
    ...PRODUCTS.map(([name], i) => `- ${name}: ${link(i).replaceAll('&amp;', '&')}`), '', 'Unsubscribe: {{ unsubscribe_url }}'].join('\n');
  return { subject: '{{ customer.first_name | default: "Hi" }}, five picks for {{ customer.tier }} members', html, text };
}
const content = templateContent();
const compiled = compileFields(content);
const ws = newId();
const customers = Array.from({ length: 1000 }, (_, i) => ({ id: newId(), externalId: `c${i}`, email: `c${i}@bench.example.com`, phone: null, timeZone: null, locale: null, custom: { first_name: 'Ada', tier: 'gold', city: 'Gdańsk' }, createdAt: new Date().toISOString() }));
const secret = 'x'.repeat(40);
const settings = { fromEmail: 'picks@shop.example.com', fromName: 'Example Shop', apiBaseUrl: 'http://127.0.0.1:1' };
const t = { render: 0, compose: 0, body: 0, row: 0 };
let bytes = 0;
async function one(i: number, timed: boolean) {
  const c = customers[i % customers.length]!;
  const id = newId();
  let a = performance.now();
  const urls = trackingUrls('https://herald.bench.example.com', secret, ws, id);
  const parts: Record<string, string[]> = {};
  const values = await compiled.render({ customer: customerContext(c), event: { type: 'bench', total: 30000 }, unsubscribe_url: urls.unsubscribe, view_url: urls.view, timeZone: 'UTC' }, parts);
  let b = performance.now(); if (timed) t.render += b - a; a = b;
  const layout = fieldLayout(compiled, 'html');
  const composed = composePayload({ channel: 'email', content, values, settings, address: c.email, subscription: null, urls, publicUrl: 'https://herald.bench.example.com', channelConfigId: ws, htmlPieces: layout && parts.html ? { layout, pieces: parts.html } : undefined });
  if ('error' in composed) throw new Error(composed.error);
  b = performance.now(); if (timed) t.compose += b - a; a = b;
  const request = { messageId: id, workspaceId: ws, payload: composed.payload, settings, secrets: { apiKey: 'SG.x' }, allowPrivateTargets: true };
  const encoded = composed.payload.kind === 'email' ? (composed.payload.encoded ?? []) : [];
  const body = stringifyWith(mailBody(sendGridMail(request, composed.payload as never)), encoded)!;
  bytes += body.length;
  b = performance.now(); if (timed) t.body += b - a; a = b;
  const row = stringifyWith([{ workspace_id: ws, id, status: 'sent', reason: null, to_address: c.email, rendered: composed.rendered, provider_message_id: 'x', next_attempt_at: null, sent_at: new Date().toISOString(), started: true, lease: new Date().toISOString() }], encoded)!;
  bytes += row.length;
  b = performance.now(); if (timed) t.row += b - a;
}
for (let i = 0; i < 3000; i++) await one(i, false);
// Rounds, and the median of each stage over them: the machine is shared.
const ROUNDS = 7;
const rounds: Array<typeof t & { total: number }> = [];
for (let r = 0; r < ROUNDS; r++) {
  for (const k of Object.keys(t) as Array<keyof typeof t>) t[k] = 0;
  const start = performance.now();
  for (let i = 0; i < N / ROUNDS; i++) await one(i, true);
  rounds.push({ ...t, total: performance.now() - start });
}
const med = (k: keyof (typeof rounds)[number]) => {
  const v = rounds.map((r) => r[k]).sort((a, b) => a - b);
  return ((v[v.length >> 1]! * 1000) / (N / ROUNDS)).toFixed(1);
};
console.log(`µs/email (CPU only, in-process, median of ${ROUNDS} rounds): total ${med('total')} | render ${med('render')} compose ${med('compose')} body ${med('body')} row ${med('row')} (bytes/email ${Math.round(bytes / N / 2)})`);
