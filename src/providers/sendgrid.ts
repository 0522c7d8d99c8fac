// Email through SendGrid's v3 Mail Send, with the @sendgrid packages (as the design card asks). One
// Client per (API key, base URL), so two configs never share a key. The request is the one
// @sendgrid/mail makes: its JSON body is built here the way the library's Mail class builds it
// (mailBody; a test holds the two equal), because Mail deep-clones the message through
// JSON.stringify/parse and converts every key's case twice, a tenth of the send worker's CPU for
// a 5 KB email. The library's Client makes the request (URL, auth, headers), and its request() is
// Herald's own: the pooled undici client of http.ts instead of axios, for keep-alive
// connections, the SSRF guard, the deadline, the capped body, and the exact "did the request
// leave" classification (retry before, unknown after).
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import sgClient from '@sendgrid/client';
import { createAgents, DEFAULT_TIMEOUT_MS, MAX_RESPONSE_BYTES, parseRetryAfter, MAX_RETRY_AFTER_MS, request as httpRequest, type Failure, type UndiciAgents } from './http.ts';
import { stringifyWith } from './json.ts';
import type { EmailPayload, Provider, SendOutcome, SendRequest } from './types.ts';

/** The message as @sendgrid/mail's send() takes it (the fields Herald uses). */
export interface MailData {
  to: string;
  from: { email: string; name?: string };
  replyTo?: string;
  subject: string;
  text?: string;
  html?: string;
  headers?: Record<string, string>;
  customArgs: Record<string, string>;
}
/** The library's Client as the transport below uses it (its request() is replaced). */
interface LibraryClient {
  setApiKey(key: string): void;
  setDefaultRequest(key: string, value: unknown): void;
  createRequest(data: unknown): ClientRequest;
  request(data: { method: string; url: string; headers: Record<string, string>; body: unknown }): Promise<ClientResponse>;
}
// The packages export their singletons; the classes hang off them (module.exports.Client).
const ClientClass = (sgClient as unknown as { Client: new () => LibraryClient }).Client;
// @sendgrid/helpers as @sendgrid/mail loads it: a dependency of the library, not of Herald.
const fromMail = createRequire(createRequire(import.meta.url).resolve('@sendgrid/mail'));
const EmailAddress = (fromMail('@sendgrid/helpers') as { classes: { EmailAddress: { create(data: unknown): { toJSON(): { email: string; name?: string } } } } }).classes.EmailAddress;

export const SENDGRID_BASE_URL = 'https://api.sendgrid.com';
const MAX_CLIENTS = 256;
/** Headers that must not go into the email's headers (they would also be sent on the API request). */
const RESERVED_HEADERS = new Set(['authorization', 'content-type', 'content-length', 'accept', 'user-agent', 'host', 'on-behalf-of', 'connection', 'transfer-encoding']);

export interface SendGridProviderOptions {
  /** Default DEFAULT_TIMEOUT_MS (the request's signal can end it sooner). */
  timeoutMs?: number;
  /** Trusted CAs for an https base URL (tests); default the system's. */
  ca?: string | Buffer;
}

function sendgridMessage(body: unknown): string {
  const errors = (body as { errors?: Array<{ message?: unknown; field?: unknown }> } | undefined)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return typeof body === 'string' && body ? body.slice(0, 300) : 'no error message';
  return errors.map((e) => (e.field ? `${String(e.field)}: ${String(e.message)}` : String(e.message))).join('; ').slice(0, 500);
}

