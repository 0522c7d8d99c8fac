// Template rendering pieces that need no database: Liquid with limits, SMS segments, link tracking, MJML.
import t from 'tap';
import { compileFields, customerContext, missingVariables, plannedFields, TemplateError, type RenderContext } from '../src/modules/templates/render.ts';
import { smsSegments } from '../src/modules/templates/sms.ts';
import { addTracking, compileMjml } from '../src/modules/templates/tracking-html.ts';

const customer = customerContext({
  id: 'c1', externalId: 'u1', email: 'ann@example.com', phone: null, timeZone: 'Europe/Paris', locale: 'fr',
  custom: { first_name: 'Ann', email: 'spoof@example.com', birthday: '1990-05-17', tags: ['a', 'b'], nothing: null },
  createdAt: '2026-01-02T03:04:05.000Z',
});
const ctx = (extra: Partial<RenderContext> = {}): RenderContext => ({ customer, timeZone: 'Europe/Paris', ...extra });
const render = async (src: string, c: RenderContext = ctx()) => (await compileFields({ f: src }).render(c))['f'];
// Resolves to the TemplateError a compile or render raised, with how long it took.
async function failure(fields: Record<string, string>, c: RenderContext = ctx()): Promise<{ error: TemplateError; ms: number }> {
  const start = performance.now();
  try {
    await compileFields(fields).render(c);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    return { error, ms: performance.now() - start };
  }
  throw new Error('expected a TemplateError');
}

t.test('customerContext: snake_case profile, custom fields on top, profile wins, raw custom kept', async (t) => {
  t.match(customer, { id: 'c1', external_id: 'u1', email: 'ann@example.com', phone: null, time_zone: 'Europe/Paris', locale: 'fr', created_at: '2026-01-02T03:04:05.000Z', first_name: 'Ann' });
  t.equal(customer['email'], 'ann@example.com', 'a custom field cannot shadow a profile field');
  t.same(customer['custom'], { first_name: 'Ann', email: 'spoof@example.com', birthday: '1990-05-17', tags: ['a', 'b'], nothing: null });
});

t.test('renders every field asynchronously from the context', async (t) => {
  const compiled = compileFields({ subject: 'Hi {{ customer.first_name }}', text: '{{ event.total }} {{ promo_code }} {{ points_balance }} {{ workspace.name }} {{ customer.custom.email }}' });
  const pending = compiled.render(ctx({ event: { type: 'order', total: 42 }, promo_code: 'P1', points_balance: 7, workspace: { name: 'Shop' } }));
  t.ok(pending instanceof Promise);
  t.same(await pending, { subject: 'Hi Ann', text: '42 P1 7 Shop spoof@example.com' });
  t.equal(await render('[{{ customer.nope }}]'), '[]', 'unknown variables render empty');
});

t.test('variables lists the merge tags from static analysis, not locals', async (t) => {
  const compiled = compileFields({
    subject: '{{ customer.first_name | default: "there" }} {{ event.total }}',
    html: '{% assign e = customer.email %}{{ e }}{% for i in event.items %}{{ i.name }}{% endfor %}{{ unsubscribe_url }}{{ customer[key] }}{{ event.items[0].sku }}',
  });
  t.same(compiled.variables, ['customer', 'customer.email', 'customer.first_name', 'event.items', 'event.items.0.sku', 'event.total', 'key', 'unsubscribe_url']);
});

t.test('missingVariables reports null and undefined merge tags, default-filtered ones included', async (t) => {
  const compiled = compileFields({ a: '{{ customer.first_name }}{{ customer.nothing }}{{ customer.last_name | default: "x" }}{{ event.total }}{{ customer.tags.first }}{{ customer.tags.size }}{{ view_url }}' });
  t.same(missingVariables(compiled, ctx({ view_url: 'https://v.test' })).sort(), ['customer.last_name', 'customer.nothing', 'event.total']);
  t.same(missingVariables(compiled, ctx({ event: { type: 'x', total: 0 }, view_url: 'https://v.test' })).sort(), ['customer.last_name', 'customer.nothing']);
});

