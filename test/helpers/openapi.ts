// The committed OpenAPI document as data for tests that enumerate the API (fuzzing, tenant
// isolation): its operations, $ref resolution, and Ajv validators for documented responses.
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Call } from './app.ts';

export type Schema = Record<string, unknown>;

export interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema: Schema;
}

export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  operationId: string;
  summary?: string;
  parameters: Parameter[];
  security?: unknown[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, { description?: string; content?: Record<string, { schema: Schema }> }>;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, Omit<Operation, 'method' | 'path'>>>;
  components: { schemas: Record<string, Schema> };
}

export const document: OpenApiDocument = JSON.parse(readFileSync(new URL('../../openapi/openapi.json', import.meta.url), 'utf8'));
export const graphqlSdl = readFileSync(new URL('../../openapi/schema.graphql', import.meta.url), 'utf8');

/** Every operation of the document, in document order. */
export function operations(): Operation[] {
  const out: Operation[] = [];
  for (const [path, ops] of Object.entries(document.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      out.push({ ...op, parameters: op.parameters ?? [], method: method.toUpperCase() as Operation['method'], path });
    }
  }
  return out;
}

export const pathParams = (op: Operation) => op.parameters.filter((p) => p.in === 'path');

/** Follows a local $ref ("#/components/schemas/X") until a schema that is not a bare ref. */
export function deref(schema: Schema): Schema {
  let s = schema;
  for (let i = 0; i < 20 && typeof s.$ref === 'string'; i++) {
    const parts = (s.$ref as string).replace(/^#\//, '').split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let target: unknown = document;
    for (const p of parts) target = (target as Record<string, unknown>)[p];
    if (!target) throw new Error(`unresolvable $ref ${String(s.$ref)}`);
    s = target as Schema;
  }
  return s;
}

/** Fills a path template: /v1/customers/{id} with { id: 'x' }, each value URI-encoded. */
export function fillPath(path: string, values: Record<string, string>): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    if (!(name in values)) throw new Error(`no value for path parameter ${name} of ${path}`);
    return encodeURIComponent(values[name]!);
  });
}

// One Ajv holding the whole document, so that "#/components/schemas/X" resolves inside it.
const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false, validateFormats: true });
(addFormats as unknown as (a: Ajv) => void)(ajv);
ajv.addSchema(document as unknown as Schema, 'openapi.json');
const validators = new Map<string, ValidateFunction>();

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/**
 * Checks a response against the operation's documentation: the status is documented, the
 * content type is one documented for it, and a JSON body matches its schema. Returns the
 * problems found (empty when the response is as documented).
 */
