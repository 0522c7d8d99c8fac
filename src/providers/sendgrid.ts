// Email through SendGrid's v3 Mail Send, with @sendgrid/mail (as the design card asks). One
// MailService + Client per (API key, base URL), so two configs never share a key; every client
// sends through Herald's keep-alive agents via axios's `transport` hook, which is also how a send
// knows whether its request left (see http.ts): @sendgrid/client passes its default request
// options (transport, proxy, maxRedirects...) straight to axios.
import http from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import sgMail from '@sendgrid/mail';
import sgClient from '@sendgrid/client';
import {
  createNodeAgents, currentTrace, destroyNodeAgents, deadline, DEFAULT_TIMEOUT_MS, MAX_RESPONSE_BYTES, newTrace, parseRetryAfter, MAX_RETRY_AFTER_MS,
  traced, traceFailure, vetTarget, type Failure, type NodeAgents,
} from './http.ts';
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

export function createSendGridProvider(options: SendGridProviderOptions = {}): Provider & { close(): void } {
  const agents: NodeAgents = createNodeAgents(options.ca !== undefined ? { ca: options.ca } : {});
  const services = new Map<string, MailService>();

  // axios calls this instead of http(s).request: the agent is picked per send (strict or not).
  const transport = {
    request(opts: https.RequestOptions, callback: (res: http.IncomingMessage) => void): http.ClientRequest {
      const trace = currentTrace();
      const secure = opts.protocol === 'https:';
      const pool = secure ? agents.https : agents.http;
      const agent = trace?.allowPrivate ? pool.permissive : pool.strict;
      return (secure ? https : http).request({ ...opts, agent }, callback);
    },
  };

  function serviceFor(apiKey: string, baseUrl: string): MailService {
    const key = createHash('sha256').update(`${apiKey}\0${baseUrl}`).digest('base64url');
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
      adapter: 'http',
      transport,
      proxy: false, // never an environment proxy: the connection goes where the guard checked
      maxRedirects: 0,
      maxContentLength: MAX_RESPONSE_BYTES,
      timeout: 0, // deadlines are the trace's signal
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
      const url = `${baseUrl}/v3/mail/send`;
      const signal = deadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, request.signal);
      const refused = await vetTarget(url, request.allowPrivateTargets, signal);
      if (refused) return refused;

      const trace = newTrace(signal, request.allowPrivateTargets, new URL(url).hostname);
      try {
        const mail = sendGridMail(request, payload);
        const [response] = await traced(trace, () => serviceFor(apiKey, baseUrl).send(mail));
        const headers = response.headers as Record<string, unknown>;
        const id = headers['x-message-id'];
        return { kind: 'sent', providerMessageId: typeof id === 'string' && id ? id : null };
      } catch (error) {
        if (isResponseError(error)) return mapSendGridStatus(error.code, error.response.headers ?? {}, error.response.body);
        // A status that came with a failure (a redirect, an oversized body): the status decides.
        if (trace.response) {
          if (trace.response.status >= 200 && trace.response.status < 300) return { kind: 'sent', providerMessageId: trace.response.headers['x-message-id'] || null };
          return mapSendGridStatus(trace.response.status, trace.response.headers, undefined);
        }
        return traceFailure(trace, error);
      }
    },
    close() {
      services.clear();
      destroyNodeAgents(agents);
    },
  };
}

export const sendgridProvider = createSendGridProvider();
