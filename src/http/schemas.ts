// Schema pieces shared by every module's routes.
import { Type, type Static, type TSchema } from 'typebox';
import { invalid } from './errors.ts';

export const Uuid = Type.String({ format: 'uuid' });
export const Timestamp = Type.String({ format: 'date-time' });
export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });
export type IdParams = Static<typeof IdParams>;

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'Page size (1-500)' })),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'The nextCursor of the previous page' })),
};

export const Page = <T extends TSchema>(item: T, name: string) =>
  Type.Object(
    { data: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as ?cursor= for the next page; null on the last page' }) },
    { additionalProperties: false, description: `A page of ${name}` },
  );

/** A reference to a named component schema, typed as the schema it names. */
export const Ref = <T extends TSchema>(schema: T): T => Type.Unsafe<Static<T>>(Type.Ref((schema as { $id?: string }).$id!)) as unknown as T;

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Throws a 400 naming the field when `zone` is given and is not an IANA time zone. */
export function checkTimeZone(zone: string | null | undefined, pointer = '/timeZone'): void {
  if (zone && !isTimeZone(zone)) throw invalid('Unknown time zone', [{ pointer, detail: `"${zone}" is not an IANA time zone` }]);
}

export const TimeZone = Type.String({ minLength: 1, maxLength: 64, description: 'An IANA time zone, e.g. Europe/Paris' });