t.test('syntax errors name the field, line and column', async (t) => {
  const cases: Array<[string, RegExp, number, number]> = [
    ['line one\n  {{ customer.email | shout }}', /undefined filter: shout/, 2, 3],
    ['a\nb\n{% if customer.email %}', /not closed/, 3, 1],
    ['x\n{% include "other" %}', /include %} is not supported/, 2, 1],
    ['{% render "other" %}', /render %} is not supported/, 1, 1],
    ['{% layout "base" %}', /layout %} is not supported/, 1, 1],
  ];
  for (const [src, message, line, column] of cases) {
    const { error } = await failure({ subject: 'ok', body: src });
    t.match(error, { field: 'body', kind: 'syntax', line, column, message }, src);
    t.match(error.message, /^body: .*\(line \d+, column \d+\)$/);
  }
  const tooLong = await failure({ big: 'x'.repeat(500_001) });
  t.match(tooLong.error, { field: 'big', kind: 'limit' }, 'the parse limit');
});

t.test('runaway templates are stopped by the limits, quickly', async (t) => {
  const cases: Array<[string, string]> = [
    ['huge range', '{% for i in (1..100000000) %}x{% endfor %}'],
    ['nested loops', 'a\n{% for i in (1..5000) %}{% for j in (1..5000) %}x{% endfor %}{% endfor %}'],
    ['doubling append', '{% assign s = "xxxxxxxxxx" %}{% for i in (1..100) %}{% assign s = s | append: s %}{% endfor %}{{ s }}'],
    ['growing append', '{% assign s = "" %}{% for i in (1..100000) %}{% assign s = s | append: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" %}{% endfor %}{{ s }}'],
  ];
  for (const [name, src] of cases) {
    const { error, ms } = await failure({ subject: 'fine', html: src }, ctx({ event: { type: 'x', blob: 'y'.repeat(1000) } }));
    t.match(error, { field: 'html', kind: 'limit' }, name);
    t.ok(ms < 2000, `${name} stopped in ${Math.round(ms)} ms`);
  }
  // 600k characters but 1.2 MB of UTF-8: under the allocation limit, caught by the output cap.
  const big = await failure({ html: '{% for i in (1..600) %}{{ event.blob }}{% endfor %}' }, ctx({ event: { blob: 'é'.repeat(1000) } }));
  t.match(big.error, { field: 'html', kind: 'limit', message: /rendered output is over 1048576 bytes/ });
  const nested = await failure({ html: 'a\n{% for i in (1..5000) %}{% for j in (1..5000) %}x{% endfor %}{% endfor %}' });
  t.match(nested.error, { line: 2, message: /render limit exceeded/ }, 'limit errors carry a position too');
});

t.test('safety options: own properties only, Liquid truthiness', async (t) => {
  t.equal(await render('[{{ customer.constructor }}{{ customer.toString }}{{ customer.__proto__ }}]'), '[]');
  t.equal(await render('{% if event.zero %}0 is true{% endif %}/{% if event.empty %}"" is true{% endif %}', ctx({ event: { zero: 0, empty: '' } })), '0 is true/"" is true');
});

t.test('local_date formats in the context time zone, across DST', async (t) => {
  const fmt = '{{ event.at | local_date: "%d %B %Y %H:%M" }}';
  t.equal(await render(fmt, ctx({ event: { at: '2026-03-29T00:30:00Z' } })), '29 March 2026 01:30', 'before the switch: UTC+1');
  t.equal(await render(fmt, ctx({ event: { at: '2026-03-29T01:30:00Z' } })), '29 March 2026 03:30', 'after the switch: UTC+2');
  t.equal(await render(fmt, ctx({ event: { at: new Date('2026-03-29T01:30:00Z') }, timeZone: 'America/New_York' })), '28 March 2026 21:30', 'a Date, another zone');
  t.equal(await render('{{ customer.birthday | local_date: "%d %B %Y" }}', ctx({ timeZone: 'America/Los_Angeles' })), '17 May 1990', 'a calendar date keeps its day');
  t.equal(await render('{{ "now" | local_date: "%Y" }}'), String(new Date().getUTCFullYear()));
  const hostZone = process.env.TZ;
  process.env.TZ = 'Asia/Tokyo';
  try {
    t.equal(await render('{{ event.at | date: "%H:%M" }}', ctx({ event: { at: '2026-03-29T01:30:00Z' } })), '01:30', 'the built-in date filter is UTC, whatever the host zone');
  } finally {
    if (hostZone === undefined) delete process.env.TZ;
    else process.env.TZ = hostZone;
  }
  // A field rendered by its plan first, then one through liquidjs: the zone still reaches the filter.
  const mixed = compileFields({ subject: 'Hi {{ customer.first_name }}', text: '{{ event.at | local_date: "%H:%M" }}' });
  t.same(plannedFields(mixed), ['subject']);
  t.same(await mixed.render(ctx({ event: { at: '2026-03-29T01:30:00Z' } })), { subject: 'Hi Ann', text: '03:30' });
  const { error } = await failure({ text: 'x\n\n  {{ "now" | local_date: "%Y" }}' }, ctx({ timeZone: 'Mars/Olympus' }));
  t.match(error, { field: 'text', kind: 'render', line: 3, column: 3, message: /unknown time zone "Mars\/Olympus"/ });
});

