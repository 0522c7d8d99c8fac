// JSON for documents that carry the same large strings: an email's html and text go out in the
// provider's request body and are stored with the message, and escaping 5 KB of HTML for JSON is
// most of the cost of each of those documents. Encoded once (encodeStrings), they are spliced
// into both (stringifyWith).

/** Large strings with their JSON encoding (JSON.stringify of each). */
export type EncodedStrings = ReadonlyArray<readonly [raw: string, json: string]>;

export function encodeStrings(...values: Array<string | undefined>): EncodedStrings {
  const out: Array<readonly [string, string]> = [];
  for (const v of values) if (v !== undefined && v.length > 0) out.push([v, JSON.stringify(v)]);
  return out;
}

// Keys are few and repeat for every message: each is encoded once.
const keys = new Map<string, string>();
function encodedKey(key: string): string {
  let json = keys.get(key);
  if (json === undefined) {
    json = `${JSON.stringify(key)}:`;
    if (keys.size < 1000) keys.set(key, json);
  }
  return json;
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON.stringify(value), byte for byte, with each string equal to a `known` one taken from its
 * encoding rather than escaped again. Plain objects and arrays are walked; anything else (numbers,
 * dates, class instances) is left to JSON.stringify. Built by concatenation, not join(): the
 * large strings are not copied here but once, where the text is written out.
 */
export function stringifyWith(value: unknown, known: EncodedStrings): string | undefined {
  if (typeof value === 'string') {
    for (const [raw, json] of known) if (raw.length === value.length && raw === value) return json;
    return JSON.stringify(value);
  }
  if (value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ',' : '') + (stringifyWith(value[i], known) ?? 'null');
    return `${out}]`;
  }
  if (!isPlain(value)) return JSON.stringify(value);
  let out = '{';
  for (const key of Object.keys(value)) {
    const json = stringifyWith((value as Record<string, unknown>)[key], known);
    if (json !== undefined) out += (out.length > 1 ? ',' : '') + encodedKey(key) + json;
  }
  return `${out}}`;
}
