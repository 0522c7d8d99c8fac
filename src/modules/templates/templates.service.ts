// Templates: every save of new content is a new immutable version, so a message can always name
// the exact version it was rendered from. Liquid is compiled on save: a template that does not
// compile is refused with the field and line at fault.
import { and, asc, eq, gt, isNull, type SQL } from 'drizzle-orm';
import { templates, templateVersions } from '../../db/schema/index.ts';
import type { Deps } from '../../deps.ts';
import { invalid, notFound, type FieldError } from '../../http/errors.ts';
import { decodeCursor, pageOf } from '../../http/pagination.ts';
import { fieldErrors } from '../../http/problem.ts';
import { compileStrict } from '../../http/validation.ts';
import { newId } from '../../ids.ts';
import { getCustomer } from '../customers/customers.service.ts';
import { compileFields, customerContext, missingVariables, TemplateError, type RenderContext } from './render.ts';
import { loadMergeData, mergeDataWanted } from './merge-data.ts';
import { placeholderUrls } from '../messages/compose.ts';
import { smsSegments } from './sms.ts';
import { compileMjml } from './tracking-html.ts';
import {
  EmailContent, PushContent, SmsContent, WebhookContent,
  type CreateTemplateBody, type ListTemplatesQuery, type PreviewTemplateBody, type Template, type TemplateChannel, type TemplatePreview, type UpdateTemplateBody,
} from './templates.schemas.ts';

type D = Pick<Deps, 'db' | 'clock'>;
type Content = Record<string, unknown>;

const contentValidators = {
  email: compileStrict(EmailContent),
  sms: compileStrict(SmsContent),
  mobile_push: compileStrict(PushContent),
  web_push: compileStrict(PushContent),
  webhook: compileStrict(WebhookContent),
} as const;

/** The Liquid-bearing fields of a content, by their JSON pointer below /content. */
export function liquidFields(channel: TemplateChannel, content: Content): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (path: string, value: unknown) => {
    if (typeof value === 'string') out[path] = value;
  };
  const names = channel === 'email' ? ['subject', 'preheader', 'html', 'text'] : channel === 'sms' ? ['text'] : channel === 'webhook' ? ['url', 'body'] : ['title', 'body', 'imageUrl', 'clickUrl'];
  for (const n of names) put(n, content[n]);
  const nested = channel === 'webhook' ? 'headers' : channel === 'email' || channel === 'sms' ? null : 'data';
  if (nested && content[nested] && typeof content[nested] === 'object') {
    for (const [k, v] of Object.entries(content[nested] as Record<string, unknown>)) put(`${nested}/${k}`, v);
  }
  return out;
}

/**
 * A stored version's content as shown (without the compiled MJML) and its Liquid fields (the
 * compiled HTML standing in for the MJML source).
 */
export function versionFields(channel: TemplateChannel, stored: Content): { content: Content; fields: Record<string, string> } {
  const { compiledHtml, ...content } = stored;
  return { content, fields: liquidFields(channel, typeof compiledHtml === 'string' ? { ...content, html: compiledHtml } : content) };
}

/** Checks a content for its channel and compiles it: MJML to HTML, then every Liquid field. */
export async function prepareContent(channel: TemplateChannel, given: Content): Promise<{ content: Content; mergeTags: string[] }> {
  const validate = contentValidators[channel];
  if (!validate(given)) throw invalid('The template content is invalid', fieldErrors(validate.errors as never, 'body').map((e) => ({ ...e, pointer: `/content${e.pointer}` })));
  const content: Content = { ...given };
  if (channel === 'email') {
    if (content.html !== undefined && content.mjml !== undefined) throw invalid('Give html or mjml, not both', [{ pointer: '/content/mjml', detail: 'html is given too' }]);
    if (content.html === undefined && content.mjml === undefined && content.text === undefined) throw invalid('An email needs a body', [{ pointer: '/content/html', detail: 'give html, mjml or text' }]);
    if (typeof content.mjml === 'string') {
      // Liquid errors point at the MJML the user wrote, not at the HTML compiled from it.
      try {
        compileFields({ mjml: content.mjml });
      } catch (error) {
        if (error instanceof TemplateError) throw invalid('The template does not compile', [liquidError(error)]);
        throw error;
      }
      const compiled = await compileMjml(content.mjml);
      if (compiled.errors.length) throw invalid('The MJML does not compile', compiled.errors.map((e) => ({ pointer: '/content/mjml', detail: `line ${e.line}: ${e.message}` })));
      content.compiledHtml = compiled.html;
    }
  }
  const fields = liquidFields(channel, channel === 'email' && typeof content.compiledHtml === 'string' ? { ...content, html: content.compiledHtml } : content);
  try {
    return { content, mergeTags: compileFields(fields).variables };
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    // The MJML's Liquid parsed above: what fails now is in what the MJML compiler made of it.
    if (error.field === 'html' && typeof content.compiledHtml === 'string') {
      throw invalid('The template does not compile', [{ pointer: '/content/mjml', detail: `in the HTML compiled from the MJML: ${error.message}` }]);
    }
    throw invalid('The template does not compile', [liquidError(error)]);
  }
}

