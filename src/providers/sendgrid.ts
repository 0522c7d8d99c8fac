// Email through SendGrid's v3 Mail Send, with @sendgrid/mail (as the design card asks). One
// MailService + Client per (API key, base URL), so two configs never share a key. The library
// builds the request (Mail, snake_case JSON, headers) and hands it to axios; axios is configured
// with an adapter of Herald's own (an axios option @sendgrid/client passes through, like the
// others in its default request), which sends it through the pooled undici client of http.ts:
// keep-alive connections, the SSRF guard, the deadline, the capped body, and the exact
// "did the request leave" classification (retry before, unknown after).
import { AsyncLocalStorage } from 'node:async_hooks';
import sgMail from '@sendgrid/mail';
import sgClient from '@sendgrid/client';
import { createAgents, DEFAULT_TIMEOUT_MS, MAX_RESPONSE_BYTES, parseRetryAfter, MAX_RETRY_AFTER_MS, request as httpRequest, type Failure, type UndiciAgents } from './http.ts';
import type { EmailPayload, Provider, SendOutcome, SendRequest } from './types.ts';

type MailService = typeof sgMail;
type Client = typeof sgClient;
// The packages export their singletons; the classes hang off them (module.exports.MailService / .Client).
const MailServiceClass = (sgMail as unknown as { MailService: new () => MailService }).MailService;
const ClientClass = (sgClient as unknown as { Client: new () => Client }).Client;

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

type ResponseError = Error & { code: number; response: { headers: Record<string, string>; body: unknown } };
const isResponseError = (e: unknown): e is ResponseError =>
  e instanceof Error && typeof (e as { code?: unknown }).code === 'number' && typeof (e as { response?: unknown }).response === 'object';

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
export function sendGridMail(request: SendRequest, payload: EmailPayload): Parameters<MailService['send']>[0] {
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
  } as Parameters<MailService['send']>[0];
}

/** A failure http.ts classified (refused target, not sent, unknown): carried out of the library as it is. */
class TransportFailure extends Error {
  readonly outcome: Failure;
  constructor(outcome: Failure) {
    super(outcome.reason);
    this.outcome = outcome;
  }
}

/** What the adapter needs from the send that made the library call. */
interface SendContext {
  url: string;
  allowPrivate: boolean;
  signal: AbortSignal | undefined;
  timeoutMs: number;
  /** The adapter was called: a request may have been made. */
  requested: boolean;
}

/** The parts of axios's request config and response the adapter reads and gives back. */
interface AxiosConfig {
  method?: string;
  url?: string;
  baseURL?: string;
  data?: unknown;
  headers?: { toJSON?: (asStrings?: boolean) => Record<string, unknown> } & Record<string, unknown>;
}
interface AxiosLikeResponse {
  data: string;
  status: number;
  statusText: string;
  headers: Record<string, string>;
  config: AxiosConfig;
  request: null;
}

const joinUrl = (base: string | undefined, path: string | undefined) => (base ? `${base.replace(/\/+$/, '')}/${(path ?? '').replace(/^\/+/, '')}` : (path ?? ''));

export function createSendGridProvider(options: SendGridProviderOptions = {}): Provider & { close(): void } {
  // The shared pools of http.ts, or this provider's own when it trusts other CAs.
  const agents: UndiciAgents | undefined = options.ca !== undefined ? createAgents({ ca: options.ca }) : undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const sends = new AsyncLocalStorage<SendContext>();
  const services = new Map<string, MailService>();

  // axios calls this instead of its http adapter, with the request the library built (body already JSON).
  async function adapter(config: AxiosConfig): Promise<AxiosLikeResponse> {
    const ctx = sends.getStore();
    if (!ctx) throw new Error('sendgrid: a request made outside a send');
    const url = joinUrl(config.baseURL, config.url);
    if (url !== ctx.url) throw new TransportFailure({ kind: 'rejected', reason: `refusing ${url}: not the Mail Send URL that was checked (${ctx.url})` });
    const headers: Record<string, string> = {};
    const raw = typeof config.headers?.toJSON === 'function' ? config.headers.toJSON(true) : (config.headers ?? {});
    for (const [name, value] of Object.entries(raw)) if (value !== undefined && value !== null && value !== false) headers[name] = String(value);
    ctx.requested = true;
    const result = await httpRequest({
      method: (config.method ?? 'post').toUpperCase(), url, headers, body: typeof config.data === 'string' ? config.data : JSON.stringify(config.data ?? null),
      allowPrivate: ctx.allowPrivate, timeoutMs: ctx.timeoutMs, maxBodyBytes: MAX_RESPONSE_BYTES, ...(ctx.signal ? { signal: ctx.signal } : {}), ...(agents ? { agents } : {}),
    });
    if (!result.ok) throw new TransportFailure(result.outcome);
    const r = result.response;
    const response: AxiosLikeResponse = { data: r.body.toString('utf8'), status: r.status, statusText: '', headers: r.headers, config, request: null };
    if (r.status >= 200 && r.status < 300) return response;
    // As axios's own settle(): @sendgrid/client makes a ResponseError of a 4xx/5xx, passes the rest on.
    throw Object.assign(new Error(`Request failed with status code ${r.status}`), { response });
  }

  function serviceFor(apiKey: string, baseUrl: string): MailService {
    const key = `${apiKey}\0${baseUrl}`;
    let service = services.get(key);
    if (service) {
      services.delete(key); // most recently used last
      services.set(key, service);
      return service;
    }
    const client = new ClientClass();
    client.setApiKey(apiKey);
    // After setApiKey, which resets the base URL to SendGrid's.
    const defaults = {
      baseUrl: `${baseUrl}/`,
      adapter,
      proxy: false, // (not used by the adapter) never an environment proxy
      maxRedirects: 0,
      maxContentLength: MAX_RESPONSE_BYTES,
      timeout: 0, // deadlines are the send's signal
    };
    client.setDefaultRequest(defaults as unknown as Parameters<Client['setDefaultRequest']>[0]);
    service = new MailServiceClass();
    service.setClient(client);
    services.set(key, service);
    if (services.size > MAX_CLIENTS) services.delete(services.keys().next().value!);
    return service;
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
        const [response] = await sends.run(ctx, () => serviceFor(apiKey, baseUrl).send(mail));
        const id = (response.headers as Record<string, unknown>)['x-message-id'];
        return { kind: 'sent', providerMessageId: typeof id === 'string' && id ? id : null };
      } catch (error) {
        if (error instanceof TransportFailure) return error.outcome;
        if (isResponseError(error)) return mapSendGridStatus(error.code, error.response.headers ?? {}, error.response.body);
        // A status below 400 that is not 2xx (a redirect, not followed): the status decides.
        const response = (error as { response?: { status?: unknown; headers?: unknown; data?: unknown } } | undefined)?.response;
        if (response && typeof response.status === 'number') return mapSendGridStatus(response.status, (response.headers ?? {}) as Record<string, string>, response.data);
        const message = error instanceof Error ? error.message : String(error);
        // The library failed before handing anything to the adapter: nothing was sent.
        if (!ctx.requested) return { kind: 'rejected', reason: `the request could not be built: ${message}` };
        return { kind: 'unknown', reason: `the SendGrid client failed after the request was made: ${message}` };
      }
    },
    close() {
      services.clear();
      if (agents) void Promise.all([agents.strict.close(), agents.permissive.close()]);
    },
  };
}

export const sendgridProvider = createSendGridProvider();
