// Checks a filter tree node by node, so that each fault is named by its JSON pointer
// ("/filter/all/1/op: unknown operator"), and collects the segments it refers to.
import type { FieldError } from '../http/errors.ts';
import { isUuid } from '../ids.ts';
import {
  ACTION_TEMPLATE_KINDS, CONSENT_CHANNELS, CONSENT_STATUSES, COUNT_OPS, CUSTOM_PATH, PROPERTY_PATH, SOURCE_TYPES, TEXT_FIELDS, TIME_FIELDS, UNITS, VALUE_OPS,
  type Filter, type ValueOp,
} from './filter.ts';

export const MAX_DEPTH = 10;
export const MAX_NODES = 200;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$/;

type Kind = 'text' | 'time' | 'json' | 'property';
const OPS_BY_KIND: Record<Kind, readonly ValueOp[]> = {
  text: ['eq', 'neq', 'in', 'notIn', 'contains', 'notContains', 'startsWith', 'exists', 'notExists'],
  time: ['gt', 'gte', 'lt', 'lte', 'withinLast', 'withinNext', 'moreThanAgo', 'exists', 'notExists'],
  json: VALUE_OPS,
  // An event has no time zone of its own to count anniversaries in.
  property: VALUE_OPS.filter((op) => op !== 'anniversaryWithinNext'),
};

