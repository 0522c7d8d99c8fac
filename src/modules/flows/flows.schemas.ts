import { Type, type Static } from 'typebox';
import { PageQuery, Timestamp } from '../../http/schemas.ts';
import { FlowGraph } from './flows.graph.ts';

const Name = Type.String({ minLength: 1, maxLength: 200 });

export const Reentry = Type.Object(
  {
    mode: Type.Enum(['once', 'every_time', 'period'], { description: 'once: a customer is launched by the flow once ever; every_time; period: at most once per period, counted from the last group of steps run for them' }),
    period: Type.Optional(Type.Object({ amount: Type.Integer({ minimum: 1, maximum: 100000 }), unit: Type.Enum(['minutes', 'hours', 'days']) }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type Reentry = Static<typeof Reentry>;

export const FlowSettings = Type.Object(
  {
    reentry: Type.Optional(Reentry),
    startAt: Type.Optional(Type.Union([Timestamp, Type.Null()], { description: 'No entries before' })),
    endAt: Type.Optional(Type.Union([Timestamp, Type.Null()], { description: 'No entries after (customers in flight finish)' })),
  },
  { additionalProperties: false },
);
export type FlowSettings = Static<typeof FlowSettings>;

// Graphs are checked node by node by the service (flows.validate.ts), which names each fault.
const GraphField = Type.Unsafe<FlowGraph>({ $ref: 'FlowGraph', 'x-checked-by-service': true });

export const CreateFlowBody = Type.Object({ name: Name, graph: Type.Optional(GraphField), settings: Type.Optional(FlowSettings) }, { additionalProperties: false });
export type CreateFlowBody = Static<typeof CreateFlowBody>;
export const SaveDraftBody = Type.Object({ name: Type.Optional(Name), graph: GraphField, settings: Type.Optional(FlowSettings) }, { additionalProperties: false });
export type SaveDraftBody = Static<typeof SaveDraftBody>;
export const ValidateFlowBody = Type.Object({ graph: Type.Optional(GraphField) }, { additionalProperties: false, description: 'Checks the given graph, or the draft' });
export type ValidateFlowBody = Static<typeof ValidateFlowBody>;

export const FlowProblem = Type.Object(
  { nodeId: Type.Union([Type.String(), Type.Null()]), field: Type.String(), detail: Type.String() },
  { additionalProperties: false },
);

export const FlowVersion = Type.Object(
  {
    version: Type.Integer(),
    status: Type.Enum(['draft', 'ready', 'active', 'paused', 'stopped', 'superseded', 'discarded'], { description: 'draft/ready: the current draft; active/paused: the running version; stopped: ran before; superseded: an earlier save of a draft' }),
    graph: Type.Unsafe<FlowGraph>(Type.Ref('FlowGraph')),
    settings: FlowSettings,
    problems: Type.Array(FlowProblem),
    draftedAt: Timestamp,
    launchedAt: Type.Union([Timestamp, Type.Null()]),
    stoppedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'FlowVersion', additionalProperties: false },
);
export type FlowVersion = Static<typeof FlowVersion>;

export const Flow = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    status: Type.Enum(['draft', 'ready', 'launching', 'active', 'paused', 'creating_draft'], { description: 'draft: nodes not all filled in; ready: can be launched; active; paused' }),
    activeVersion: Type.Union([Type.Integer(), Type.Null()]),
    draftVersion: Type.Union([Type.Integer(), Type.Null()]),
    draftStatus: Type.Union([Type.Enum(['draft', 'ready']), Type.Null()], { description: 'Of the draft, when there is one' }),
    problems: Type.Array(FlowProblem, { description: 'What keeps the draft from being ready' }),
    settings: FlowSettings,
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Flow', additionalProperties: false },
);
export type Flow = Static<typeof Flow>;

export const ListFlowsQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });
export type ListFlowsQuery = Static<typeof ListFlowsQuery>;
export const VersionParams = Type.Object({ id: Type.String({ format: 'uuid' }), version: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });

export const FlowStats = Type.Object(
  {
    nodes: Type.Array(
      Type.Object(
        {
          nodeId: Type.String(),
          type: Type.String(),
          entered: Type.Integer({ description: 'Customers who reached the node' }),
          waiting: Type.Integer({ description: 'Customers at the node now' }),
          branches: Type.Record(Type.String(), Type.Integer(), { description: 'Passed, per branch ("next" for the single way out)' }),
          exited: Type.Record(Type.String(), Type.Integer(), { description: 'Left the flow here, per reason' }),
          conversions: Type.Optional(Type.Record(Type.String(), Type.Integer(), { description: 'A/B test: customers per variant who had the conversion event after it' })),
        },
        { additionalProperties: false },
      ),
    ),
    entries: Type.Object({ active: Type.Integer(), paused: Type.Integer(), done: Type.Integer() }, { additionalProperties: false }),
  },
  { $id: 'FlowStats', additionalProperties: false },
);
export const StatsQuery = Type.Object({ conversionEvent: Type.Optional(Type.String({ maxLength: 100, description: 'For A/B tests: the event that counts as a conversion' })) }, { additionalProperties: false });
export type StatsQuery = Static<typeof StatsQuery>;

export const DryRunBody = Type.Object(
  {
    since: Timestamp,
    until: Type.Optional(Timestamp),
    version: Type.Optional(Type.Enum(['draft', 'active'], { default: 'draft' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000, default: 10000, description: 'At most this many entries are simulated' })),
  },
  { additionalProperties: false },
);
export type DryRunBody = Static<typeof DryRunBody>;

export const DryRunReport = Type.Object(
  {
    version: Type.Integer(),
    entries: Type.Integer({ description: 'Simulated entries (trigger events of the period, or the schedule audience)' }),
    truncated: Type.Boolean(),
    nodes: Type.Array(Type.Object({ nodeId: Type.String(), type: Type.String(), reached: Type.Integer(), branches: Type.Record(Type.String(), Type.Integer()), capped: Type.Integer() }, { additionalProperties: false })),
    messages: Type.Array(Type.Object({ nodeId: Type.String(), channel: Type.String(), count: Type.Integer(), cost: Type.Number() }, { additionalProperties: false })),
    totalCost: Type.Number(),
  },
  { $id: 'DryRunReport', additionalProperties: false, description: 'What the flow would have done, sending nothing and changing nothing' },
);