t.test('smsSegments', async (t) => {
  const cases: Array<[string, string, 'GSM-7' | 'UCS-2', number, number]> = [
    ['empty', '', 'GSM-7', 0, 0],
    ['160 GSM', 'a'.repeat(160), 'GSM-7', 160, 1],
    ['161 GSM', 'a'.repeat(161), 'GSM-7', 161, 2],
    ['306 GSM', 'a'.repeat(306), 'GSM-7', 306, 2],
    ['307 GSM', 'a'.repeat(307), 'GSM-7', 307, 3],
    ['GSM accents and symbols', 'Çé@£$¥ÄÖÑÜ§¿äöñüà\n\r', 'GSM-7', 19, 1],
    ['extension counts 2', '€'.repeat(80), 'GSM-7', 160, 1],
    ['extension over 160', '€^{}\\[~]|'.repeat(9), 'GSM-7', 162, 2],
    ['extension never split', 'a'.repeat(152) + '€' + 'a'.repeat(152), 'GSM-7', 306, 3],
    ['70 UCS-2', 'ж'.repeat(70), 'UCS-2', 70, 1],
    ['71 UCS-2', 'ж'.repeat(71), 'UCS-2', 71, 2],
    ['134 UCS-2', 'ж'.repeat(134), 'UCS-2', 134, 2],
    ['135 UCS-2', 'ж'.repeat(135), 'UCS-2', 135, 3],
    ['one emoji makes UCS-2, 2 units', 'hi 😀', 'UCS-2', 5, 1],
    ['surrogate pair never split', 'ж'.repeat(66) + '😀' + 'ж'.repeat(66), 'UCS-2', 134, 3],
    ['tab is not GSM', 'a\tb', 'UCS-2', 3, 1],
  ];
  for (const [name, text, encoding, characters, segments] of cases) t.same(smsSegments(text), { encoding, characters, segments }, name);
});

const track = (html: string, preheader?: string) =>
  addTracking(html, { openPixelUrl: 'https://t.test/o?m=1&x=2', clickUrl: (i, url) => `https://t.test/c/${i}?u=${encodeURIComponent(url)}`, ...(preheader === undefined ? {} : { preheader }) });

t.test('addTracking rewrites http(s) links, each occurrence with its own index', async (t) => {
  const html =
    '<html><body class="x">' +
    `<a href="https://a.test/?q=1&amp;r=2">1</a><A class="b" HREF='http://b.test/'>2</A><a href="https://a.test/?q=1&amp;r=2">3</a>` +
    '<a target=_blank href=https://c.test/x>4</a><a href=" https://d.test/ ">5</a>' +
    '<a href="mailto:x@y.test">m</a><a href="tel:+331">t</a><a href="#top">h</a><a href="/rel">r</a><a href="">e</a><a name="n">n</a>' +
    '<a data-herald-no-track href="https://skip.test/">s</a>' +
    '<!-- <a href="https://comment.test/">c</a> --><script>var s = \'<a href="https://script.test/">\';</script>' +
    '<!--[if mso]><a href="https://mso.test/">o</a><![endif]-->' +
    '</body></html>';
  const out = track(html);
  t.same(out.links, ['https://a.test/?q=1&r=2', 'http://b.test/', 'https://a.test/?q=1&r=2', 'https://c.test/x', 'https://d.test/', 'https://mso.test/']);
  const c = (i: number) => `https://t.test/c/${i}?u=${encodeURIComponent(out.links[i]!)}`;
  t.ok(out.html.includes(`<a href="${c(0)}">1</a>`), 'double quotes');
  t.ok(out.html.includes(`<A class="b" HREF='${c(1)}'>2</A>`), 'single quotes, upper case, other attribute first');
  t.ok(out.html.includes(`<a href="${c(2)}">3</a>`), 'a duplicate URL gets its own index');
  t.ok(out.html.includes(`<a target=_blank href="${c(3)}">4</a>`), 'unquoted value gets quoted');
  t.ok(out.html.includes(`<!--[if mso]><a href="${c(5)}">o</a><![endif]-->`), 'Outlook conditional markup is tracked');
  for (const kept of ['href="mailto:x@y.test"', 'href="tel:+331"', 'href="#top"', 'href="/rel"', 'href=""', '<a data-herald-no-track href="https://skip.test/">', 'https://comment.test/', 'https://script.test/']) {
    t.ok(out.html.includes(kept), `untouched: ${kept}`);
  }
  t.ok(out.html.endsWith('<img src="https://t.test/o?m=1&amp;x=2" width="1" height="1" alt="" style="display:none"></body></html>'), 'pixel just before </body>');
  t.notOk(out.html.includes('display:none;font-size'), 'no preheader unless asked');
});

