// The development default: accepts everything, sends nothing. What it "sent" is the message row itself.
import type { Provider } from './types.ts';

export const sandboxProvider: Provider = {
  async send(request) {
    return { kind: 'sent', providerMessageId: `sandbox-${request.messageId}` };
  },
};
