// A message's status only moves forward, whatever order provider events arrive in.
export const MessageStatus = {
  queued: 'queued', sending: 'sending', sent: 'sent', unknown: 'unknown', delivered: 'delivered', bounced: 'bounced',
  opened: 'opened', clicked: 'clicked', complained: 'complained', unsubscribed: 'unsubscribed', not_sent: 'not_sent', failed: 'failed',
} as const;
export type MessageStatus = (typeof MessageStatus)[keyof typeof MessageStatus];

/** Progress of a message; a status may replace another only with a higher rank. */
export const STATUS_RANK: Record<MessageStatus, number> = {
  queued: 0, sending: 1, sent: 2, unknown: 2, delivered: 3, bounced: 3, not_sent: 3, failed: 3,
  opened: 4, clicked: 5, complained: 6, unsubscribed: 6,
};

export const NotSentReason = {
  unsubscribed: 'unsubscribed', no_address: 'no_address', frequency_capped: 'frequency_capped', quiet_hours: 'quiet_hours',
  render_error: 'render_error', provider_rejected: 'provider_rejected', channel_config_missing: 'channel_config_missing', no_sender: 'no_sender',
} as const;
export type NotSentReason = (typeof NotSentReason)[keyof typeof NotSentReason];