t.test('addTracking: preheader and pixel placement with and without a body tag', async (t) => {
  const withBody = track('<html><head><title>T</title></head><BODY style="m">Hi <a href="https://x.test">x</a></BODY></html>', 'Sale <today> & more');
  t.match(withBody.html, /^<html><head><title>T<\/title><\/head><BODY style="m"><span style="display:none[^"]*">Sale &lt;today&gt; &amp; more<\/span>Hi <a href="https:\/\/t\.test\/c\/0\?u=[^"]+">x<\/a><img [^>]+><\/BODY><\/html>$/);
  const fragment = track('<p>Hi <a href="https://x.test">x</a></p>', 'Pre');
  t.match(fragment.html, /^<span style="display:none[^"]*">Pre<\/span><p>Hi <a href="https:\/\/t\.test\/c\/0\?u=https%3A%2F%2Fx\.test">x<\/a><\/p><img src="https:\/\/t\.test\/o\?m=1&amp;x=2" width="1" height="1" alt="" style="display:none">$/);
  t.same(fragment.links, ['https://x.test']);
});

t.test('compileMjml', async (t) => {
  const ok = await compileMjml('<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ customer.first_name }}</mj-text><mj-button href="https://shop.test/?a=1&amp;b=2">Shop</mj-button></mj-column></mj-section></mj-body></mjml>');
  t.same(ok.errors, []);
  t.match(ok.html, /<!doctype html>/i);
  t.ok(ok.html.includes('Hello {{ customer.first_name }}'), 'Liquid passes through untouched');
  t.same(track(ok.html).links, ['https://shop.test/?a=1&b=2'], 'its HTML can be tracked');
  const bad = await compileMjml('<mjml><mj-body>\n<mj-section>\n<mj-column><mj-text colour="red">x</mj-text></mj-column></mj-section></mj-body></mjml>');
  t.match(bad.errors, [{ line: 3, message: /colour/ }]);
  t.ok(bad.html.length > 0, 'soft validation still renders');
  const broken = await compileMjml('not mjml');
  t.match(broken, { html: '', errors: [{ line: 0, message: String }] });
  const include = await compileMjml('<mjml><mj-body><mj-include path="/etc/passwd" /></mj-body></mjml>');
  t.notOk(include.html.includes('root:'), 'mj-include never reads the disk');
});

t.test('merge tags in HTML fields are escaped; | raw opts out; text fields are left as they are', async (t) => {
  const c = compileFields({ subject: 'Hi {{ customer.name }}', html: '<p>{{ customer.name }}</p><p>{{ customer.name | raw }}</p>' });
  const out = await c.render({ customer: { name: '<script>alert(1)</script> & co' }, timeZone: 'UTC' });
  t.equal(out.html, '<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p><p><script>alert(1)</script> & co</p>');
  t.equal(out.subject, 'Hi <script>alert(1)</script> & co', 'a subject is text, not HTML');
});

// A render's fields, or its error's message.
const outcome = (c: ReturnType<typeof compileFields>, scope: RenderContext, parts?: Record<string, string[]>) =>
  c.render(scope, parts).catch((error: unknown) => `error: ${(error as Error).message}`);

