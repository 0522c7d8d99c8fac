import { Type, type Static } from 'typebox';
import { FilterField } from '../../audience/filter.ts';
import { PageQuery, Timestamp, Uuid } from '../../http/schemas.ts';

const Name = Type.String({ minLength: 1, maxLength: 200 });
const Description = Type.String({ maxLength: 2000 });

export const Segment = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    filter: FilterField('Who belongs to the segment'),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Segment', additionalProperties: false },
);
export type Segment = Static<typeof Segment>;

export const SaveSegmentBody = Type.Object(
  { name: Name, description: Type.Optional(Description), filter: FilterField('Who belongs to the segment: a filter tree (see AudienceFilter)') },
  { additionalProperties: false },
);
export type SaveSegmentBody = Static<typeof SaveSegmentBody>;

export const ListSegmentsQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });
export type ListSegmentsQuery = Static<typeof ListSegmentsQuery>;

const Columns = Type.Array(Type.String({ maxLength: 200 }), {
  maxItems: 50,
  description: 'Customer fields to return per row: email, phone, externalId, timeZone, locale, createdAt, updatedAt, custom.<path>',
});
const previewPage = {
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 500, default: 20, description: 'Customers to return (0: the count only)' })),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'The nextCursor of the previous page' })),
  columns: Type.Optional(Columns),
};

export const PreviewSavedBody = Type.Object(previewPage, { additionalProperties: false });
export type PreviewSavedBody = Static<typeof PreviewSavedBody>;
export const PreviewFilterBody = Type.Object({ filter: FilterField('The definition to execute'), ...previewPage }, { additionalProperties: false });
export type PreviewFilterBody = Static<typeof PreviewFilterBody>;

export const AudiencePreview = Type.Object(
  {
    count: Type.Integer({ description: 'How many customers match now' }),
    data: Type.Array(
      Type.Object(
        { id: Uuid, externalId: Type.Union([Type.String(), Type.Null()]), fields: Type.Record(Type.String(), Type.Unknown(), { description: 'The columns asked for' }) },
        { additionalProperties: false },
      ),
    ),
    nextCursor: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'AudiencePreview', additionalProperties: false, description: 'The count and the first page of matching customers, by id' },
);
export type AudiencePreview = Static<typeof AudiencePreview>;