function liquidError(error: TemplateError): FieldError {
  const where = error.line ? `line ${error.line}${error.column ? `, column ${error.column}` : ''}: ` : '';
  return { pointer: `/content/${error.field}`, detail: `${where}${error.message}` };
}

/** JSON with sorted keys: jsonb does not keep the order it was given. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(value);
}

type TemplateRow = typeof templates.$inferSelect;
type VersionRow = typeof templateVersions.$inferSelect;

function toTemplate(t: TemplateRow, v: VersionRow): Template {
  const channel = t.channel as TemplateChannel;
  const { content, fields } = versionFields(channel, v.content);
  let mergeTags: string[] = [];
  try {
    mergeTags = compileFields(fields).variables;
  } catch {
    // Stored versions compiled when saved; a later, stricter engine must not make them unreadable.
  }
  return {
    id: t.id,
    name: t.name,
    channel,
    version: v.version,
    currentVersion: t.currentVersion,
    content,
    mergeTags,
    ...(channel === 'sms' ? { sms: smsSegments(String(content.text ?? '')) } : {}),
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
    versionCreatedAt: v.createdAt.toISOString(),
  };
}

/** `listed: false` makes a template that exists for an action's messages only (written inline, not saved). */
export async function createTemplate(deps: D, workspaceId: string, body: CreateTemplateBody, options: { listed?: boolean } = {}): Promise<Template> {
  const { content } = await prepareContent(body.channel, body.content as Content);
  const now = deps.clock.now();
  const id = newId();
  return deps.db.transaction(async (tx) => {
    const [t] = await tx.insert(templates).values({ workspaceId, id, name: body.name, channel: body.channel, currentVersion: 1, listed: options.listed ?? true, createdAt: now, updatedAt: now }).returning();
    const [v] = await tx.insert(templateVersions).values({ workspaceId, templateId: id, version: 1, content, createdAt: now }).returning();
    return toTemplate(t!, v!);
  });
}

async function liveTemplate(db: D['db'], workspaceId: string, id: string, lock = false): Promise<TemplateRow> {
  const q = db.select().from(templates).where(and(eq(templates.workspaceId, workspaceId), eq(templates.id, id), isNull(templates.deletedAt)));
  const [row] = lock ? await q.for('update') : await q;
  if (!row) throw notFound('Template');
  return row;
}

async function versionOf(db: D['db'], workspaceId: string, templateId: string, version: number): Promise<VersionRow> {
  const [v] = await db
    .select()
    .from(templateVersions)
    .where(and(eq(templateVersions.workspaceId, workspaceId), eq(templateVersions.templateId, templateId), eq(templateVersions.version, version)));
  if (!v) throw notFound(`Version ${version} of the template`);
  return v;
}

export async function getTemplate(deps: Pick<Deps, 'db'>, workspaceId: string, id: string, version?: number): Promise<Template> {
  const t = await liveTemplate(deps.db, workspaceId, id);
  return toTemplate(t, await versionOf(deps.db, workspaceId, id, version ?? t.currentVersion));
}

export async function listTemplates(deps: Pick<Deps, 'db'>, workspaceId: string, q: ListTemplatesQuery) {
  const limit = q.limit ?? 50;
  const after = decodeCursor(q.cursor, ['string']);
  const where: SQL[] = [eq(templates.workspaceId, workspaceId), isNull(templates.deletedAt), eq(templates.listed, true)];
  if (after) where.push(gt(templates.id, after[0] as string));
  if (q.channel) where.push(eq(templates.channel, q.channel));
  const rows = await deps.db
    .select({ t: templates, v: templateVersions })
    .from(templates)
    .innerJoin(templateVersions, and(eq(templateVersions.workspaceId, templates.workspaceId), eq(templateVersions.templateId, templates.id), eq(templateVersions.version, templates.currentVersion)))
    .where(and(...where))
    .orderBy(asc(templates.id))
    .limit(limit + 1);
  const page = pageOf(rows, limit, (r) => [r.t.id]);
  return { data: page.data.map((r) => toTemplate(r.t, r.v)), nextCursor: page.nextCursor };
}

