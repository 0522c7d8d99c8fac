// Request validation. Bodies are strict (no type coercion, unknown fields rejected, every error
// reported); params, querystrings and headers arrive as strings, so they are coerced.
import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

function makeAjv(options: Options): Ajv {
  const ajv = new Ajv({ allErrors: true, removeAdditional: false, useDefaults: true, strict: false, ...options });
  (addFormats as unknown as (a: Ajv) => void)(ajv);
  return ajv;
}

const serviceAjv = makeAjv({ coerceTypes: false, useDefaults: false });

/**
 * A validator for a schema a service checks itself (a row of an import, content whose shape
 * depends on a stored channel): the same strict rules as request bodies.
 */
export const compileStrict = <T = unknown>(schema: object) => serviceAjv.compile<T>(schema);

/**
 * Parts of a body that a service checks itself (marked `x-checked-by-service`, e.g. a filter
 * tree) are documented in full but accepted as any JSON value here, so that the service can name
 * each bad node precisely instead of Ajv listing every branch of a union.
 */
function withoutServiceChecked(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutServiceChecked);
  if (typeof schema !== 'object' || schema === null) return schema;
  if ((schema as Record<string, unknown>)['x-checked-by-service']) return {};
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, withoutServiceChecked(v)]));
}

export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = makeAjv({ coerceTypes: false });
  const coercing = makeAjv({ coerceTypes: 'array' });
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(withoutServiceChecked(schema) as object) as never;
}
