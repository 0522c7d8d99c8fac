// Typed failures thrown by services. One handler (problem.ts) turns them into problem+json;
// the GraphQL error formatter turns them into extensions.code.

export interface FieldError {
  /** JSON pointer (RFC 6901) of the bad field in the request. */
  pointer: string;
  detail: string;
}

export class HeraldError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, title: string, detail: string, errors?: FieldError[], headers: Record<string, string> = {}) {
    super(detail);
    this.status = status;
    this.code = code;
    this.title = title;
    this.errors = errors;
    this.headers = headers;
  }
}

export const notFound = (what: string) => new HeraldError(404, 'not_found', 'Not Found', `${what} was not found`);
export const conflict = (detail: string) => new HeraldError(409, 'conflict', 'Conflict', detail);
export const invalid = (detail: string, errors?: FieldError[]) => new HeraldError(400, 'validation_failed', 'Bad Request', detail, errors);
export const unprocessable = (detail: string, errors?: FieldError[]) => new HeraldError(422, 'unprocessable', 'Unprocessable Content', detail, errors);
export const unauthorized = (detail: string) =>
  new HeraldError(401, 'unauthorized', 'Unauthorized', detail, undefined, { 'www-authenticate': 'Bearer realm="herald"' });
export const forbidden = (detail: string) => new HeraldError(403, 'forbidden', 'Forbidden', detail);
export const unavailable = (detail: string) => new HeraldError(503, 'unavailable', 'Service Unavailable', detail, undefined, { 'retry-after': '5' });
