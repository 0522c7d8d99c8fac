// From rendered template fields to what a provider sends: email HTML gets its open pixel and
// signed click links and the one-click unsubscribe headers (RFC 8058); every channel gets the
// links that bring its events back to Herald.
import { messageSigner, type TokenKind } from '../tracking/tokens.ts';
import { addTracking, addTrackingToPieces, type FieldLayout } from '../templates/tracking-html.ts';
import type { TemplateChannel } from '../templates/templates.schemas.ts';
import { encodeStrings } from '../../providers/json.ts';
import type { Payload } from '../../providers/types.ts';

export interface TrackingUrls {
  unsubscribe: string;
  view: string;
  forward: string;
  open: string;
  push: string;
  click: (index: number) => string;
}

/** Signed on first use: a message signs only the tokens its channel and template need. */
export function trackingUrls(publicUrl: string, secret: string, workspaceId: string, messageId: string): TrackingUrls {
  const sign = messageSigner(secret, workspaceId, messageId);
  const url = (path: string, kind: TokenKind, link = 0) => `${publicUrl}/t/${path}/${sign(kind, link)}`;
  const cache = new Map<string, string>();
  const once = (path: string, kind: TokenKind) => () => {
    let value = cache.get(kind);
    if (value === undefined) cache.set(kind, (value = url(path, kind)));
    return value;
  };
  const urls = { click: (index: number) => url('c', 'click', index) } as TrackingUrls;
  for (const [name, path, kind] of [['unsubscribe', 'u', 'unsubscribe'], ['view', 'v', 'view'], ['forward', 'f', 'forward'], ['open', 'o', 'open'], ['push', 'p', 'push']] as const) {
    Object.defineProperty(urls, name, { get: once(path, kind), enumerable: true });
  }
  return urls;
}

/** Links that go nowhere, for a message that is not recorded (a preview, a test send with sample data). */
export function placeholderUrls(publicUrl: string): TrackingUrls {
  const at = (path: string) => `${publicUrl}/t/${path}/preview`;
  return { unsubscribe: at('u'), view: at('v'), forward: at('f'), open: at('o'), push: at('p'), click: () => at('c') };
}

interface ComposeInput {
  channel: TemplateChannel;
  content: Record<string, unknown>;
  values: Record<string, string>;
  settings: Record<string, unknown>;
  address: string;
  subscription: { endpoint: string; keys: { p256dh: string; auth: string } | null } | null;
  urls: TrackingUrls;
  publicUrl: string;
  channelConfigId: string;
  /** The message's id, for an SMS status callback to name it (a test send has none). */
  messageId?: string | undefined;
  defaultSender?: { email: string; name?: string } | undefined;
  /** The html as the pieces of its layout (render's `parts`), for tracking planned once per layout. */
  htmlPieces?: { layout: FieldLayout; pieces: string[] } | undefined;
  /** false: no open pixel, links as written, no List-Unsubscribe (a message nobody records). Default true. */
  tracked?: boolean;
}

/** The payload for the provider and the content as sent (what "view" shows), or why it cannot be sent. */
export function composePayload(input: ComposeInput): { payload: Payload; rendered: Record<string, unknown> } | { error: string } {
  const { values: v, content, settings, urls } = input;
  const tracked = input.tracked !== false;
  switch (input.channel) {
    case 'email': {
      const from = (content.from as { email: string; name?: string } | undefined)
        ?? (settings.fromEmail ? { email: String(settings.fromEmail), ...(settings.fromName ? { name: String(settings.fromName) } : {}) } : input.defaultSender)
        ?? { email: '' };
      if (!from.email) return { error: 'no_sender' };
      let html: string | undefined;
      let links: string[] = [];
      if (v.html !== undefined && !tracked) html = v.html;
      else if (v.html !== undefined) {
        const opts = { openPixelUrl: urls.open, clickUrl: (i: number) => urls.click(i), ...(v.preheader ? { preheader: v.preheader } : {}) };
        const parts = input.htmlPieces;
        ({ html, links } = parts ? addTrackingToPieces(parts.layout, parts.pieces, opts, v.html) : addTracking(v.html, opts));
      }
      const replyTo = (content.replyTo as string | undefined) ?? (settings.replyTo as string | undefined);
      const payload: Payload = {
        kind: 'email', to: input.address, from, subject: v.subject ?? '',
        ...(replyTo ? { replyTo } : {}), ...(html !== undefined ? { html } : {}), ...(v.text !== undefined ? { text: v.text } : {}),
        headers: tracked ? { 'List-Unsubscribe': `<${urls.unsubscribe}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } : {},
        // Escaped for JSON once: for the provider's request and for the content stored as sent.
        encoded: encodeStrings(html, v.text),
      };
      return { payload, rendered: { subject: payload.subject, from, ...(replyTo ? { replyTo } : {}), ...(v.preheader ? { preheader: v.preheader } : {}), ...(html !== undefined ? { html } : {}), ...(v.text !== undefined ? { text: v.text } : {}), links } };
    }
    case 'sms': {
      const text = v.text ?? '';
      if (!text.trim()) return { error: 'render_error: the text is empty' };
      return { payload: { kind: 'sms', to: input.address, text, statusCallbackUrl: `${input.publicUrl}/webhooks/sms/${input.channelConfigId}${input.messageId ? `?message=${input.messageId}` : ''}` }, rendered: { text } };
    }
    case 'web_push':
    case 'mobile_push': {
      const data = Object.fromEntries(Object.entries(v).filter(([key]) => key.startsWith('data/')).map(([key, value]) => [key.slice(5), value]));
      // An http(s) click URL is kept for the redirect and the device is sent the tracked link
      // that records the click first. Another (an app's deep link, myapp://...) goes as written,
      // untracked: the redirect only ever leads to http(s).
      const trackedClick = tracked && v.clickUrl !== undefined && /^https?:\/\//i.test(v.clickUrl);
      const links = v.clickUrl ? [v.clickUrl] : [];
      const payload: Payload = {
        kind: input.channel, to: { endpoint: input.address, keys: input.subscription?.keys ?? null }, title: v.title ?? '', body: v.body ?? '',
        ...(v.imageUrl ? { imageUrl: v.imageUrl } : {}), ...(v.clickUrl ? { clickUrl: trackedClick ? urls.click(0) : v.clickUrl } : {}),
        data: tracked ? { ...data, herald_receipt_url: urls.push } : data,
      };
      return { payload, rendered: { title: payload.title, body: payload.body, ...(v.imageUrl ? { imageUrl: v.imageUrl } : {}), ...(v.clickUrl ? { clickUrl: v.clickUrl } : {}), data, links } };
    }
    case 'webhook': {
      const headers = Object.fromEntries(Object.entries(v).filter(([key]) => key.startsWith('headers/')).map(([key, value]) => [key.slice(8), value]));
      const method = String(content.method ?? 'POST');
      const payload: Payload = { kind: 'webhook', method, url: v.url ?? '', headers, ...(v.body !== undefined ? { body: v.body } : {}) };
      return { payload, rendered: { method, url: payload.url, headers, ...(v.body !== undefined ? { body: v.body } : {}) } };
    }
  }
}
