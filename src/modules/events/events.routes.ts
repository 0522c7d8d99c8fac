import type { Deps } from '../../deps.ts';
import { workspaceOf } from '../../http/auth.ts';
import { problems } from '../../http/problem.ts';
import { Ref } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { IngestResult, PostEventsBody } from './events.schemas.ts';
import { ingestEvents } from './events.service.ts';

export async function eventRoutes(app: App, deps: Deps) {
  app.post('/v1/events', {
    config: { access: 'write' },
    bodyLimit: 5 * 1024 * 1024,
    schema: {
      operationId: 'postEvents', tags: ['events'],
      summary: 'Record one event, or a batch of up to 1000 as { events: [...] }',
      description: 'All or nothing. An event whose id was already stored is reported as a duplicate and not stored again.',
      body: PostEventsBody,
      response: { 200: Ref(IngestResult), ...problems(400, 401, 403, 413, 415, 422) },
    },
  }, async (request) => {
    const body = request.body;
    const batch = 'events' in body && Array.isArray(body.events);
    return ingestEvents(deps, workspaceOf(request), batch ? body.events : [body as never], batch ? '/events' : '');
  });
}
