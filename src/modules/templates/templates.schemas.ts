import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp, Uuid } from '../../http/schemas.ts';

export const TemplateChannel = Type.Enum(['email', 'sms', 'mobile_push', 'web_push', 'webhook'], { description: 'The channel a template is written for' });
export type TemplateChannel = Static<typeof TemplateChannel>;

const Liquid = (max: number, description?: string) => Type.String({ maxLength: max, ...(description ? { description } : {}) });
const Address = Type.Object({ email: Type.String({ format: 'email', maxLength: 320 }), name: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false });

export const EmailContent = Type.Object(
  {
    subject: Liquid(998, 'Liquid'),
    preheader: Type.Optional(Liquid(500, 'Liquid; shown after the subject in inboxes')),
    html: Type.Optional(Liquid(500_000, 'Liquid HTML; give html or mjml')),
    mjml: Type.Optional(Liquid(500_000, 'Liquid MJML, compiled to the HTML that is sent')),
    text: Type.Optional(Liquid(200_000, 'Liquid plain-text part')),
    from: Type.Optional(Address),
    replyTo: Type.Optional(Type.String({ format: 'email', maxLength: 320 })),
  },
  { additionalProperties: false, title: 'EmailContent' },
);
export const SmsContent = Type.Object({ text: Liquid(1600, 'Liquid') }, { additionalProperties: false, title: 'SmsContent' });
export const PushContent = Type.Object(
  {
    title: Liquid(200, 'Liquid'),
    body: Liquid(2000, 'Liquid'),
    imageUrl: Type.Optional(Liquid(2048, 'Liquid; must render to an https URL')),
    clickUrl: Type.Optional(Liquid(2048, 'Liquid; where a click leads')),
    data: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 100 }), Liquid(1000), { maxProperties: 50, description: 'Key/value pairs delivered with the notification (values are Liquid)' })),
  },
  { additionalProperties: false, title: 'PushContent' },
);
export const WebhookContent = Type.Object(
  {
    method: Type.Enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
    url: Liquid(2048, 'Liquid; must render to an http(s) URL that is not on a private network'),
    headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]{1,100}$' }), Liquid(2000), { maxProperties: 30 })),
    body: Type.Optional(Liquid(100_000, 'Liquid')),
  },
  { additionalProperties: false, title: 'WebhookContent' },
);

export const TemplateContent = Type.Union([EmailContent, SmsContent, PushContent, WebhookContent]);
export type EmailContent = Static<typeof EmailContent>;
export type SmsContent = Static<typeof SmsContent>;
export type PushContent = Static<typeof PushContent>;
export type WebhookContent = Static<typeof WebhookContent>;
export type TemplateContent = EmailContent | SmsContent | PushContent | WebhookContent;

const Name = Type.String({ minLength: 1, maxLength: 200 });
const variant = <C extends string, S extends Parameters<typeof Type.Object>[0]>(channel: C, content: ReturnType<typeof Type.Object<S>>) =>
  Type.Object({ name: Name, channel: Type.Literal(channel), content }, { additionalProperties: false, title: `Create${channel}Template` });

export const CreateTemplateBody = Type.Union([
  variant('email', EmailContent),
  variant('sms', SmsContent),
  variant('mobile_push', PushContent),
  variant('web_push', PushContent),
  variant('webhook', WebhookContent),
]);
export type CreateTemplateBody = Static<typeof CreateTemplateBody>;

export const UpdateTemplateBody = Type.Object(
  { name: Type.Optional(Name), content: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'The whole new content, as for the template channel: saving it makes a new version' })) },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateTemplateBody = Static<typeof UpdateTemplateBody>;

export const SmsInfo = Type.Object(
  { encoding: Type.Enum(['GSM-7', 'UCS-2']), characters: Type.Integer(), segments: Type.Integer() },
  { additionalProperties: false, description: 'SMS length, counted on the text as written (merge tags unrendered)' },
);

export const Template = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    channel: TemplateChannel,
    version: Type.Integer({ description: 'The version shown (the current one unless ?version= asked for another)' }),
    currentVersion: Type.Integer(),
    content: Type.Record(Type.String(), Type.Unknown(), { description: 'EmailContent, SmsContent, PushContent or WebhookContent, by channel' }),
    mergeTags: Type.Array(Type.String(), { description: 'The variables the content uses, e.g. customer.first_name' }),
    sms: Type.Optional(SmsInfo),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    versionCreatedAt: Timestamp,
  },
  { $id: 'Template', additionalProperties: false },
);
export type Template = Static<typeof Template>;

export const GetTemplateQuery = Type.Object({ version: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false });
export const ListTemplatesQuery = Type.Object({ ...PageQuery, channel: Type.Optional(TemplateChannel) }, { additionalProperties: false });
export type ListTemplatesQuery = Static<typeof ListTemplatesQuery>;
export const CloneTemplateBody = Type.Object({ name: Type.Optional(Name) }, { additionalProperties: false });

export const PreviewTemplateBody = Type.Object(
  {
    customerId: Type.Optional(Uuid),
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    sample: Type.Optional(
      Type.Object(
        {
          customer: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Customer fields, as templates see them (snake_case, custom fields at the top level)' })),
          event: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
        },
        { additionalProperties: false },
      ),
    ),
    event: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Event properties to render with a real customer' })),
  },
  { additionalProperties: false, description: 'Render for a real customer (customerId) or sample data' },
);
export type PreviewTemplateBody = Static<typeof PreviewTemplateBody>;

export const TemplatePreview = Type.Object(
  {
    version: Type.Integer(),
    rendered: Type.Record(Type.String(), Type.Unknown()),
    missing: Type.Array(Type.String(), { description: 'Merge tags that have no value for this customer or sample' }),
    sms: Type.Optional(SmsInfo),
  },
  { $id: 'TemplatePreview', additionalProperties: false },
);
export type TemplatePreview = Static<typeof TemplatePreview>;
