// SMS length accounting, so a template editor can show what a message will cost before it is sent.

// GSM 03.38 default alphabet. ESC (0x1B) is left out: in text it only introduces the extension table.
const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
// Extension table: each costs ESC + code, two septets. Form feed is part of the table too.
const GSM_EXTENSION = new Set('^{}\\[~]|€\f');

export interface SmsSegments {
  encoding: 'GSM-7' | 'UCS-2';
  /** Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2. */
  characters: number;
  segments: number;
}

const LIMITS = {
  'GSM-7': { single: 160, part: 153 },
  'UCS-2': { single: 70, part: 67 },
} as const;

/**
 * Segments are packed greedily the way carriers split messages: an extension character (ESC + code)
 * or a surrogate pair (an emoji) is never cut across two parts, so a part can end one unit short
 * and the count can be one more than characters / per-part size.
 */
export function smsSegments(text: string): SmsSegments {
  let gsm = true;
  for (const ch of text) {
    if (!GSM_BASIC.has(ch) && !GSM_EXTENSION.has(ch)) {
      gsm = false;
      break;
    }
  }
  const encoding = gsm ? 'GSM-7' : 'UCS-2';
  // Cost of each indivisible unit: a code point, in septets or UTF-16 code units.
  const units: number[] = [];
  for (const ch of text) units.push(gsm ? (GSM_EXTENSION.has(ch) ? 2 : 1) : ch.length);
  const characters = units.reduce((a, b) => a + b, 0);
  const limit = LIMITS[encoding];
  if (characters === 0) return { encoding, characters, segments: 0 };
  if (characters <= limit.single) return { encoding, characters, segments: 1 };
  let segments = 1;
  let used = 0;
  for (const cost of units) {
    if (used + cost > limit.part) {
      segments += 1;
      used = 0;
    }
    used += cost;
  }
  return { encoding, characters, segments };
}