export function checkResponse(op: Operation, res: { statusCode: number; headers: Record<string, unknown>; body: string }): string[] {
  const documented = op.responses[String(res.statusCode)];
  if (!documented) return [`status ${res.statusCode} is not documented (documented: ${Object.keys(op.responses).join(', ')})`];
  const content = documented.content;
  if (!content) return [];
  const type = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
  const media = content[type];
  if (!media) return [`content-type ${JSON.stringify(type)} is not documented for ${res.statusCode} (documented: ${Object.keys(content).join(', ')})`];
  if (!/json/.test(type)) return [];
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    return [`${type} body is not JSON: ${res.body.slice(0, 200)}`];
  }
  const key = `${op.method} ${op.path} ${res.statusCode} ${type}`;
  let validate = validators.get(key);
  if (!validate) {
    const ref = `openapi.json#/${pointer('paths', op.path, op.method.toLowerCase(), 'responses', String(res.statusCode), 'content', type, 'schema')}`;
    validate = ajv.compile({ $ref: ref });
    validators.set(key, validate);
  }
  if (validate(body)) return [];
  return (validate.errors ?? []).slice(0, 10).map((e) => `body${e.instancePath} ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
}

/** Text that must never reach a client: stacks, source paths, SQL, driver errors. */
export const LEAK = /\n\s+at\s|\.ts:\d+|node_modules|\bselect\b[\s\S]{0,80}\bfrom\b|\binsert into\b|\bupdate \w+ set\b|syntax error at or near|violates [\w ]*constraint|relation "[^"]*" does not exist|PostgresError|invalid input syntax for/i;

/** One real resource of each kind in a workspace, made through the API (and the send loop). */
export interface Seeded {
  workspaceId: string;
  keyId: string;
  token: string;
  customer: string;
  externalId: string;
  importId: string;
  segment: string;
  template: string;
  channelConfig: string;
  action: string;
  flow: string;
  message: string;
  actionTemplate: string;
  pool: string;
}


/**
 * Fills a workspace through its key. `drive` runs the action's send (the test runs Herald with
 * HERALD_ROLE=api, so it calls executePendingRuns and drainDueMessages itself).
 */
export async function seedWorkspace(ws: { workspaceId: string; keyId: string; token: string; call: Call }, drive: () => Promise<void>, messageOf: (workspaceId: string) => Promise<string | undefined>, tag = 'a'): Promise<Seeded> {
  const { call } = ws;
  const ok = async (what: string, res: ReturnType<Call>) => {
    const r = await res;
    if (r.statusCode >= 300) throw new Error(`seed ${what}: ${r.statusCode} ${r.body}`);
    return r.json();
  };
  const externalId = `seed-${tag}`;
  const channelConfig = (await ok('channel config', call('POST', '/v1/channel-configs', { name: `sandbox-${tag}`, provider: 'sandbox', channel: 'email', settings: { fromEmail: `${tag}@acme.example` } }))).id;
  const template = (await ok('template', call('POST', '/v1/templates', { name: `T-${tag}`, channel: 'email', content: { subject: 'Hi {{ customer.email }}', html: '<p>Hello <a href="https://acme.example/x">x</a></p>' } }))).id;
  const customer = (await ok('customer', call('POST', '/v1/customers', { externalId, email: `${tag}@x.example`, custom: { plan: `gold-${tag}` } }))).id;
  await ok('consent', call('PUT', `/v1/customers/${customer}/consents/email`, { status: 'subscribed' }));
  await ok('event', call('POST', '/v1/events', { externalId, type: 'visit' }));
  const importId = (await ok('import', call('POST', '/v1/customers/import', `externalId,email\nimp-${tag},imp-${tag}@x.example\n`, { 'content-type': 'text/csv' }))).id;
  const audience = { type: 'field', field: 'custom.plan', op: 'eq', value: `gold-${tag}` };
  const segment = (await ok('segment', call('POST', '/v1/segments', { name: `S-${tag}`, filter: audience }))).id;
  const action = (await ok('action', call('POST', '/v1/actions', { name: `A-${tag}`, kind: 'single_send', channel: 'email', channelConfigId: channelConfig, templateId: template, audience, launch: true }))).id;
  const flow = (await ok('flow', call('POST', '/v1/flows', { name: `F-${tag}`, graph: { nodes: [{ id: 'start', type: 'event_trigger', eventType: 'signup' }, { id: 'end', type: 'exit' }], edges: [{ from: 'start', to: 'end' }] } }))).id;
  await ok('flow launch', call('POST', `/v1/flows/${flow}/launch`));
  const pool = `pool-${tag}`;
  await ok('promo codes', call('POST', '/v1/promo-codes', { pool, codes: [`${tag}-1`, `${tag}-2`] }));
  await drive();
  const message = await messageOf(ws.workspaceId);
  if (!message) throw new Error('seed: the action sent no message');
  const templates = await ok('action templates', call('GET', `/v1/action-templates?sourceType=action&sourceId=${action}`));
  const actionTemplate = templates.data[0]?.id;
  if (!actionTemplate) throw new Error('seed: no action template');
  return { workspaceId: ws.workspaceId, keyId: ws.keyId, token: ws.token, customer, externalId, importId, segment, template, channelConfig, action, flow, message, actionTemplate, pool };
}
