import { Type, type Static } from 'typebox';
import { FilterField } from '../../audience/filter.ts';
import { PageQuery, Timestamp, TimeZone, Uuid } from '../../http/schemas.ts';
import { Channel } from '../channels/channels.schemas.ts';

export const ActionKind = Type.Enum(['triggered', 'recurring', 'single_send'], {
  description: 'triggered: re-checked every few minutes and when a relevant event arrives, newcomers get it; recurring: at a time or on a schedule; single_send: once, now',
});
export type ActionKind = Static<typeof ActionKind>;
export const ActionStatus = Type.Enum(['inactive', 'active', 'paused', 'completed'], { description: 'inactive: saved; active: launched; paused; completed: no run left' });
export type ActionStatus = Static<typeof ActionStatus>;

const Name = Type.String({ minLength: 1, maxLength: 200 });
const Schedule = Type.Union(
  [
    Type.Object({ at: Timestamp }, { additionalProperties: false, title: 'LaunchOneTime', description: 'Launch one time, at this moment' }),
    Type.Object(
      { cron: Type.String({ minLength: 9, maxLength: 100, description: 'A cron expression (minute hour day-of-month month day-of-week), e.g. "0 9 * * 1" for Mondays at 9:00' }), timeZone: TimeZone },
      { additionalProperties: false, title: 'RecurringSchedule', description: 'Recurring, in a time zone (daylight saving is followed)' },
    ),
  ],
  { description: 'recurring actions only' },
);
const InlineTemplate = Type.Object(
  {
    name: Type.Optional(Name),
    content: Type.Record(Type.String(), Type.Unknown(), { description: 'The content, as in POST /v1/templates for the action\'s channel' }),
    save: Type.Optional(Type.Boolean({ default: false, description: 'Also list it among the templates (otherwise it exists only for this action\'s messages)' })),
  },
  { additionalProperties: false, description: 'A template written inline, instead of templateId' },
);

const settings = {
  name: Name,
  channel: Channel,
  channelConfigId: Type.Optional(Type.String({ format: 'uuid', description: 'The channel config to send through; omitted: the channel\'s default config, as it is when the action is saved' })),
  templateId: Type.Optional(Uuid),
  template: Type.Optional(InlineTemplate),
  audience: FilterField('Who gets the action: a filter tree (a segment reference, customers who got an action template of an earlier action, or any inline filter)'),
  everyMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1440, description: 'triggered only: how often the audience is re-checked (default 5)' })),
  schedule: Type.Optional(Schedule),
  repeat: Type.Optional(Type.Enum(['once', 'many'], { description: 'recurring with a cron schedule: once: each customer gets it once ever, later runs reach newcomers only (default); many: every matching customer on every run' })),
  startAt: Type.Optional(Timestamp),
  endAt: Type.Optional(Timestamp),
};

export const CreateActionBody = Type.Object(
  { ...settings, kind: ActionKind, launch: Type.Optional(Type.Boolean({ default: false, description: 'Save and launch' })) },
  { additionalProperties: false },
);
export type CreateActionBody = Static<typeof CreateActionBody>;

export const UpdateActionBody = Type.Object(
  { ...settings, launch: Type.Optional(Type.Boolean({ default: false, description: 'Save and (re-)launch' })) },
  { additionalProperties: false, description: 'The whole new settings; the kind cannot change. An active action runs with them from its next run.' },
);
export type UpdateActionBody = Static<typeof UpdateActionBody>;

export const CloneActionBody = Type.Object({ name: Type.Optional(Name) }, { additionalProperties: false });
export type CloneActionBody = Static<typeof CloneActionBody>;

const NullableTime = Type.Union([Timestamp, Type.Null()]);
export const Action = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    kind: ActionKind,
    status: ActionStatus,
    channel: Channel,
    channelConfigId: Uuid,
    templateId: Uuid,
    audience: FilterField('Who gets the action'),
    everyMinutes: Type.Optional(Type.Integer()),
    schedule: Type.Optional(Schedule),
    repeat: Type.Optional(Type.Enum(['once', 'many'])),
    startAt: NullableTime,
    endAt: NullableTime,
    nextRunAt: Type.Union([Timestamp, Type.Null()], { description: 'When the next run starts, while active' }),
    lastRunAt: NullableTime,
    launchedAt: NullableTime,
    createdAt: Timestamp,
    updatedAt: Timestamp,
    deletedAt: Type.Union([Timestamp, Type.Null()], { description: 'Set once deleted: gone from lists, its messages and reports stay readable' }),
  },
  { $id: 'Action', additionalProperties: false },
);
export type Action = Static<typeof Action>;

export const ListActionsQuery = Type.Object({ ...PageQuery, kind: Type.Optional(ActionKind), status: Type.Optional(ActionStatus) }, { additionalProperties: false });
export type ListActionsQuery = Static<typeof ListActionsQuery>;

export const ActionRun = Type.Object(
  {
    id: Uuid,
    trigger: Type.Enum(['launch', 'schedule', 'event'], { description: 'What started the run' }),
    status: Type.Enum(['pending', 'running', 'finished', 'cancelled', 'failed']),
    scheduledFor: Timestamp,
    startedAt: NullableTime,
    finishedAt: NullableTime,
    durationMs: Type.Union([Type.Number(), Type.Null()], { description: 'Wall time of the run (audience query and queueing)' }),
    matched: Type.Union([Type.Integer(), Type.Null()], { description: 'Customers in the audience at the run' }),
    queued: Type.Union([Type.Integer(), Type.Null()], { description: 'Messages the run queued' }),
    skipped: Type.Record(Type.String(), Type.Integer(), { description: 'Customers matched but not queued, by reason (already_received)' }),
    sent: Type.Integer({ description: 'Of its messages: sent or further' }),
    notSent: Type.Record(Type.String(), Type.Integer(), { description: 'Of its messages: not sent, by reason' }),
    error: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'ActionRun', additionalProperties: false },
);
export type ActionRun = Static<typeof ActionRun>;
