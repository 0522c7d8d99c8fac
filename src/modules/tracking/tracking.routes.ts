// Public tracking routes, authenticated by signed tokens only: the open pixel, click redirects
// (to a URL of the message, never one from the request), one-click unsubscribe (RFC 8058: GET
// only asks, POST does it), push receipts and clicks, and the message as sent ("view online").
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { Deps } from '../../deps.ts';
import { notFound } from '../../http/errors.ts';
import { problems } from '../../http/problem.ts';
import type { App } from '../../http/types.ts';
import { contentAsSent, type StoredMessage } from '../messages/as-sent.ts';
import { applyMessageEvents, type MessageEventKind } from '../messages/message-events.ts';
import { verifyToken, type TokenKind } from './tokens.ts';

const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
// Any token up to the length limit reaches verifyToken: a tampered one is a 404 whatever byte changed (not a 400 for some).
const TokenParams = Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false });
const tags = ['tracking'];
const common = { config: { access: 'public' as const } };
const html = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title}</title></head><body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">${body}</body></html>`;

export async function trackingRoutes(app: App, deps: Deps) {
  // RFC 8058 one-click posts SHOULD be multipart/form-data and MAY be form-encoded; mail
  // providers send either, and the body carries nothing we need: both are read (up to 4 KiB)
  // and ignored. (The push beacon's JSON keeps Fastify's own parser.)
  for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data']) {
    app.addContentTypeParser(type, { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => done(null, body));
  }
  const secret = () => deps.config.secret!;

  const claimsOf = (token: string, kind: TokenKind) => {
    const claims = verifyToken(secret(), token, kind);
    if (!claims) throw notFound('Link');
    return claims;
  };
  const touch = (request: FastifyRequest) => ({ userAgent: request.headers['user-agent'] ?? null, ip: request.ip });
  const record = (claims: { workspaceId: string; messageId: string }, kind: MessageEventKind, data: Record<string, unknown>) =>
    applyMessageEvents(deps.database.sql, [{ workspaceId: claims.workspaceId, messageId: claims.messageId, kind, occurredAt: deps.clock.now(), data }]);
  const messageOf = async (claims: { workspaceId: string; messageId: string }) => {
    const [m] = await deps.database.sql<(StoredMessage & { channel: string })[]>`
      select workspace_id, id, template_id, template_version, rendered, channel from messages where workspace_id = ${claims.workspaceId} and id = ${claims.messageId}`;
    if (!m) throw notFound('Message');
    return m;
  };

  app.get('/t/o/:token', {
    ...common,
    schema: { operationId: 'trackOpen', tags, summary: 'Open pixel', params: TokenParams, response: { 200: { description: 'A 1×1 GIF', content: { 'image/gif': { schema: { type: 'string', format: 'binary' } } } }, ...problems(404) } },
  }, async (request, reply) => {
    const claims = claimsOf(request.params.token, 'open');
    await record(claims, 'opened', touch(request));
    return reply.type('image/gif').header('cache-control', 'no-store, private').send(PIXEL as never);
  });

  app.get('/t/c/:token', {
    ...common,
    schema: { operationId: 'trackClick', tags, summary: 'Click redirect to a link of the message', params: TokenParams, response: { 302: Type.Null({ description: 'To the link in the message' }), ...problems(404) } },
  }, async (request, reply) => {
    const claims = claimsOf(request.params.token, 'click');
    const message = await messageOf(claims);
    const url = (message.rendered?.links as string[] | undefined)?.[claims.link];
    const location = url ? redirectTarget(url) : null;
    if (!location) throw notFound('Link');
    await record(claims, 'clicked', { url, ...touch(request) });
    return reply.code(302).header('cache-control', 'no-store, private').header('location', location).send(null);
  });

  app.get('/t/u/:token', {
    ...common,
    schema: { operationId: 'unsubscribePage', tags, summary: 'Asks to confirm an unsubscribe (never unsubscribes by itself)', params: TokenParams, response: { 200: { description: 'An HTML page', content: { 'text/html': { schema: Type.String() } } }, ...problems(404) } },
  }, async (request, reply) => {
    claimsOf(request.params.token, 'unsubscribe');
    return reply.type('text/html').send(html('Unsubscribe', `<h1>Unsubscribe?</h1><p>You will no longer receive these emails.</p><form method="post"><button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button></form>`));
  });

  app.post('/t/u/:token', {
    ...common,
    schema: { operationId: 'unsubscribe', tags, summary: 'One-click unsubscribe (RFC 8058); idempotent', params: TokenParams, response: { 200: { description: 'Done', content: { 'text/html': { schema: Type.String() } } }, ...problems(404) } },
  }, async (request, reply) => {
    const claims = claimsOf(request.params.token, 'unsubscribe');
    const [message] = await deps.database.sql<{ source_type: string }[]>`select source_type from messages where workspace_id = ${claims.workspaceId} and id = ${claims.messageId}`;
    await record(claims, 'unsubscribed', { ...touch(request), oneClick: true });
    // Recorded on the test message; the customer's consent is untouched (message-events.ts).
    if (message?.source_type === 'test') return reply.type('text/html').send(html('Test send', '<h1>This was a test send</h1><p>In a real message this link unsubscribes the customer; here nothing was changed.</p>'));
    return reply.type('text/html').send(html('Unsubscribed', '<h1>You are unsubscribed</h1><p>You will no longer receive these emails.</p>'));
  });

  app.post('/t/p/:token', {
    config: { access: 'public' as const, optionalBody: true },
    schema: {
      operationId: 'trackPush', tags, summary: 'Push receipt, open or click beacon from a device or service worker',
      params: TokenParams,
      body: Type.Object({ event: Type.Optional(Type.Enum(['delivered', 'opened', 'clicked'], { description: 'Default: opened' })) }, { additionalProperties: false, description: 'Optional: a beacon without a body is an open' }),
      response: { 204: Type.Null({ description: 'Recorded' }), ...problems(400, 404) },
    },
    // A beacon may come without a body (navigator.sendBeacon(url)): an open.
    preValidation: async (request) => {
      request.body ??= {};
    },
  }, async (request, reply) => {
    const claims = claimsOf(request.params.token, 'push');
    await record(claims, (request.body?.event ?? 'opened') as MessageEventKind, touch(request));
    return reply.code(204).send(null);
  });

  for (const [path, kind] of [['v', 'view'], ['f', 'forward']] as const) {
    app.get(`/t/${path}/:token`, {
      ...common,
      schema: { operationId: kind === 'view' ? 'viewMessage' : 'forwardMessage', tags, summary: kind === 'view' ? 'The email as sent ("view online")' : 'Forward link: the email as sent, recorded as forwarded', params: TokenParams, response: { 200: { description: 'The email', content: { 'text/html': { schema: Type.String() } } }, ...problems(404) } },
    }, async (request, reply) => {
      const claims = claimsOf(request.params.token, kind);
      const message = await messageOf(claims);
      if (kind === 'forward') await record(claims, 'forwarded', touch(request));
      const rendered = await contentAsSent(deps, message);
      const body = typeof rendered?.html === 'string' ? rendered.html : html('Message', `<pre>${escape(String(rendered?.text ?? ''))}</pre>`);
      // The template's HTML on Herald's own origin: no script runs (a javascript: link a merge
      // tag slipped in included), links still open.
      return reply.type('text/html').header('cache-control', 'no-store, private').header('x-robots-tag', 'noindex')
        .header('content-security-policy', 'sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation').send(body);
    });
  }
}

/**
 * Where a click redirect may send the browser: an absolute http(s) URL of the message, written as
 * the WHATWG URL parser writes it (a host in punycode, a path, query or fragment outside ASCII
 * percent-encoded, tabs and line breaks dropped), so that it can go in a Location header at all.
 * Anything else (javascript:, data:, a relative or broken URL) is not redirected to.
 */
export function redirectTarget(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
}

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