t.test('plain merge tags are rendered without the interpreter, exactly as liquidjs renders them', async (t) => {
  const plain = {
    subject: '{{ customer.first_name | default: "there" }}, {{ customer.tier }}! {{ event.total | default: 7 }}',
    html: '<p title="{{ customer["odd key"] }}">Hi {{ customer.first_name | default: "<b>you</b> & co" }}</p>{{ unsubscribe_url }}{{ customer.a.b.c }}{{ x }}',
    text: '{{ customer.first_name }} {{ customer.a.b }} {{ event.total }}',
  };
  const fast = compileFields(plain);
  const reference = compileFields(plain, { interpreterOnly: true });
  t.same(plannedFields(fast).sort(), ['html', 'subject', 'text'], 'every field has a plan');
  t.same(plannedFields(reference), []);
  const nullProto = Object.assign(Object.create(null) as Record<string, unknown>, { b: 'from a null prototype' });
  const values: unknown[] = [
    'Ann', '', ' ', '<script>"x" & \'y\'</script>', 'é\u0000😀', null, undefined, 0, -0, 1.5, -3, 1e21, true, false,
    ['a', 'b'], [], { b: 'nested' }, { b: { c: 'deep' } }, { b: null }, nullProto, new Date(0), 'x'.repeat(5000),
  ];
  const scopes: RenderContext[] = [];
  for (const v of values) {
    scopes.push({ customer: { first_name: v, tier: v, 'odd key': v, a: v }, event: { total: v }, unsubscribe_url: 'https://u.test/?a=1&b="2"', timeZone: 'UTC' });
  }
  // Keys an object can only own when it comes from JSON, and the prototype's own names.
  scopes.push({ customer: JSON.parse('{"__proto__": "own", "constructor": "c", "first_name": {"__proto__": {"x": 1}}}'), timeZone: 'UTC' });
  scopes.push({ customer: {}, event: undefined, timeZone: 'UTC' });
  for (const scope of scopes) {
    const what = JSON.stringify(scope.customer)?.slice(0, 60) ?? String(scope.customer);
    const parts: Record<string, string[]> = {};
    const refParts: Record<string, string[]> = {};
    t.same(await outcome(fast, scope, parts), await outcome(reference, scope, refParts), what);
    t.same(parts, refParts, `the html in the same pieces: ${what}`);
  }
  const protoKeys = compileFields({ f: '[{{ constructor }}{{ customer.constructor }}{{ customer.__proto__ }}{{ toString }}]' });
  t.same(plannedFields(protoKeys), ['f']);
  t.equal((await protoKeys.render({ customer: {}, timeZone: 'UTC' })).f, '[]', 'inherited names are never read');
});

t.test('anything beyond plain merge tags is left to liquidjs', async (t) => {
  for (const src of [
    '{% if customer.vip %}VIP{% endif %}', '{{ customer.name | upcase }}', '{{ customer.name | raw }}', '{{ customer.tags.size }}', '{{ customer.tags.first }}',
    '{{ customer.tags[0] }}', '{{ customer[key] }}', '{{ "literal" }}', '{{ customer.name | default: customer.email }}', '{{ customer.n | default: "a" | default: "b" }}',
    '{{ customer.b | default: false, allow_false: true }}', '{{ customer.name | local_date: "%Y" }}',
  ]) {
    t.same(plannedFields(compileFields({ html: src, text: src })), [], src);
  }
  // Values the plan declines: the field goes through liquidjs, with its result.
  const fields = { html: '<i>{{ customer.v }}</i>', text: '{{ customer.v | default: "none" }}' };
  for (const [what, v] of Object.entries({ array: ['a', 'b'], object: { k: 1 }, date: new Date(0), bigint: 10n, 'null prototype': Object.create(null) as object })) {
    const scope = { customer: { v }, timeZone: 'UTC' };
    t.same(await outcome(compileFields(fields), scope), await outcome(compileFields(fields, { interpreterOnly: true }), scope), what);
  }
  // The allocation limit stays liquidjs's: a value past it is rendered (and refused) by liquidjs.
  const { error } = await failure({ html: '{{ customer.a }}{{ customer.a }}' }, { customer: { a: 'a'.repeat(5_000_001) }, timeZone: 'UTC' });
  t.match(error, { field: 'html', kind: 'limit', message: /memory alloc limit exceeded/ });
});