/** SendGrid's answer as an outcome (2xx handled by the caller). */
export function mapSendGridStatus(status: number, headers: Record<string, string>, body: unknown): Failure {
  const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
  const message = sendgridMessage(body);
  if (status === 401) return { kind: 'rejected', reason: `invalid API key (401: ${message})` };
  if (status === 429) {
    let retryAfterMs = parseRetryAfter(h['retry-after']);
    const reset = Number(h['x-ratelimit-reset']);
    if (retryAfterMs === undefined && h['x-ratelimit-reset'] && Number.isFinite(reset)) retryAfterMs = Math.min(Math.max(0, reset * 1000 - Date.now()), MAX_RETRY_AFTER_MS);
    return { kind: 'retry', reason: `429: ${message}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  // SendGrid documents 5xx as "not accepted": send again later.
  if (status >= 500 || status === 408) {
    const retryAfterMs = parseRetryAfter(h['retry-after']);
    return { kind: 'retry', reason: `${status}: ${message}`, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  if (status >= 300 && status < 400) return { kind: 'rejected', reason: `unexpected redirect (${status}${h.location ? ` to ${h.location}` : ''}), not followed` };
  // 400 (bad address, bad request), 403 (sender not verified, access), 413 (too large) and any other 4xx.
  return { kind: 'rejected', reason: `${status}: ${message}` };
}

/** The @sendgrid/mail message for a payload (personalizations, content order and snake_case are the library's). */
export function sendGridMail(request: SendRequest, payload: EmailPayload): MailData {
  const settings = request.settings as { fromName?: unknown; replyTo?: unknown };
  const from = { email: payload.from.email, ...(payload.from.name ? { name: payload.from.name } : settings.fromName ? { name: String(settings.fromName) } : {}) };
  const replyTo = payload.replyTo ?? (typeof settings.replyTo === 'string' ? settings.replyTo : undefined);
  const headers = Object.fromEntries(Object.entries(payload.headers).filter(([name]) => !RESERVED_HEADERS.has(name.toLowerCase())));
  // text/plain then text/html is the order SendGrid requires; the library adds them in that order.
  const content = { ...(payload.text ? { text: payload.text } : {}), ...(payload.html ? { html: payload.html } : {}) };
  return {
    to: payload.to,
    from,
    ...(replyTo ? { replyTo } : {}),
    subject: payload.subject,
    ...content,
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    customArgs: { herald_message_id: request.messageId, herald_workspace_id: request.workspaceId },
  };
}

/**
 * The v3 JSON body the library's Mail class makes of `mail` (Mail.create(mail).toJSON(): same
 * keys, same order), for the fields sendGridMail uses; addresses are parsed by the library's
 * EmailAddress ("Name <address>" strings).
 */
export function mailBody(mail: MailData): Record<string, unknown> {
  const address = (a: unknown) => EmailAddress.create(a).toJSON();
  const content: Array<{ value: string; type: string }> = [];
  if (typeof mail.text === 'string') content.push({ value: mail.text, type: 'text/plain' });
  if (typeof mail.html === 'string') content.push({ value: mail.html, type: 'text/html' });
  const body: Record<string, unknown> = { from: address(mail.from), subject: mail.subject, personalizations: [{ to: [address(mail.to)] }] };
  if (content.length) body.content = content;
  if (mail.headers && Object.keys(mail.headers).length) body.headers = mail.headers;
  if (mail.customArgs && Object.keys(mail.customArgs).length) body.custom_args = mail.customArgs;
  if (mail.replyTo !== undefined) body.reply_to = address(mail.replyTo);
  return body;
}

/** A failure http.ts classified (refused target, not sent, unknown), or SendGrid's non-2xx answer mapped: carried out of the library as it is. */
class TransportFailure extends Error {
  readonly outcome: Failure;
  constructor(outcome: Failure) {
    super(outcome.reason);
    this.outcome = outcome;
  }
}

/** What the transport needs from the send that made the library call. */
interface SendContext {
  url: string;
  allowPrivate: boolean;
  signal: AbortSignal | undefined;
  timeoutMs: number;
  /** The transport was called: a request may have been made. */
  requested: boolean;
}

/** The request @sendgrid/client's createRequest() builds (its axios options). */
interface ClientRequest {
  method?: string;
  url?: string;
  baseURL?: string;
  data?: unknown;
  headers?: Record<string, unknown>;
}
/** What the library's own request() resolves with: [Response, body]. */
type ClientResponse = [{ statusCode: number; body: string; headers: Record<string, string> }, string];

const joinUrl = (base: string | undefined, path: string | undefined) => (base ? `${base.replace(/\/+$/, '')}/${(path ?? '').replace(/^\/+/, '')}` : (path ?? ''));

export function createSendGridProvider(options: SendGridProviderOptions = {}): Provider & { close(): void } {
  // The shared pools of http.ts, or this provider's own when it trusts other CAs.
  const agents: UndiciAgents | undefined = options.ca !== undefined ? createAgents({ ca: options.ca }) : undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const sends = new AsyncLocalStorage<SendContext>();
  const clients = new Map<string, LibraryClient>();

  // @sendgrid/client with its transport replaced: the library builds the request (URL, auth,
  // headers, the Mail's JSON body) with its own createRequest(); the pooled undici client of
  // http.ts sends it instead of axios (a third of the send worker's CPU went to axios and its
  // config merging).
  class PooledClient extends ClientClass {
    override async request(data: unknown): Promise<ClientResponse> {
      const ctx = sends.getStore();
      if (!ctx) throw new Error('sendgrid: a request made outside a send');
      const built = this.createRequest(data);
      const url = joinUrl(built.baseURL, built.url);
      if (url !== ctx.url) throw new TransportFailure({ kind: 'rejected', reason: `refusing ${url}: not the Mail Send URL that was checked (${ctx.url})` });
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(built.headers ?? {})) if (value !== undefined && value !== null && value !== false) headers[name] = String(value);
      ctx.requested = true;
      const result = await httpRequest({
        method: (built.method ?? 'POST').toUpperCase(), url, headers, body: typeof built.data === 'string' ? built.data : JSON.stringify(built.data ?? null),
        allowPrivate: ctx.allowPrivate, timeoutMs: ctx.timeoutMs, maxBodyBytes: MAX_RESPONSE_BYTES, ...(ctx.signal ? { signal: ctx.signal } : {}), ...(agents ? { agents } : {}),
      });
      if (!result.ok) throw new TransportFailure(result.outcome);
      const r = result.response;
      const text = r.body.toString('utf8');
      if (r.status >= 200 && r.status < 300) return [{ statusCode: r.status, body: text, headers: r.headers }, text];
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: the text is the message
      }
      throw new TransportFailure(mapSendGridStatus(r.status, r.headers, body));
    }
  }

  let last: { key: string; client: LibraryClient } | undefined;
  function clientFor(apiKey: string, baseUrl: string): LibraryClient {
    const key = `${apiKey}\0${baseUrl}`;
    // Already the most recently used (a batch sends through one config): nothing to reorder.
    if (last?.key === key && clients.get(key) === last.client) return last.client;
    let client = clients.get(key);
    if (client) {
      clients.delete(key); // most recently used last
      clients.set(key, client);
      last = { key, client };
      return client;
    }
    client = new PooledClient();
    client.setApiKey(apiKey);
    // After setApiKey, which resets the base URL to SendGrid's.
    client.setDefaultRequest('baseUrl', `${baseUrl}/`);
    clients.set(key, client);
    if (clients.size > MAX_CLIENTS) clients.delete(clients.keys().next().value!);
    last = { key, client };
    return client;
  }

  return {
    async send(request: SendRequest): Promise<SendOutcome> {
      const payload = request.payload;
      if (payload.kind !== 'email') return { kind: 'rejected', reason: `sendgrid sends email, not ${payload.kind}` };
      const apiKey = request.secrets.apiKey;
      if (!apiKey) return { kind: 'rejected', reason: 'no SendGrid API key in the channel config' };
      const baseUrl = String(request.settings.apiBaseUrl ?? SENDGRID_BASE_URL).replace(/\/+$/, '');
      // The target is checked (SSRF guard) by http.ts before any connection, inside the adapter.
      const ctx: SendContext = { url: `${baseUrl}/v3/mail/send`, allowPrivate: request.allowPrivateTargets, signal: request.signal, timeoutMs, requested: false };
      try {
        const mail = sendGridMail(request, payload);
        // As MailService.send() makes it: the email's headers go on the API request too.
        const call = { method: 'POST', url: '/v3/mail/send', headers: mail.headers ?? {}, body: stringifyWith(mailBody(mail), payload.encoded ?? []) };
        const [response] = await sends.run(ctx, () => clientFor(apiKey, baseUrl).request(call));
        const id = (response.headers as Record<string, unknown>)['x-message-id'];
        return { kind: 'sent', providerMessageId: typeof id === 'string' && id ? id : null };
      } catch (error) {
        if (error instanceof TransportFailure) return error.outcome;
        const message = error instanceof Error ? error.message : String(error);
        // The library failed before handing anything to the transport: nothing was sent.
        if (!ctx.requested) return { kind: 'rejected', reason: `the request could not be built: ${message}` };
        return { kind: 'unknown', reason: `the SendGrid client failed after the request was made: ${message}` };
      }
    },
    close() {
      clients.clear();
      last = undefined;
      if (agents) void Promise.all([agents.strict.close(), agents.permissive.close()]);
    },
  };
}

export const sendgridProvider = createSendGridProvider();
