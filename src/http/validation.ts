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

export function validatorCompiler(): FastifySchemaCompiler<unknown> {
  const strict = makeAjv({ coerceTypes: false });
  const coercing = makeAjv({ coerceTypes: 'array' });
  return ({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema as object) as never;
}
