// The template both send benches use: bench:send's personalised email (~3 KB of HTML, five tracked
// links, Liquid merge tags with defaults, a text part), and bench-send-cpu.ts's in-process stages.
export const PRODUCTS = [
  ['Trail running shoes', 'Grippy, light and ready for wet rock: the pair our testers reached for all autumn.'],
  ['Merino base layer', 'Warm when it is cold, cool when it is not, and it never smells like last week.'],
  ['Insulated bottle', 'Keeps tea hot for twelve hours and water cold for a whole day on the trail.'],
  ['Headlamp 400 lm', 'Rechargeable over USB-C, with a red mode that keeps your night vision intact.'],
  ['Packable rain shell', 'Folds into its own pocket and weighs less than an apple. Taped seams throughout.'],
] as const;

export function templateContent(): { subject: string; html: string; text: string } {
  const link = (i: number) => `https://shop.example.com/p/${1040 + i}?utm_source=herald&amp;utm_medium=email&amp;utm_campaign=weekly-picks&amp;ref={{ customer.external_id }}`;
  const cards = PRODUCTS.map(
    ([name, blurb], i) => `
<tr><td style="padding:16px 24px;border-bottom:1px solid #eee">
<h2 style="margin:0 0 6px;font-size:18px;color:#222">${name}</h2>
<p style="margin:0 0 12px;font-size:14px;color:#555">${blurb}</p>
<a href="${link(i)}" style="padding:8px 16px;background:#1a73e8;color:#fff">See it</a>
</td></tr>`,
  ).join('');
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
  const text = [
    'Hi {{ customer.first_name | default: "there" }},',
    '',
    'Five things {{ customer.tier }} members in {{ customer.city | default: "your area" }} liked this week:',
    ...PRODUCTS.map(([name], i) => `- ${name}: ${link(i).replaceAll('&amp;', '&')}`),
    '',
    'Unsubscribe: {{ unsubscribe_url }}',
  ].join('\n');
  return { subject: '{{ customer.first_name | default: "Hi" }}, five picks for {{ customer.tier }} members', html, text };
}
