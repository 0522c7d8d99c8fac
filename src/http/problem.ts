// RFC 9457 problem+json: the schema every route documents, and the handlers that make every
// failure (ours, Fastify's, unknown routes, crashes) answer in that shape without leaking stacks.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Type, type Static } from 'typebox';
import { isDatabaseDown } from '../db/errors.ts';
import { HeraldError, type FieldError } from './errors.ts';

export const PROBLEM_TYPE_BASE = 'https://herald.dev/problems/';
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export const Problem = Type.Object(
  {
    type: Type.String({ description: 'A URI naming the kind of problem' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String({ description: 'The request id' })),
    code: Type.String({ description: 'A stable machine-readable code' }),
    errors: Type.Optional(
      Type.Array(Type.Object({ pointer: Type.String({ description: 'JSON pointer (RFC 6901) of the bad field' }), detail: Type.String() }, { additionalProperties: false })),
    ),
  },
  { $id: 'Problem', additionalProperties: false, description: 'An RFC 9457 problem document' },
);
export type Problem = Static<typeof Problem>;

const DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or fails validation',
  401: 'No, a bad, expired or revoked token',
  403: 'The token lacks the scope for this operation',
  404: 'Not found (or not in your workspace)',
  409: 'Conflicts with the current state',
  413: 'The body is larger than allowed',
  415: 'Unsupported content type',
  422: 'Well-formed but cannot be processed (e.g. an Idempotency-Key reused with another body)',
  429: 'Too many requests: see Retry-After',
  503: 'The service is unavailable: retry later',
};

/** Response schemas for the given error statuses, for a route's `response`. */
export function problems(...statuses: number[]): Record<number, unknown> {
  const out: Record<number, unknown> = {};
  for (const status of [...statuses, 429]) {
    out[status] = { description: DESCRIPTIONS[status] ?? 'Error', content: { [PROBLEM_CONTENT_TYPE]: { schema: Type.Ref('Problem') } } };
  }
  return out;
}

export function problemBody(request: FastifyRequest, status: number, code: string, title: string, detail: string, errors?: FieldError[]): Problem {
  return { type: PROBLEM_TYPE_BASE + code, title, status, detail, instance: request.id, code, ...(errors ? { errors } : {}) };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, p: Problem, headers: Record<string, string> = {}) {
  return reply.code(p.status).headers(headers).type(PROBLEM_CONTENT_TYPE).serializer(JSON.stringify).send(p);
}