/** Saves a new version when the content changes; the versions before it stay as they were. */
export async function updateTemplate(deps: D, workspaceId: string, id: string, body: UpdateTemplateBody): Promise<Template> {
  const current = await liveTemplate(deps.db, workspaceId, id);
  const prepared = body.content ? await prepareContent(current.channel as TemplateChannel, body.content) : null;
  const now = deps.clock.now();
  return deps.db.transaction(async (tx) => {
    const t = await liveTemplate(tx, workspaceId, id, true);
    const latest = await versionOf(tx, workspaceId, id, t.currentVersion);
    let version = latest;
    if (prepared && canonical(prepared.content) !== canonical(latest.content)) {
      [version] = await tx.insert(templateVersions).values({ workspaceId, templateId: id, version: t.currentVersion + 1, content: prepared.content, createdAt: now }).returning() as [VersionRow];
    }
    const [updated] = await tx
      .update(templates)
      .set({ name: body.name ?? t.name, currentVersion: version.version, updatedAt: now })
      .where(and(eq(templates.workspaceId, workspaceId), eq(templates.id, id)))
      .returning();
    return toTemplate(updated!, version);
  });
}

export async function deleteTemplate(deps: D, workspaceId: string, id: string): Promise<void> {
  const rows = await deps.db
    .update(templates)
    .set({ deletedAt: deps.clock.now() })
    .where(and(eq(templates.workspaceId, workspaceId), eq(templates.id, id), isNull(templates.deletedAt)))
    .returning({ id: templates.id });
  if (!rows.length) throw notFound('Template');
}

export async function cloneTemplate(deps: D, workspaceId: string, id: string, name?: string): Promise<Template> {
  const t = await liveTemplate(deps.db, workspaceId, id);
  const v = await versionOf(deps.db, workspaceId, id, t.currentVersion);
  const now = deps.clock.now();
  const cloneId = newId();
  return deps.db.transaction(async (tx) => {
    const [c] = await tx.insert(templates).values({ workspaceId, id: cloneId, name: name ?? `${t.name} (copy)`, channel: t.channel, currentVersion: 1, createdAt: now, updatedAt: now }).returning();
    const [cv] = await tx.insert(templateVersions).values({ workspaceId, templateId: cloneId, version: 1, content: v.content, createdAt: now }).returning();
    return toTemplate(c!, cv!);
  });
}

/** The workspace's time zone: the one dates fall back to for a customer without their own. */
async function workspaceZone(deps: Pick<Deps, 'database'>, workspaceId: string): Promise<string> {
  const [row] = await deps.database.sql<{ time_zone: string }[]>`select time_zone from workspaces where id = ${workspaceId}`;
  return row?.time_zone ?? 'UTC';
}

/** Renders a version for a real customer or for sample data, and names every merge tag with no value. */
export async function previewTemplate(deps: Pick<Deps, 'db' | 'database' | 'config'>, workspaceId: string, id: string, body: PreviewTemplateBody): Promise<TemplatePreview> {
  const t = await liveTemplate(deps.db, workspaceId, id);
  const v = await versionOf(deps.db, workspaceId, id, body.version ?? t.currentVersion);
  const channel = t.channel as TemplateChannel;
  const { content, fields } = versionFields(channel, v.content);
  const compiled = compileFields(fields);
  // Dates in the customer's zone, else the workspace's, as a real send renders them.
  let ctx: RenderContext;
  if (body.customerId) {
    const customer = await getCustomer(deps, workspaceId, body.customerId);
    const data = (await loadMergeData(deps.database.sql, [[workspaceId, customer.id]], mergeDataWanted(compiled.variables))).get(`${workspaceId}/${customer.id}`);
    ctx = { customer: customerContext(customer), event: body.event, ...data, timeZone: customer.timeZone ?? (await workspaceZone(deps, workspaceId)) };
  } else {
    ctx = { customer: body.sample?.customer ?? {}, event: body.sample?.event, timeZone: await workspaceZone(deps, workspaceId) };
  }
  const urls = placeholderUrls(deps.config.publicUrl);
  ctx = { ...ctx, unsubscribe_url: urls.unsubscribe, view_url: urls.view, forward_url: urls.forward };
  let values: Record<string, string>;
  try {
    values = await compiled.render(ctx);
  } catch (error) {
    if (error instanceof TemplateError) throw invalid('The template could not be rendered', [liquidError(error)]);
    throw error;
  }
  const rendered: Content = { ...content };
  for (const [path, value] of Object.entries(values)) {
    const [head, tail] = path.split('/');
    if (tail === undefined) rendered[head!] = value;
    else rendered[head!] = { ...(rendered[head!] as Content), [tail]: value };
  }
  delete rendered.mjml;
  return {
    version: v.version,
    rendered,
    missing: missingVariables(compiled, ctx),
    ...(channel === 'sms' ? { sms: smsSegments(String(rendered.text ?? '')) } : {}),
  };
}