export interface Checked {
  errors: FieldError[];
  segmentIds: Set<string>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isScalar = (v: unknown) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean';
const esc = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

export function checkFilter(filter: unknown, pointer = ''): Checked {
  const out: Checked = { errors: [], segmentIds: new Set() };
  let nodes = 0;
  const fail = (at: string, detail: string) => out.errors.push({ pointer: at, detail });

  const only = (node: Record<string, unknown>, at: string, allowed: string[]) => {
    for (const key of Object.keys(node)) if (!allowed.includes(key)) fail(`${at}/${esc(key)}`, `unknown property "${key}"`);
  };
  const oneOf = (value: unknown, at: string, choices: readonly string[], what: string) => {
    if (typeof value !== 'string' || !choices.includes(value)) fail(at, `${what} must be one of ${choices.join(', ')}`);
  };
  const duration = (value: unknown, at: string) => {
    if (!isObject(value)) return fail(at, 'must be a duration { amount, unit }');
    only(value, at, ['amount', 'unit']);
    if (!Number.isInteger(value.amount) || (value.amount as number) < 0 || (value.amount as number) > 100000) fail(`${at}/amount`, 'must be an integer from 0 to 100000');
    oneOf(value.unit, `${at}/unit`, UNITS, 'unit');
  };
  const uuid = (value: unknown, at: string) => {
    if (typeof value !== 'string' || !isUuid(value)) fail(at, 'must be a UUID');
  };

  const valueTest = (node: Record<string, unknown>, at: string, kind: Kind, extra: string[]) => {
    only(node, at, [...extra, 'op', 'value', 'duration']);
    const op = node.op as ValueOp;
    if (typeof op !== 'string' || !(VALUE_OPS as readonly string[]).includes(op)) return fail(`${at}/op`, `unknown operator${typeof op === 'string' ? ` "${op}"` : ''}; one of ${VALUE_OPS.join(', ')}`);
    if (!OPS_BY_KIND[kind].includes(op)) return fail(`${at}/op`, `"${op}" does not apply to this field; use one of ${OPS_BY_KIND[kind].join(', ')}`);
    const { value } = node;
    const relative = op === 'withinLast' || op === 'withinNext' || op === 'moreThanAgo' || op === 'anniversaryWithinNext';
    if (relative) {
      if (value !== undefined) fail(`${at}/value`, `"${op}" takes a duration, not a value`);
      duration(node.duration, `${at}/duration`);
      if (op === 'anniversaryWithinNext' && isObject(node.duration) && !['days', 'weeks'].includes(node.duration.unit as string)) fail(`${at}/duration/unit`, 'must be days or weeks');
      return;
    }
    if (node.duration !== undefined) fail(`${at}/duration`, `"${op}" takes no duration`);
    if (op === 'exists' || op === 'notExists') {
      if (value !== undefined) fail(`${at}/value`, `"${op}" takes no value`);
    } else if (op === 'in' || op === 'notIn') {
      if (!Array.isArray(value) || value.length === 0 || value.length > 1000 || !value.every(isScalar)) fail(`${at}/value`, 'must be a list of 1 to 1000 strings, numbers or booleans');
      else if (kind === 'text' && !value.every((v) => typeof v === 'string')) fail(`${at}/value`, 'must be a list of strings for this field');
    } else if (op === 'contains' || op === 'notContains' || op === 'startsWith') {
      if (typeof value !== 'string' || value.length === 0 || value.length > 1000) fail(`${at}/value`, 'must be a text of 1 to 1000 characters');
    } else if (op === 'gt' || op === 'gte' || op === 'lt' || op === 'lte') {
      const ok = kind === 'time' ? typeof value === 'string' && DATE_TIME.test(value) : (typeof value === 'number' && Number.isFinite(value)) || (typeof value === 'string' && DATE_TIME.test(value));
      if (!ok) fail(`${at}/value`, kind === 'time' ? 'must be an ISO 8601 date-time' : 'must be a number or an ISO 8601 date-time');
    } else if (!isScalar(value) || (typeof value === 'string' && value.length > 1000)) {
      fail(`${at}/value`, 'must be a string (up to 1000 characters), a number or a boolean');
    } else if (kind === 'text' && typeof value !== 'string') {
      fail(`${at}/value`, 'must be a string for this field');
    }
  };

  const conditions: Record<string, (node: Record<string, unknown>, at: string) => void> = {
    field(node, at) {
      const field = node.field;
      let kind: Kind | undefined;
      if (typeof field === 'string' && Object.hasOwn(TEXT_FIELDS, field)) kind = 'text';
      else if (typeof field === 'string' && Object.hasOwn(TIME_FIELDS, field)) kind = 'time';
      else if (typeof field === 'string' && CUSTOM_PATH.test(field)) kind = 'json';
      if (!kind) return fail(`${at}/field`, `unknown field; one of ${[...Object.keys(TEXT_FIELDS), ...Object.keys(TIME_FIELDS)].join(', ')} or custom.<path>`);
      valueTest(node, at, kind, ['type', 'field']);
    },
    event(node, at) {
      only(node, at, ['type', 'name', 'where', 'count', 'within']);
      if (typeof node.name !== 'string' || node.name.length === 0 || node.name.length > 200) fail(`${at}/name`, 'must be an event type of 1 to 200 characters');
      if (node.where !== undefined) {
        if (!Array.isArray(node.where) || node.where.length > 20) fail(`${at}/where`, 'must be a list of up to 20 property conditions');
        else node.where.forEach((w, i) => {
          const wat = `${at}/where/${i}`;
          if (!isObject(w)) return fail(wat, 'must be a property condition { property, op, value }');
          if (typeof w.property !== 'string' || !PROPERTY_PATH.test(w.property)) fail(`${wat}/property`, 'must be a property path (letters, digits, _ and -, dots for nested keys)');
          valueTest(w, wat, 'property', ['property']);
        });
      }
      if (node.count !== undefined) {
        const count = node.count;
        if (!isObject(count)) fail(`${at}/count`, 'must be { op, value }');
        else {
          only(count, `${at}/count`, ['op', 'value']);
          oneOf(count.op, `${at}/count/op`, COUNT_OPS, 'op');
          if (!Number.isInteger(count.value) || (count.value as number) < 0 || (count.value as number) > 1000000) fail(`${at}/count/value`, 'must be an integer from 0 to 1000000');
        }
      }
      if (node.within !== undefined) duration(node.within, `${at}/within`);
    },
    action(node, at) {
      only(node, at, ['type', 'actionTemplateId', 'sourceType', 'sourceId', 'kind', 'within', 'without']);
      if (node.actionTemplateId !== undefined) {
        uuid(node.actionTemplateId, `${at}/actionTemplateId`);
        for (const key of ['sourceType', 'sourceId', 'kind']) if (node[key] !== undefined) fail(`${at}/${key}`, 'give either actionTemplateId or sourceType, sourceId and kind');
      } else {
        oneOf(node.sourceType, `${at}/sourceType`, SOURCE_TYPES, 'sourceType');
        if (typeof node.sourceId !== 'string' || node.sourceId.length === 0 || node.sourceId.length > 200) fail(`${at}/sourceId`, 'must be the id of the message source');
        oneOf(node.kind, `${at}/kind`, ACTION_TEMPLATE_KINDS, 'kind');
      }
      if (node.within !== undefined) duration(node.within, `${at}/within`);
      if (node.without !== undefined) {
        const without = node.without;
        if (!isObject(without)) fail(`${at}/without`, 'must be { kind, within? }');
        else {
          only(without, `${at}/without`, ['kind', 'within']);
          oneOf(without.kind, `${at}/without/kind`, ACTION_TEMPLATE_KINDS, 'kind');
          if (without.within !== undefined) duration(without.within, `${at}/without/within`);
        }
      }
    },
    consent(node, at) {
      only(node, at, ['type', 'channel', 'status']);
      oneOf(node.channel, `${at}/channel`, CONSENT_CHANNELS, 'channel');
      oneOf(node.status, `${at}/status`, CONSENT_STATUSES, 'status');
    },
    segment(node, at) {
      only(node, at, ['type', 'segmentId']);
      uuid(node.segmentId, `${at}/segmentId`);
      if (typeof node.segmentId === 'string' && isUuid(node.segmentId)) out.segmentIds.add(node.segmentId.toLowerCase());
    },
  };

  const walk = (node: unknown, at: string, depth: number) => {
    if (++nodes > MAX_NODES) {
      if (nodes === MAX_NODES + 1) fail(at, `a filter may hold at most ${MAX_NODES} nodes`);
      return;
    }
    if (depth > MAX_DEPTH) return fail(at, `a filter may nest at most ${MAX_DEPTH} levels`);
    if (!isObject(node)) return fail(at, 'must be an object: { all }, { any }, { not } or a condition with a type');
    if ('all' in node || 'any' in node) {
      const key = 'all' in node ? 'all' : 'any';
      only(node, at, [key]);
      const list = node[key];
      if (!Array.isArray(list) || list.length === 0 || list.length > 50) return fail(`${at}/${key}`, 'must be a list of 1 to 50 filters');
      list.forEach((child, i) => walk(child, `${at}/${key}/${i}`, depth + 1));
      return;
    }
    if ('not' in node) {
      only(node, at, ['not']);
      return walk(node.not, `${at}/not`, depth + 1);
    }
    const check = typeof node.type === 'string' && Object.hasOwn(conditions, node.type) ? conditions[node.type] : undefined;
    if (!check) return fail(`${at}/type`, `must be one of ${Object.keys(conditions).join(', ')} (or use all, any, not)`);
    check(node, at);
  };

  walk(filter, pointer, 1);
  return out;
}

export const isFilterShape = (filter: unknown): filter is Filter => checkFilter(filter).errors.length === 0;
