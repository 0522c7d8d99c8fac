// One interface for every channel's provider. The send pipeline decides what to do with an
// outcome; a provider only says, truthfully, what it knows about the request it made.

import type { EncodedStrings } from './json.ts';

export interface EmailPayload {
  kind: 'email';
  to: string;
  from: { email: string; name?: string };
  replyTo?: string;
  subject: string;
  html?: string;
  text?: string;
  /** Extra headers (List-Unsubscribe, List-Unsubscribe-Post). */
  headers: Record<string, string>;
  /** The html and text already encoded as JSON (see json.ts), for a provider whose request is JSON. */
  encoded?: EncodedStrings;
}
export interface SmsPayload {
  kind: 'sms';
  to: string;
  text: string;
  /** Where the provider should post delivery receipts. */
  statusCallbackUrl?: string;
}
export interface PushPayload {
  kind: 'web_push' | 'mobile_push';
  /** web_push: the subscription endpoint and keys; mobile_push: the device token. */
  to: { endpoint: string; keys?: { p256dh: string; auth: string } | null };
  title: string;
  body: string;
  imageUrl?: string;
  clickUrl?: string;
  data: Record<string, string>;
}
export interface WebhookPayload {
  kind: 'webhook';
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}
export type Payload = EmailPayload | SmsPayload | PushPayload | WebhookPayload;

export interface SendRequest {
  /** Herald's message id: carried to the provider (custom_args, headers) so webhooks find their way back. */
  messageId: string;
  workspaceId: string;
  payload: Payload;
  settings: Record<string, unknown>;
  secrets: Record<string, string>;
  /** Loopback and private targets allowed (workspace setting, for tests and local mocks). */
  allowPrivateTargets: boolean;
  signal?: AbortSignal;
}

/**
 * - sent: the provider accepted the message.
 * - rejected: the provider refused it for good (bad address, bad request): do not retry.
 * - retry: known not to have reached the provider or refused for now (connection refused, DNS,
 *   429, 5xx that did not accept): safe to try again, after retryAfterMs when given.
 * - unknown: the request may have been accepted (timeout or reset after it was sent): never
 *   sent blindly again.
 * - gone: the address no longer exists (web push 404/410, FCM UNREGISTERED): drop it.
 * - unsubscribed: the recipient opted out at the provider (an SMS STOP, Twilio 21610): take the
 *   address off the list.
 */
export type SendOutcome =
  | { kind: 'sent'; providerMessageId: string | null }
  | { kind: 'rejected'; reason: string }
  | { kind: 'retry'; reason: string; retryAfterMs?: number }
  | { kind: 'unknown'; reason: string }
  | { kind: 'gone'; reason: string }
  | { kind: 'unsubscribed'; reason: string };

export interface Provider {
  send(request: SendRequest): Promise<SendOutcome>;
}
