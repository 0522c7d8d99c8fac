import type { Readable } from 'node:stream';
import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { HeraldError } from '../../http/errors.ts';
import { problems } from '../../http/problem.ts';
import { IdParams, Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { Import, IMPORT_FORMATS, MAX_IMPORT_BYTES } from './imports.schemas.ts';
import { getImport, startImport } from './imports.service.ts';

const tags = ['customers'];
const upload = { type: 'string', description: 'The file' };

export async function importRoutes(app: App, deps: Deps) {
  // The upload is handed over as a stream; the service stores it chunk by chunk.
  app.addContentTypeParser(Object.keys(IMPORT_FORMATS), (_request, payload, done) => done(null, payload));

  app.post('/v1/customers/import', {
    config: { access: 'write', idempotent: false },
    bodyLimit: MAX_IMPORT_BYTES,
    // The body is a stream: it is read (and checked row by row) by the import job.
    validatorCompiler: () => () => true,
    schema: {
      operationId: 'importCustomers', tags,
      summary: 'Import customers from CSV or NDJSON (streamed; processed in the background)',
      description:
        'CSV: a header row; the columns externalId (required), email, phone, timeZone, locale fill the profile, any other column ' +
        '(optionally prefixed "custom.") becomes a custom field. NDJSON: one customer object a line, as for createCustomer but with ' +
        'externalId required. Rows are upserted by externalId; a bad row is reported at GET /v1/imports/{id} and skipped. ' +
        'Idempotency-Key is not applied to this route: re-posting the same file updates the same customers.',
      body: { content: { 'text/csv': { schema: upload }, 'application/x-ndjson': { schema: upload } } },
      response: { 202: Ref(Import), ...problems(400, 401, 403, 413, 415) },
    },
  }, async (request, reply) => {
    const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() as keyof typeof IMPORT_FORMATS;
    if (!IMPORT_FORMATS[type]) {
      throw new HeraldError(415, 'unsupported_media_type', 'Unsupported Media Type', `Send the file as ${Object.keys(IMPORT_FORMATS).join(' or ')}`);
    }
    const created = await startImport(deps, workspaceOf(request), IMPORT_FORMATS[type], request.body as Readable);
    return reply.code(202).header('location', `/v1/imports/${created.id}`).send(created);
  });

  app.get('/v1/imports/:id', {
    config: { access: 'read' },
    schema: {
      operationId: 'getImport', tags, summary: 'Progress and row errors of an import',
      params: IdParams,
      response: { 200: Ref(Import), ...problems(400, 401, 403, 404) },
    },
  }, async (request) => getImport(deps, workspaceOf(request), request.params.id));
}

