// node scripts/bench-send-cpu.ts — the CPU one email costs in the send path without the database,
// the network or the job queue: render (Liquid), compose (tracking links, signed tokens), the
// SendGrid request body and the outcome row's JSON, for N (20,000) emails of bench:send's template
// (scripts/bench-send-template.ts), in one process. Prints µs per email per stage,
// medians of 7 rounds (the machine is shared). No lock needed: it measures CPU, not a ceiling.
import { compileFields, customerContext, fieldLayout } from '../src/modules/templates/render.ts';
import { composePayload, trackingUrls } from '../src/modules/messages/compose.ts';
import { mailBody, sendGridMail } from '../src/providers/sendgrid.ts';
import { stringifyWith } from '../src/providers/json.ts';
import { newId } from '../src/ids.ts';
import { performance } from 'node:perf_hooks';
import { templateContent } from './bench-send-template.ts';

const N = Number(process.env.N ?? 20000);
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
