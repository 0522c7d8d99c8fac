// The content as sent, stored lean. An email's html is its template version's layout (the
// static text, the same for every message of that version: most of the bytes) with this
// message's merge-tag values in it and its tracking put in by addTrackingToPieces. So a message
// stores the values, not the html (a few hundred bytes, not kilobytes per message, and no
// kilobytes of JSON written, checked, compressed and logged per send), and the html is put back
// together when it is read ("view", the API, GraphQL) by the same code from the same immutable
// template version, with the same signed tokens. Everything else (subject, text, from, links) is
// stored as sent. An html without a layout (Liquid tags, `| raw`) is stored whole, as before.
//
// Exact as long as HERALD_PUBLIC_URL and HERALD_SECRET are unchanged: after either changes, the
// view's tracking links are the ones Herald signs now (the ones that work). A layout is
// fingerprinted: html whose layout can no longer be rebuilt (a future change in how templates
// compile) is reported as such, never shown wrong.
import { createHash } from 'node:crypto';
import type { Deps } from '../../deps.ts';
import { compileFields, fieldLayout, type CompiledTemplate } from '../templates/render.ts';
import { addTrackingToPieces, type FieldLayout } from '../templates/tracking-html.ts';
import { versionFields } from '../templates/templates.service.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { trackingUrls } from './compose.ts';

/** Where a lean message's html would be: its layout's fingerprint and the values of its merge tags, in order. */
interface HtmlFromLayout {
  layout: string;
  values: string[];
}

const fingerprints = new WeakMap<FieldLayout, string>();

/** The layout's static pieces and gaps, hashed (once per layout object). */
function layoutFingerprint(layout: FieldLayout): string {
  let fingerprint = fingerprints.get(layout);
  if (fingerprint === undefined) {
    const hash = createHash('sha256');
    // A layout's static pieces never hold U+0000 (layoutOf), so this encoding is unambiguous.
    for (const piece of layout) hash.update(piece === null ? '\u0000v' : `\u0000s${piece}`);
    fingerprint = hash.digest('base64url').slice(0, 22);
    fingerprints.set(layout, fingerprint);
  }
  return fingerprint;
}

/**
 * What is stored of `rendered`: for an email whose html came from a layout, `html` gives way to
 * `htmlFromLayout` (in its place, so the keys come back in their order).
 */
export function leanContent(rendered: Record<string, unknown>, htmlPieces: { layout: FieldLayout; pieces: readonly string[] } | undefined): Record<string, unknown> {
  if (!htmlPieces || typeof rendered.html !== 'string') return rendered;
  const { layout, pieces } = htmlPieces;
  if (pieces.length !== layout.length) return rendered;
  const values: string[] = [];
  for (let i = 0; i < layout.length; i++) if (layout[i] === null) values.push(pieces[i]!);
  const lean: Record<string, unknown> = {};
  for (const key of Object.keys(rendered)) {
    if (key === 'html') lean.htmlFromLayout = { layout: layoutFingerprint(layout), values } satisfies HtmlFromLayout;
    else lean[key] = rendered[key];
  }
  return lean;
}

export interface StoredMessage {
  workspace_id: string;
  id: string;
  template_id: string;
  template_version: number;
  rendered: Record<string, unknown> | null;
}

// Template versions are immutable: a compiled one is good until it falls out of this cache.
const CACHE_SIZE = 200;
const compiledVersions = new Map<string, Promise<{ compiled: CompiledTemplate } | null>>();

function compiledVersion(deps: Pick<Deps, 'database'>, m: StoredMessage) {
  const key = `${m.workspace_id}/${m.template_id}/${m.template_version}`;
  let entry = compiledVersions.get(key);
  if (entry) {
    // Most recently used last.
    compiledVersions.delete(key);
    compiledVersions.set(key, entry);
    return entry;
  }
  entry = (async () => {
    const [row] = await deps.database.sql<{ content: Record<string, unknown>; channel: string }[]>`
      select v.content, t.channel from template_versions v join templates t on t.workspace_id = v.workspace_id and t.id = v.template_id
      where v.workspace_id = ${m.workspace_id} and v.template_id = ${m.template_id} and v.version = ${m.template_version}`;
    if (!row) return null;
    return { compiled: compileFields(versionFields(row.channel as TemplateChannel, row.content).fields) };
  })();
  // A failed read is not remembered.
  entry.catch(() => compiledVersions.delete(key));
  compiledVersions.set(key, entry);
  if (compiledVersions.size > CACHE_SIZE) compiledVersions.delete(compiledVersions.keys().next().value!);
  return entry;
}

/**
 * The content as it was sent: a lean email's html rebuilt from its template version. An html that
 * cannot be rebuilt is left out and `htmlUnavailable` says why.
 */
export async function contentAsSent(deps: Pick<Deps, 'database' | 'config'>, m: StoredMessage): Promise<Record<string, unknown> | null> {
  const stored = m.rendered;
  const from = stored?.htmlFromLayout as HtmlFromLayout | undefined;
  if (!stored || !from) return stored;
  let html: string | undefined;
  const version = await compiledVersion(deps, m);
  const layout = version ? fieldLayout(version.compiled, 'html') : undefined;
  if (layout && layoutFingerprint(layout) === from.layout) {
    const pieces: string[] = new Array(layout.length);
    let v = 0;
    for (let i = 0; i < layout.length; i++) pieces[i] = layout[i] ?? from.values[v++] ?? '';
    const urls = trackingUrls(deps.config.publicUrl, deps.config.secret!, m.workspace_id, m.id);
    const preheader = stored.preheader as string | undefined;
    html = addTrackingToPieces(layout, pieces, { openPixelUrl: urls.open, clickUrl: (i) => urls.click(i), ...(preheader ? { preheader } : {}) }).html;
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(stored)) {
    if (key !== 'htmlFromLayout') out[key] = stored[key];
    else if (html !== undefined) out.html = html;
    else out.htmlUnavailable = 'the html of this message cannot be rebuilt: its template version no longer compiles to the layout it was sent with';
  }
  return out;
}
