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

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/'/g, '&#39;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const escapeText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

// Where the value of an attribute starts: past `=`, blanks and the opening quote, if any.
function valueStart(src: string, nameEnd: number, quoted: boolean): number {
  let i = nameEnd;
  while (i < src.length && src[i] !== '=') i++;
  i++;
  while (i < src.length && /\s/.test(src[i] ?? '')) i++;
  return quoted ? i + 1 : i;
}

function trackedHref(attrs: Attr[]): Attr | undefined {
  if (attrs.some((a) => a.name === 'data-herald-no-track')) return undefined;
  // Browsers use the first of duplicated attributes.
  const href = attrs.find((a) => a.name === 'href');
  if (!href || href.quote === QuoteType.NoValue) return undefined;
  return /^https?:\/\//i.test(href.value.trim()) ? href : undefined;
}

// `base` is the offset of `src` in the whole document, `top` false inside conditional comments.
function scan(src: string, base: number, top: boolean, out: ScanResult): void {
  let tag = '';
  let attrs: Attr[] = [];
  let attrName = '';
  let attrNameEnd = 0;
  let value = '';
  const finishTag = (endIndex: number) => {
    if (tag === 'a') {
      const href = trackedHref(attrs);
      if (href) {
        const quoted = href.quote === QuoteType.Single || href.quote === QuoteType.Double;
        const start = valueStart(src, href.nameEnd, quoted);
        const end = quoted ? href.end - 1 : href.end;
        out.links.push({ start: base + start, end: base + end, quoted, url: href.value.trim() });
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
        if (/^\[if\b[^\]]*\]>/i.test(body)) scan(body, base + start, false, out);
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
