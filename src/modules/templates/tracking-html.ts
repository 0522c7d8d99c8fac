// Email HTML post-processing: click tracking, open pixel, preheader; and MJML compilation.
//
// Links are found with htmlparser2's Tokenizer rather than a regex over the document: it knows
// where comments, <script>/<style> bodies and quoted attribute values begin and end (a regex
// happily rewrites an `<a href>` inside a comment or a string), decodes entities by the HTML
// attribute rules, and reports source offsets, so everything except the rewritten href values
// is copied through byte for byte (no DOM round trip reformatting the author's markup).
import { QuoteType, Tokenizer } from 'htmlparser2';
import mjml2html from 'mjml';

export interface TrackingOptions {
  openPixelUrl: string;
  /** The tracked URL for link `index` (its position in the returned `links`). */
  clickUrl: (index: number, originalUrl: string) => string;
  preheader?: string;
}

interface LinkEdit {
  start: number;
  end: number;
  quoted: boolean;
  url: string;
  quote?: QuoteType;
}

interface ScanResult {
  links: LinkEdit[];
  bodyOpenEnd?: number;
  bodyCloseStart?: number;
}

interface Attr {
  name: string;
  nameEnd: number;
  value: string;
  end: number;
  quote: QuoteType;
}

// Tracked URLs (base64url tokens) rarely hold any of these: one test rather than five replaces.
const escapeAttr = (s: string) => (/[&"'<>]/.test(s) ? s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/'/g, '&#39;').replace(/</g, '&lt;').replace(/>/g, '&gt;') : s);
const escapeText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// Where the value of an attribute starts: past `=`, blanks and the opening quote, if any.
function valueStart(src: string, nameEnd: number, quoted: boolean): number {
  let i = nameEnd;
  while (i < src.length && src[i] !== '=') i++;
  i++;
  while (i < src.length && /\s/.test(src[i] ?? '')) i++;
  return quoted ? i + 1 : i;
}

const TRACKED_URL = /^https?:\/\//i;

// `anyUrl`: every href that would be tracked if its value were an http(s) URL (tracking plans).
function trackedHref(attrs: Attr[], anyUrl = false): Attr | undefined {
  if (attrs.some((a) => a.name === 'data-herald-no-track')) return undefined;
  // Browsers use the first of duplicated attributes.
  const href = attrs.find((a) => a.name === 'href');
  if (!href || href.quote === QuoteType.NoValue) return undefined;
  return anyUrl || TRACKED_URL.test(href.value.trim()) ? href : undefined;
}

// `base` is the offset of `src` in the whole document, `top` false inside conditional comments.
function scan(src: string, base: number, top: boolean, out: ScanResult, anyUrl = false): void {
  let tag = '';
  let attrs: Attr[] = [];
  let attrName = '';
  let attrNameEnd = 0;
  let value = '';
  const finishTag = (endIndex: number) => {
    if (tag === 'a') {
      const href = trackedHref(attrs, anyUrl);
      if (href) {
        const quoted = href.quote === QuoteType.Single || href.quote === QuoteType.Double;
        const start = valueStart(src, href.nameEnd, quoted);
        const end = quoted ? href.end - 1 : href.end;
        out.links.push({ start: base + start, end: base + end, quoted, url: href.value.trim(), quote: href.quote });
      }
    } else if (tag === 'body' && top && out.bodyOpenEnd === undefined) {
      out.bodyOpenEnd = base + endIndex + 1;
    }
    tag = '';
  };
  const tokenizer = new Tokenizer(
    { decodeEntities: true },
    {
      onopentagname(start, end) {
        tag = src.slice(start, end).toLowerCase();
        attrs = [];
      },
      onattribname(start, end) {
        attrName = src.slice(start, end).toLowerCase();
        attrNameEnd = end;
        value = '';
      },
      onattribdata(start, end) {
        value += src.slice(start, end);
      },
      onattribentity(codepoint) {
        value += String.fromCodePoint(codepoint);
      },
      onattribend(quote, end) {
        attrs.push({ name: attrName, nameEnd: attrNameEnd, value, end, quote });
      },
      onopentagend: finishTag,
      onselfclosingtag: finishTag,
      onclosetag(start, end) {
        if (top && src.slice(start, end).toLowerCase() === 'body') out.bodyCloseStart = base + src.lastIndexOf('<', start);
      },
      oncomment(start, end, offset) {
        // Outlook-only markup (`<!--[if mso]>...<![endif]-->`) is real HTML for those clients.
        const body = src.slice(start, end - offset);
        if (/^\[if\b[^\]]*\]>/i.test(body)) scan(body, base + start, false, out, anyUrl);
      },
      oncdata() {},
      ondeclaration() {},
      onprocessinginstruction() {},
      ontext() {},
      ontextentity() {},
      onend() {},
    },
  );
  tokenizer.write(src);
  tokenizer.end();
}

/**
 * Rewrites tracked links to `clickUrl(i, original)` (each occurrence gets its own index, `links[i]` is
 * its entity-decoded original URL), appends the open pixel before `</body>` (else at the end) and puts
 * the preheader right after `<body ...>` (else at the start).
 */
export function addTracking(html: string, opts: TrackingOptions): { html: string; links: string[] } {
  const found: ScanResult = { links: [] };
  scan(html, 0, true, found);
  return applyTracking(html, found, opts);
}

function applyTracking(html: string, found: ScanResult, opts: TrackingOptions): { html: string; links: string[] } {
  const edits: Array<{ start: number; end: number; text: string }> = [];
  const links: string[] = [];
  for (const link of found.links) {
    const tracked = escapeAttr(opts.clickUrl(links.length, link.url));
    links.push(link.url);
    edits.push({ start: link.start, end: link.end, text: link.quoted ? tracked : `"${tracked}"` });
  }
  if (opts.preheader !== undefined) {
    const at = found.bodyOpenEnd ?? 0;
    const span =
      '<span style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all">' +
      `${escapeText(opts.preheader)}</span>`;
    edits.push({ start: at, end: at, text: span });
  }
  const pixelAt = found.bodyCloseStart ?? html.length;
  const pixel = `<img src="${escapeAttr(opts.openPixelUrl)}" width="1" height="1" alt="" style="display:none">`;
  edits.push({ start: pixelAt, end: pixelAt, text: pixel });

  edits.sort((a, b) => a.start - b.start);
  let out = '';
  let cursor = 0;
  for (const edit of edits) {
    out += html.slice(cursor, edit.start) + edit.text;
    cursor = edit.end;
  }
  return { html: out + html.slice(cursor), links };
}

// ---- tracking plans: the scan done once per template version ------------------------------------
//
// An HTML field made only of static text and escaped merge tags (no Liquid tags, no `| raw`) has
// the same markup structure for every customer when each merge tag sits where its escaped value
// (no `<`, `>`, `&` except as an entity, no quotes) cannot change how the HTML tokenizes: in text
// not right after a `<` or a partial `</name`, or inside a quoted attribute value. Then the links,
// the <body> tags and their offsets are found once, on a skeleton where every merge tag is a
// placeholder, and each message only maps those offsets onto its own pieces and decodes the
// values of the links that contain a merge tag. Anything else (or any doubt) is a full scan.

/** A field's layout: its static text pieces, and null where a merge tag's output goes. */
export type FieldLayout = ReadonlyArray<string | null>;

interface PlanLink {
  start: number;
  end: number;
  quoted: boolean;
  quote: QuoteType;
  /** Static value: decoded URL and whether it is tracked (known once). */
  url: string;
  tracked: boolean;
  dynamic: boolean;
  /**
   * A dynamic link's value as its static text, decoded once, and the indexes of the pieces whose
   * (escaped) merge tag output goes in between; undefined when it must be decoded whole.
   */
  segments?: Array<string | number>;
}

interface TrackingPlan {
  /** Skeleton offsets where each piece starts and ends. */
  starts: number[];
  ends: number[];
  links: PlanLink[];
  bodyOpenEnd?: number;
  bodyCloseStart?: number;
}

const PH_OPEN = '\uE000';
const PH_CLOSE = '\uE001';
const plans = new WeakMap<FieldLayout, TrackingPlan | null>();

/** Text and quoted attribute value spans of a document (where an escaped value cannot change the tokens). */
function safeSpans(src: string): { text: Array<[number, number]>; attr: Array<[number, number]> } {
  const text: Array<[number, number]> = [];
  const attr: Array<[number, number]> = [];
  let pending: Array<[number, number]> = [];
  const noop = () => {};
  const tokenizer = new Tokenizer(
    { decodeEntities: true },
    {
      onattribname: () => void (pending = []),
      onattribdata: (start, end) => void pending.push([start, end]),
      onattribentity: noop,
      onattribend(quote) {
        if (quote === QuoteType.Double || quote === QuoteType.Single) attr.push(...pending);
        pending = [];
      },
      ontext: (start, end) => void text.push([start, end]),
      ontextentity: noop, onopentagname: noop, onopentagend: noop, onselfclosingtag: noop, onclosetag: noop, oncomment: noop,
      oncdata: noop, ondeclaration: noop, onprocessinginstruction: noop, onend: noop,
    },
  );
  tokenizer.write(src);
  tokenizer.end();
  return { text, attr };
}

function buildPlan(layout: FieldLayout): TrackingPlan | null {
  if (layout.length === 0 || !layout.some((p) => p === null)) return null;
  if (layout.some((p) => p !== null && (p.includes(PH_OPEN) || p.includes(PH_CLOSE)))) return null;
  let skeleton = '';
  const starts: number[] = [];
  const ends: number[] = [];
  const holes: Array<[number, number]> = [];
  layout.forEach((piece, i) => {
    starts.push(skeleton.length);
    if (piece === null) skeleton += `${PH_OPEN}${i}${PH_CLOSE}`;
    else skeleton += piece;
    ends.push(skeleton.length);
    if (piece === null) holes.push([starts[i]!, ends[i]!]);
  });
  const spans = safeSpans(skeleton);
  const within = (list: Array<[number, number]>, [s, e]: [number, number]) => list.some(([a, b]) => a <= s && e <= b);
  for (const hole of holes) {
    const inAttr = within(spans.attr, hole);
    const inText = within(spans.text, hole);
    if (!inAttr && !inText) return null;
    // Right after `<`, `</` or a partial tag name, a value could start a tag (or end a <script>).
    if (inText && /<\/?[A-Za-z]*$/.test(skeleton.slice(Math.max(0, hole[0] - 32), hole[0]))) return null;
  }
  const found: ScanResult = { links: [] };
  scan(skeleton, 0, true, found, true);
  const insideHole = (p: number) => holes.some(([s, e]) => s < p && p < e);
  if ((found.bodyOpenEnd !== undefined && insideHole(found.bodyOpenEnd)) || (found.bodyCloseStart !== undefined && insideHole(found.bodyCloseStart))) return null;
  const links: PlanLink[] = [];
  for (const link of found.links) {
    if (insideHole(link.start) || insideHole(link.end)) return null;
    const dynamic = holes.some(([s, e]) => link.start <= s && e <= link.end);
    // A merge tag in an unquoted value cannot pass the checks above; stay safe all the same.
    if (dynamic && !link.quoted) return null;
    const quote = link.quote ?? QuoteType.Double;
    const segments = dynamic ? linkSegments(skeleton, link, layout, starts, ends, quote) : undefined;
    links.push({ start: link.start, end: link.end, quoted: link.quoted, quote, url: link.url, tracked: !dynamic && TRACKED_URL.test(link.url), dynamic, ...(segments ? { segments } : {}) });
  }
  return { starts, ends, links, ...(found.bodyOpenEnd !== undefined ? { bodyOpenEnd: found.bodyOpenEnd } : {}), ...(found.bodyCloseStart !== undefined ? { bodyCloseStart: found.bodyCloseStart } : {}) };
}

/**
 * The segments of a dynamic link (see PlanLink), or undefined when its value cannot be decoded
 * piece by piece: static text that ends in an unfinished character reference (`&am`) right before a
 * merge tag, whose output could finish it. A merge tag's output is escaped (only whole `&amp;`,
 * `&lt;`, `&gt;`, `&#34;`, `&#39;`), so it never leaves one unfinished for the text after it.
 */
function linkSegments(skeleton: string, link: LinkEdit, layout: FieldLayout, starts: number[], ends: number[], quote: QuoteType): Array<string | number> | undefined {
  const segments: Array<string | number> = [];
  for (let i = 0; i < layout.length; i++) {
    const from = Math.max(starts[i]!, link.start);
    const to = Math.min(ends[i]!, link.end);
    if (from >= to) continue;
    if (layout[i] === null) {
      segments.push(i);
      continue;
    }
    const raw = skeleton.slice(from, to);
    if (to === ends[i] && layout[i + 1] === null && /&[#\w]*$/.test(raw)) return undefined;
    segments.push(decodeAttribute(raw, quote));
  }
  return segments;
}

const UNESCAPES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&#34;': '"', '&#39;': "'" };
/** A merge tag's escaped output, decoded as the HTML tokenizer decodes it. */
const unescapeOutput = (s: string) => (s.includes('&') ? s.replace(/&(?:amp|lt|gt|#34|#39);/g, (e) => UNESCAPES[e]!) : s);

/** Whether addTrackingToPieces scans this layout once (true) or each message in full (false). */
export function hasTrackingPlan(layout: FieldLayout): boolean {
  let plan = plans.get(layout);
  if (plan === undefined) plans.set(layout, (plan = buildPlan(layout)));
  return plan !== null;
}

/** The entity-decoded value of a quoted attribute, as the scan reads it. */
function decodeAttribute(raw: string, quote: QuoteType): string {
  const q = quote === QuoteType.Single ? "'" : '"';
  const src = `<a href=${q}${raw}${q}>`;
  let value = '';
  const noop = () => {};
  const tokenizer = new Tokenizer(
    { decodeEntities: true },
    {
      onattribdata: (start, end) => void (value += src.slice(start, end)),
      onattribentity: (codepoint) => void (value += String.fromCodePoint(codepoint)),
      onattribname: noop, onattribend: noop, ontext: noop, ontextentity: noop, onopentagname: noop, onopentagend: noop, onselfclosingtag: noop, onclosetag: noop,
      oncomment: noop, oncdata: noop, ondeclaration: noop, onprocessinginstruction: noop, onend: noop,
    },
  );
  tokenizer.write(src);
  tokenizer.end();
  return value;
}

/**
 * addTracking() for html rendered from `layout`: `pieces[i]` is the static text or the merge tag
 * output of piece i (their concatenation is the html). Same result as addTracking(pieces.join('')),
 * with the document scanned once per layout rather than once per message. `html`: the pieces
 * already joined, when the caller has them.
 */
export function addTrackingToPieces(layout: FieldLayout, pieces: readonly string[], opts: TrackingOptions, html = pieces.join('')): { html: string; links: string[] } {
  let plan = plans.get(layout);
  if (plan === undefined) plans.set(layout, (plan = buildPlan(layout)));
  if (!plan || pieces.length !== layout.length) return addTracking(html, opts);
  // Offsets in the skeleton -> offsets in this message's html.
  const at: number[] = new Array(pieces.length);
  for (let i = 0, pos = 0; i < pieces.length; i++) {
    at[i] = pos;
    pos += pieces[i]!.length;
  }
  const { starts, ends } = plan;
  const map = (p: number): number => {
    for (let i = 0; i < starts.length; i++) {
      if (p > ends[i]!) continue;
      if (layout[i] !== null) return at[i]! + (p - starts[i]!);
      return p === starts[i] ? at[i]! : at[i]! + pieces[i]!.length;
    }
    return html.length;
  };
  const found: ScanResult = { links: [] };
  for (const link of plan.links) {
    const start = map(link.start);
    const end = map(link.end);
    let url = link.url;
    if (link.segments) {
      url = '';
      for (const segment of link.segments) url += typeof segment === 'number' ? unescapeOutput(pieces[segment]!) : segment;
      url = url.trim();
      if (!TRACKED_URL.test(url)) continue;
    } else if (link.dynamic) {
      url = decodeAttribute(html.slice(start, end), link.quote).trim();
      if (!TRACKED_URL.test(url)) continue;
    } else if (!link.tracked) continue;
    found.links.push({ start, end, quoted: link.quoted, url });
  }
  if (plan.bodyOpenEnd !== undefined) found.bodyOpenEnd = map(plan.bodyOpenEnd);
  if (plan.bodyCloseStart !== undefined) found.bodyCloseStart = map(plan.bodyCloseStart);
  return applyTracking(html, found, opts);
}

/**
 * MJML to HTML. Validation is soft (errors are returned, the HTML is still produced) and
 * `mj-include` is ignored so a template can never read the server's disk. mjml 5 is async.
 * Input mjml cannot parse at all gives empty html and one error with line 0 (unknown).
 */
export async function compileMjml(mjml: string): Promise<{ html: string; errors: { line: number; message: string }[] }> {
  try {
    const result = await mjml2html(mjml, { validationLevel: 'soft', ignoreIncludes: true, keepComments: true });
    return { html: result.html, errors: result.errors.map((e) => ({ line: e.line, message: e.message })) };
  } catch (e) {
    return { html: '', errors: [{ line: 0, message: e instanceof Error ? e.message : String(e) }] };
  }
}
