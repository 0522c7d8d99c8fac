// The SSRF guard for every request whose target a workspace can influence: webhook URLs, push
// endpoints and overridden provider base URLs. Only http(s), and unless the workspace allows private
// targets, every address the host resolves to must be public unicast: one private answer is enough
// to refuse (a host with a public and a private address is how DNS tricks get in).
//
// Two places use it: checkTarget() before a request (a clean `rejected` outcome and no connection),
// and guardedLookup(), the `lookup` of the strict connection pools, which vets every address a new
// connection is about to use. The connection therefore only ever goes to an address that passed the
// check in the very lookup that produced it: a second, different DNS answer (rebinding) is vetted too.
import dns from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

export type TargetCheck =
  | { ok: true; address: string; family: 4 | 6 }
  /** retryable: the host could not be resolved now (DNS failure), which is not a refusal. */
  | { ok: false; reason: string; retryable?: boolean };

/** The code of the error guardedLookup() fails a connection with. */
export const SSRF_REFUSED = 'ERR_HERALD_SSRF_REFUSED';

const EMBEDDED_V4_RANGES = new Set(['rfc6052', '6to4']);

/**
 * The name of the forbidden range an address is in ('loopback', 'private', 'linkLocal',
 * 'uniqueLocal', 'unspecified', 'carrierGradeNat', 'multicast', 'reserved', ...), or null when it is
 * public unicast. An allow-list: anything that is not plain unicast is refused. IPv6 forms that
 * carry an IPv4 address (::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that address.
 */
export function forbiddenRange(address: string): string | null {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(bare) || isIP(bare.split('%')[0]!) === 0) return 'not an IP address';
  const ip = ipaddr.parse(bare);
  if (ip.kind() === 'ipv4') {
    const range = (ip as ipaddr.IPv4).range();
    return range === 'unicast' ? null : range;
  }
  const v6 = ip as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return forbiddenV4(v6.toIPv4Address(), 'IPv4-mapped');
  const p = v6.parts;
  // ::/96 (IPv4-compatible, deprecated; :: and ::1 included): nothing legitimate lives there.
  if (p.slice(0, 6).every((x) => x === 0)) return p[6] === 0 && p[7] === 0 ? 'unspecified' : p[6] === 0 && p[7] === 1 ? 'loopback' : 'IPv4-compatible';
  const range = v6.range();
  if (EMBEDDED_V4_RANGES.has(range)) {
    // 64:ff9b::/96 (well-known NAT64) ends with the IPv4 address; 2002:AABB:CCDD::/48 carries it in parts 1-2.
    // The local-use NAT64 prefix 64:ff9b:1::/48 is a private network service: refused as such.
    if (range === 'rfc6052' && p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0) {
      return forbiddenV4(new ipaddr.IPv4([p[6]! >> 8, p[6]! & 0xff, p[7]! >> 8, p[7]! & 0xff]), 'NAT64');
    }
    if (range === '6to4') return forbiddenV4(new ipaddr.IPv4([p[1]! >> 8, p[1]! & 0xff, p[2]! >> 8, p[2]! & 0xff]), '6to4');
    return range;
  }
  return range === 'unicast' ? null : range;
}

function forbiddenV4(v4: ipaddr.IPv4, via: string): string | null {
  const range = v4.range();
  return range === 'unicast' ? null : `${range} via ${via} ${v4.toString()}`;
}

const refusal = (address: string, range: string) =>
  `refusing ${address} (${range}): private, loopback and link-local targets are not allowed for this workspace`;

type Resolved = { ok: true; addresses: dns.LookupAddress[] } | { ok: false; reason: string; retryable?: boolean };

/** Resolves a host name (or takes an IP literal) and, unless allowPrivate, vets every address. */
export async function resolveTarget(hostname: string, allowPrivate: boolean, family?: 4 | 6): Promise<Resolved> {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  let addresses: dns.LookupAddress[];
  const literal = isIP(host);
  if (literal !== 0) {
    addresses = [{ address: host, family: literal }];
  } else {
    try {
      addresses = await dns.promises.lookup(host, { all: true, order: 'verbatim', ...(family ? { family } : {}) });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      return { ok: false, retryable: true, reason: `DNS lookup of ${host} failed (${code})` };
    }
    if (addresses.length === 0) return { ok: false, retryable: true, reason: `DNS lookup of ${host} returned no address` };
  }
  if (!allowPrivate) {
    for (const { address } of addresses) {
      const range = forbiddenRange(address);
      if (range !== null) return { ok: false, reason: refusal(address, range) };
    }
  }
  return { ok: true, addresses };
}

/**
 * The part of checkTarget() that needs no I/O: the scheme, and the address when the host is an IP
 * literal. null when the host is a name (DNS needed). Lets a caller report a refusal even when it has
 * no time left for a lookup.
 */
export function checkTargetNow(url: string, allowPrivate: boolean): TargetCheck | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: `invalid URL: ${url.slice(0, 200)}` };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return { ok: false, reason: `only http and https URLs are allowed, not ${parsed.protocol}` };
  if (parsed.hostname === '') return { ok: false, reason: 'the URL has no host' };
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const family = isIP(host);
  if (family === 0) return null;
  const range = allowPrivate ? null : forbiddenRange(host);
  return range === null ? { ok: true, address: host, family: family === 6 ? 6 : 4 } : { ok: false, reason: refusal(host, range) };
}

/**
 * Whether a URL may be requested: http(s) only, and (unless allowPrivate) every address its host
 * resolves to is public. IP literals (127.0.0.1, [::1], [::ffff:127.0.0.1], 2130706433...) are
 * judged as the WHATWG URL parser normalizes them, which is also how the HTTP clients read them.
 */
export async function checkTarget(url: string, allowPrivate: boolean): Promise<TargetCheck> {
  const now = checkTargetNow(url, allowPrivate);
  if (now) return now;
  const resolved = await resolveTarget(new URL(url).hostname, allowPrivate);
  if (!resolved.ok) return resolved;
  const first = resolved.addresses[0]!;
  return { ok: true, address: first.address, family: first.family === 6 ? 6 : 4 };
}

/**
 * A `lookup` for net/tls connections (undici's connect.lookup, http.Agent's lookup) that refuses
 * private addresses: the connection then fails with code SSRF_REFUSED before any byte is sent.
 * Handles both calling conventions (single address, and `all: true` as autoSelectFamily uses).
 */
export const guardedLookup: LookupFunction = (hostname, options, callback) => {
  const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : undefined;
  resolveTarget(hostname, false, family).then(
    (resolved) => {
      if (!resolved.ok) {
        const error: NodeJS.ErrnoException = new Error(resolved.reason);
        error.code = resolved.retryable ? 'ENOTFOUND' : SSRF_REFUSED;
        return callback(error, '');
      }
      if (options.all) return callback(null, resolved.addresses);
      const first = resolved.addresses[0]!;
      callback(null, first.address, first.family);
    },
    (error: NodeJS.ErrnoException) => callback(error, ''),
  );
};
