// Tracking planned once per template layout (addTrackingToPieces) gives exactly what a full scan of
// each rendered message gives (addTracking), for friendly templates and hostile ones alike.
import t from 'tap';
import { compileFields, fieldLayout } from '../src/modules/templates/render.ts';
import { addTracking, addTrackingToPieces, hasTrackingPlan } from '../src/modules/templates/tracking-html.ts';

const TEMPLATES: Array<[string, string, boolean]> = [
  // [name, html, expected to be planned (the fast path)]
  ['bench-like', '<html><body><p>Hi {{ event.a }}</p><a href="https://shop.example.com/p/1?utm=x&amp;ref={{ event.b }}">See</a> <a href="{{ event.c }}" data-herald-no-track>v</a></body></html>', true],
  ['dynamic href', '<body><a href="{{ event.a }}">x</a><a href=\'{{ event.b }}\'>y</a></body>', true],
  ['spaces around =', '<a href = "{{ event.a }}" >x</a><a href="https://static.example/">s</a>', true],
  ['duplicate href', '<a href="{{ event.a }}" href="https://second.example/">x</a>', true],
  ['entity across a tag', '<a href="https://e.example/?a=1&am{{ event.a }}">x</a>', true],
  ['body attributes', '<body class="{{ event.a }}">hi {{ event.b }}</body>', true],
  ['title and style', '<head><title>{{ event.a }}</title><style>p{color:{{ event.b }}}</style></head><body><a href="https://s.example/{{ event.c }}">x</a></body>', true],
  ['trimmed', '<p>\n  {{- event.a -}}  \n</p><a href="https://t.example/{{- event.b }}">x</a>', true],
  ['no body', '{{ event.a }}<a href="https://n.example/">x</a>', true],
  ['tag name from a value', '<{{ event.a }} href="https://a.example/">x</a>', false],
  ['closing script from a value', '<script>var s = "</scr{{ event.a }}";</script><a href="https://b.example/">x</a>', false],
  ['value in a comment', '<!-- {{ event.a }} --><a href="https://c.example/">x</a>', false],
  ['value in a conditional comment', '<!--[if mso]><a href="https://mso.example/{{ event.a }}">x</a><![endif]--><a href="https://d.example/">y</a>', false],
  ['static conditional comment', '<!--[if mso]><a href="https://mso.example/">x</a><![endif]--><a href="https://d.example/{{ event.a }}">y</a>', true],
  ['unquoted value', '<a href={{ event.a }}>x</a>', false],
  ['unquoted other attribute', '<a class={{ event.a }} href="https://u.example/">x</a>', false],
  ['raw output', '<p>{{ event.a | raw }}</p><a href="https://r.example/">x</a>', false],
  ['liquid tag', '{% if event.a %}<a href="https://i.example/">x</a>{% endif %}', false],
  ['attribute name from a value', '<a {{ event.a }}="1" href="https://n.example/">x</a>', false],
];

const VALUES = ['https://a.example/x?y=1&z=2', '  HTTPS://UP.example', 'javascript:alert(1)', '"><script>x</script>', "it's", 'p;', 'amp;', 'ipt', '<', '-->', ' a b ', '', '\u0000', '\uE000', 'données', 'http://ok.example/"onmouseover="x'];

t.test('planned tracking equals a full scan', async (t) => {
  const opts = (preheader?: string) => ({ openPixelUrl: 'https://h.example/t/o/tok', clickUrl: (i: number, url: string) => `https://h.example/t/c/${i}?u=${url.length}&x="y"`, ...(preheader ? { preheader } : {}) });
  for (const [name, html, planned] of TEMPLATES) {
    const compiled = compileFields({ html });
    const layout = fieldLayout(compiled, 'html');
    t.equal(Boolean(layout && hasTrackingPlan(layout)), planned, `${name}: ${planned ? 'planned' : 'full scan'}`);
    let n = 0;
    for (const a of VALUES) {
      for (const b of [VALUES[(n * 7) % VALUES.length]!, VALUES[(n * 3 + 1) % VALUES.length]!]) {
        n++;
        const parts: Record<string, string[]> = {};
        const values = await compiled.render({ customer: {}, event: { a, b, c: b }, timeZone: 'UTC' }, parts);
        const plain = await compiled.render({ customer: {}, event: { a, b, c: b }, timeZone: 'UTC' });
        t.equal(values.html, plain.html, `${name}: the same html with or without parts`);
        if (layout && parts.html) {
          t.equal(parts.html.join(''), values.html);
          for (const preheader of [undefined, 'Pre <b>'] as const) {
            t.same(addTrackingToPieces(layout, parts.html, opts(preheader)), addTracking(values.html!, opts(preheader)), `${name}: ${JSON.stringify([a, b])}`);
          }
        } else {
          t.ok(!layout || a === '\u0000' || b === '\u0000', `${name}: pieces unless a value holds the separator`);
        }
      }
    }
  }
});