interface AjvError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Ajv errors to JSON pointers into the request, naming the extra or missing property itself. */
export function fieldErrors(all: AjvError[], context: string | undefined): FieldError[] {
  const validation = closestBranch(all);
  const root = context === 'body' ? '' : `/${context ?? 'body'}`;
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of validation) {
    let pointer = root + e.instancePath;
    let detail = e.message ?? 'is invalid';
    if (e.keyword === 'additionalProperties') {
      pointer += `/${escapePointer(String(e.params.additionalProperty))}`;
      detail = 'is not a known field';
    } else if (e.keyword === 'required') {
      pointer += `/${escapePointer(String(e.params.missingProperty))}`;
      detail = 'is required';
    } else if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
      if (out.some((o) => o.pointer.startsWith(pointer))) continue;
    }
    const key = `${pointer} ${detail}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ pointer, detail });
  }
  return out.slice(0, 50);
}

/**
 * A value that matches no branch of an anyOf gets the errors of every branch. Report only the
 * branch it came closest to (the fewest errors), which is the one the client meant.
 */
function closestBranch(errors: AjvError[]): AjvError[] {
  const union = errors.find((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  if (!union) return errors;
  const prefix = `${union.schemaPath}/`;
  const byBranch = new Map<string, AjvError[]>();
  for (const e of errors) {
    if (!e.schemaPath.startsWith(prefix)) continue;
    const branch = e.schemaPath.slice(prefix.length).split('/')[0]!;
    byBranch.set(branch, [...(byBranch.get(branch) ?? []), e]);
  }
  if (byBranch.size === 0) return errors;
  // A branch that fails at the value itself (missing or unknown fields, a wrong discriminator)
  // is the wrong shape; one whose errors are all deeper is the shape the client meant.
  const depth = union.instancePath.split('/').length;
  const shallow = (e: AjvError) =>
    e.instancePath === union.instancePath || (e.keyword === 'const' && e.instancePath.split('/').length === depth + 1);
  const score = (list: AjvError[]) => list.filter(shallow).length * 1000 + list.length;
  const best = [...byBranch.values()].sort((a, b) => score(a) - score(b))[0]!;
  return [...errors.filter((e) => e !== union && !e.schemaPath.startsWith(prefix)), ...best];
}

const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

const FASTIFY_CODES: Record<string, { status: number; code: string; title: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'payload_too_large', title: 'Content Too Large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'unsupported_media_type', title: 'Unsupported Media Type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'bad_content_length', title: 'Bad Request' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'empty_body', title: 'Bad Request' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'malformed_json', title: 'Bad Request' },
  FST_ERR_CTP_EMPTY_TYPE: { status: 415, code: 'unsupported_media_type', title: 'Unsupported Media Type' },
  FST_ERR_CTP_INVALID_TYPE: { status: 415, code: 'unsupported_media_type', title: 'Unsupported Media Type' },
};

export const problemPlugin = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((error: FastifyError, request, reply) => {
      if (error instanceof HeraldError) {
        return sendProblem(request, reply, problemBody(request, error.status, error.code, error.title, error.message, error.errors), error.headers);
      }
      if (error.validation) {
        const errors = fieldErrors(error.validation as AjvError[], error.validationContext);
        const where = error.validationContext ?? 'body';
        return sendProblem(request, reply, problemBody(request, 400, 'validation_failed', 'Bad Request', `The request ${where} is invalid`, errors));
      }
      const known = error.code ? FASTIFY_CODES[error.code] : undefined;
      if (known) return sendProblem(request, reply, problemBody(request, known.status, known.code, known.title, error.message));
      if (error instanceof SyntaxError && error.statusCode === 400) {
        return sendProblem(request, reply, problemBody(request, 400, 'malformed_json', 'Bad Request', 'The body is not valid JSON'));
      }
      if (error.statusCode === 429) {
        return sendProblem(request, reply, problemBody(request, 429, 'rate_limited', 'Too Many Requests', error.message));
      }
      if (isBadData(error)) {
        // A value PostgreSQL refuses (a number out of range, text it cannot store): the input's fault.
        request.log.warn({ err: error }, 'value refused by the database');
        return sendProblem(request, reply, problemBody(request, 400, 'invalid_value', 'Bad Request', 'A value in the request cannot be stored or compared (out of range or malformed)'));
      }
      if (isDatabaseDown(error)) {
        request.log.warn({ err: error }, 'database unavailable');
        return sendProblem(request, reply, problemBody(request, 503, 'unavailable', 'Service Unavailable', 'The database is unavailable; retry shortly'), { 'retry-after': '5' });
      }
      const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
      if (status < 500) return sendProblem(request, reply, problemBody(request, status, 'bad_request', 'Bad Request', error.message));
      request.log.error({ err: error }, 'unhandled error');
      return sendProblem(request, reply, problemBody(request, 500, 'internal', 'Internal Server Error', `Something went wrong on our side; quote request id ${request.id}`));
    });

    app.setNotFoundHandler((request, reply) =>
      sendProblem(request, reply, problemBody(request, 404, 'not_found', 'Not Found', `No route ${request.method} ${request.url.split('?')[0]}`)),
    );
  },
  { name: 'herald-problem' },
);

/** PostgreSQL's data exceptions (class 22): a malformed or out-of-range value. */
export function isBadData(error: unknown): boolean {
  // drizzle wraps the driver's error: the PostgresError may be the cause.
  const pg = [error, (error as { cause?: unknown } | null)?.cause].find((e) => (e as { name?: string } | null)?.name === 'PostgresError') as { code?: unknown } | undefined;
  return typeof pg?.code === 'string' && /^22[0-9A-Z]{3}$/.test(pg.code);
}
