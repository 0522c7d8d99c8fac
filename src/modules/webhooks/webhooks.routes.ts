import { Type } from 'typebox';
import type { Deps } from '../../deps.ts';
import { problems } from '../../http/problem.ts';
import { isUuid } from '../../ids.ts';
import type { App } from '../../http/types.ts';
import { receiveSendgridEvents, receiveSmsReceipt } from './webhooks.service.ts';

const ChannelConfigParams = Type.Object({ channelConfigId: Type.String({ format: 'uuid' }) }, { additionalProperties: false });
const Receipt = Type.Object(
  {
    stored: Type.Integer({ description: 'New events stored' }),
    duplicates: Type.Integer({ description: 'Events already stored (same provider event id)' }),
    unknownMessages: Type.Integer({ description: 'Events for messages Herald does not know, counted and ignored' }),
    ignored: Type.Integer({ description: 'Events of kinds Herald does not track, or without a Herald message id' }),
  },
  { $id: 'WebhookReceipt', additionalProperties: false },
);
const SmsCallbackQuery = Type.Object(
  { message: Type.Optional(Type.String({ format: 'uuid', description: 'The Herald message the callback is for (Herald puts it in the StatusCallback URL it gives Twilio)' })) },
);
const tags = ['provider webhooks'];

export async function webhookRoutes(app: App, deps: Deps) {
  // The signature covers the exact bytes: bodies are kept raw and parsed only once verified.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: 16 * 1024 * 1024 }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));
  // Bodies are checked by the service after the signature; the path id is checked here.
  const validatorCompiler = ({ httpPart }: { httpPart?: string }) =>
    httpPart === 'body' || httpPart === 'querystring'
      ? () => true
      : (data: unknown) => (isUuid(String((data as { channelConfigId?: unknown }).channelConfigId ?? '')) ? { value: data } : { error: new Error('channelConfigId must be a UUID') });

  app.post('/webhooks/sendgrid/:channelConfigId', {
    config: { access: 'public' },
    bodyLimit: 16 * 1024 * 1024,
    validatorCompiler,
    schema: {
      operationId: 'sendgridEventWebhook', tags, summary: 'SendGrid Event Webhook (signed with the config\'s verification key)',
      description: 'Verifies X-Twilio-Email-Event-Webhook-Signature over the timestamp and raw body before parsing; deduplicates by sg_event_id; answers 2xx once stored.',
      params: ChannelConfigParams,
      body: { content: { 'application/json': { schema: { type: 'array', items: { type: 'object' }, description: 'SendGrid events' } } } },
      response: { 200: Type.Unsafe(Type.Ref('WebhookReceipt')), ...problems(400, 401, 404, 413) },
    },
  }, async (request) =>
    receiveSendgridEvents(deps, request.params.channelConfigId, request.body as unknown as Buffer, {
      signature: request.headers['x-twilio-email-event-webhook-signature'] as string | undefined,
      timestamp: request.headers['x-twilio-email-event-webhook-timestamp'] as string | undefined,
    }));

  app.post('/webhooks/sms/:channelConfigId', {
    config: { access: 'public' },
    validatorCompiler,
    schema: {
      operationId: 'smsStatusWebhook', tags, summary: 'SMS delivery receipts (Twilio status callbacks, signed with X-Twilio-Signature)',
      params: ChannelConfigParams,
      // Checked by the service too (it is covered by the signature): anything but a message id is an unknown message.
      querystring: SmsCallbackQuery,
      body: { content: { 'application/x-www-form-urlencoded': { schema: { type: 'string', description: 'MessageSid, MessageStatus, AccountSid, ErrorCode...' } } } },
      response: { 200: Type.Unsafe(Type.Ref('WebhookReceipt')), ...problems(401, 404) },
    },
  }, async (request) =>
    receiveSmsReceipt(deps, request.params.channelConfigId, `${deps.config.publicUrl}${request.url}`, String(request.body ?? ''), request.headers['x-twilio-signature'] as string | undefined));
}

export { Receipt as WebhookReceipt };
