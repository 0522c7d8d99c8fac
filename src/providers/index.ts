// The providers Herald ships, by the name channel configs use.
import { fcmProvider } from './fcm.ts';
import { sandboxProvider } from './sandbox.ts';
import { sendgridProvider } from './sendgrid.ts';
import { twilioProvider } from './twilio.ts';
import type { Provider } from './types.ts';
import { webPushProvider } from './web-push.ts';
import { webhookProvider } from './webhook.ts';

export function defaultProviders(): Record<string, Provider> {
  return { sendgrid: sendgridProvider, twilio: twilioProvider, web_push: webPushProvider, fcm: fcmProvider, webhook: webhookProvider, sandbox: sandboxProvider };
}
