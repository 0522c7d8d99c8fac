// The committed contract is what the routes produce, it is valid OpenAPI 3.1, and every
// operation is usable by generated clients.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { Validator } from '@seriousme/openapi-schema-validator';
import { generateOpenApi, renderGraphqlSchema, renderOpenApi } from '../src/http/contract.ts';
import { caller, startHerald } from './helpers/app.ts';

const committed = readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8');
const generated = await generateOpenApi();

t.test('openapi/openapi.json is current (run `npm run openapi` after changing a route)', async (t) => {
  t.equal(renderOpenApi(generated), committed);
});

t.test('openapi/schema.graphql is current (run `npm run openapi` after changing the GraphQL schema)', async (t) => {
  t.equal(renderGraphqlSchema(), readFileSync(new URL('../openapi/schema.graphql', import.meta.url), 'utf8'));
});

t.test('the document is valid OpenAPI 3.1', async (t) => {
  const result = await new Validator().validate(JSON.parse(committed));
  t.same(result.errors ?? [], [], 'no validation errors');
  t.ok(result.valid);
  t.equal(JSON.parse(committed).openapi, '3.1.0');
});

interface Operation {
  operationId?: string;
  tags?: string[];
  summary?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}

t.test('every operation has a unique operationId, a tag, a summary, and documented errors', async (t) => {
  const doc = JSON.parse(committed) as { paths: Record<string, Record<string, Operation>> };
  const ids = new Set<string>();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const where = `${method.toUpperCase()} ${path}`;
      t.ok(op.operationId && /^[a-z][A-Za-z]+$/.test(op.operationId), `${where} has a camelCase operationId`);
      t.notOk(ids.has(op.operationId!), `${where}: operationId is unique`);
      ids.add(op.operationId!);
      t.ok(op.tags?.length, `${where} has a tag`);
      t.ok(op.summary, `${where} has a summary`);
      if (path.startsWith('/v1/')) {
        t.ok(op.responses['401'], `${where} documents 401`);
        t.ok(op.responses['429'], `${where} documents 429`);
        t.ok(op.responses['401']?.content?.['application/problem+json'], `${where}: errors are problem+json`);
        const json = op.requestBody?.content['application/json']?.schema;
        if (json && json.type === 'object') t.equal(json.additionalProperties, false, `${where}: body rejects unknown fields`);
      } else {
        t.same(op.security, [], `${where} needs no token`);
      }
    }
  }
  for (const id of ['createCustomer', 'listCustomers', 'getCustomer', 'updateCustomer', 'deleteCustomer', 'setConsent', 'createPushSubscription', 'importCustomers', 'getImport', 'postEvents', 'createWorkspace', 'getWorkspace', 'createApiKey', 'revokeApiKey']) {
    t.ok(ids.has(id), `${id} exists`);
  }
});

t.test('the running server serves the same document and a docs page', async (t) => {
  const { app } = await startHerald(t);
  const anonymous = caller(app, null);
  const served = await anonymous('GET', '/openapi.json');
  t.equal(served.statusCode, 200);
  t.same(served.json(), JSON.parse(committed));
  const docs = await anonymous('GET', '/docs/');
  t.equal(docs.statusCode, 200);
  t.match(docs.headers['content-type'], /text\/html/);
});
