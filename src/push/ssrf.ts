/**
 * SSRF guard for push targets: an allow-list of networks ([push] allowed-networks), a DNS `lookup`
 * that drops addresses outside it at connect time, and a URL check for subscription time.
 *
 * Items: "public" (globally routable addresses only), "loopback", "private", an IPv4/IPv6 CIDR,
 * or a single address. IPv4-mapped IPv6 (::ffff:a.b.c.d) is always judged by its IPv4 address,
 * so a mapped address can neither sneak past nor be refused by a v4 rule.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { ParleyError } from '../errors.ts';

export interface NetworkAllowList {
  allows(address: string): boolean;
  readonly description: string;
}

export type Resolve = (host: string) => Promise<Array<{ address: string; family: number }>>;

/** An address as bytes: 4 for IPv4, 16 for IPv6. IPv4-mapped IPv6 is turned into its IPv4 bytes. */
type Bytes = Uint8Array;

interface Net {
  readonly bytes: Bytes;
  readonly prefix: number;
}

function parseV4(s: string): Bytes {
  return Uint8Array.from(s.split('.').map(Number));
}

function parseV6(s: string): Bytes {
  const out = new Uint8Array(16);
  let text = s;
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) becomes two hex groups.
  const dot = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dot?.[1] !== undefined) {
    const v4 = parseV4(dot[1]);
    const hi = (((v4[0] ?? 0) << 8) | (v4[1] ?? 0)).toString(16);
    const lo = (((v4[2] ?? 0) << 8) | (v4[3] ?? 0)).toString(16);
    text = `${text.slice(0, dot.index)}${hi}:${lo}`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const all = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

const MAPPED_PREFIX = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** The bytes of an IP literal (zone index dropped, mapped v4 unwrapped), or undefined when not one. */
export function addressBytes(address: string): Bytes | undefined {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const kind = isIP(bare);
  if (kind === 4) return parseV4(bare);
  if (kind !== 6) return undefined;
  const v6 = parseV6(bare.replace(/%.*$/, ''));
  return startsWith(v6, MAPPED_PREFIX) ? v6.slice(12) : v6;
}

function startsWith(bytes: Bytes, prefix: Bytes): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

function inNet(bytes: Bytes, net: Net): boolean {
  if (bytes.length !== net.bytes.length) return false;
  const whole = net.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== net.bytes[i]) return false;
  const rest = net.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[whole] ?? 0) & mask) === ((net.bytes[whole] ?? 0) & mask);
}

/** True when any bit after `prefix` is set. */
function hasHostBits(bytes: Bytes, prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) return true;
  }
  return false;
}

/** "a/n" or "a" → a network, or the reason it is invalid. Mapped v6 networks become v4 ones. */
function parseNet(item: string): Net | string {
  const slash = item.indexOf('/');
  const addr = slash < 0 ? item : item.slice(0, slash);
  const kind = isIP(addr);
  if (kind === 0 || addr.includes('%')) return 'not an IP address, CIDR or keyword';
  let bytes = kind === 4 ? parseV4(addr) : parseV6(addr);
  let prefix = bytes.length * 8;
  if (slash >= 0) {
    const p = item.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > prefix) return `prefix length must be 0..${prefix}`;
    prefix = Number(p);
  }
  if (hasHostBits(bytes, prefix)) return 'has bits set after the prefix length';
  if (bytes.length === 16 && prefix >= 96 && startsWith(bytes, MAPPED_PREFIX)) {
    bytes = bytes.slice(12);
    prefix -= 96;
  }
  return { bytes, prefix };
}

function nets(...items: string[]): Net[] {
  return items.map((i) => {
    const n = parseNet(i);
    if (typeof n === 'string') throw new Error(`bad built-in network ${i}`);
    return n;
  });
}

const LOOPBACK = nets('127.0.0.0/8', '::1');
const PRIVATE = nets('10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7');

/** IPv4 special-purpose ranges (IANA registry) that are not globally routable. */
const V4_NOT_PUBLIC = nets(
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, includes the broadcast 255.255.255.255
);

/**
 * IPv6 is public only inside 2000::/3 (global unicast): that alone excludes ::, ::1, fc00::/7,
 * fe80::/10, fec0::/10, ff00::/8, 100::/64 and the rest. Inside it, these are not public either.
 */
const V6_GLOBAL = nets('2000::/3');
const V6_NOT_PUBLIC = nets(
  '2001::/32', // Teredo
  '2001:2::/48', // benchmarking
  '2001:10::/28', // ORCHID
  '2001:20::/28', // ORCHIDv2
  '2001:db8::/32', // documentation
  '3fff::/20', // documentation (RFC 9637)
);
/** NAT64 (RFC 6052): the IPv4 address in the last 32 bits decides. */
const NAT64 = nets('64:ff9b::/96');
/** 6to4 (RFC 3056): 2002:AABB:CCDD::/48 reaches IPv4 AA.BB.CC.DD, which decides. */
const SIX_TO_FOUR = nets('2002::/16');

function isPublic(bytes: Bytes): boolean {
  if (bytes.length === 4) return !V4_NOT_PUBLIC.some((n) => inNet(bytes, n));
  if (NAT64.some((n) => inNet(bytes, n))) return isPublic(bytes.slice(12));
  if (SIX_TO_FOUR.some((n) => inNet(bytes, n))) return isPublic(bytes.slice(2, 6));
  return V6_GLOBAL.some((n) => inNet(bytes, n)) && !V6_NOT_PUBLIC.some((n) => inNet(bytes, n));
}

type Rule = (bytes: Bytes) => boolean;

const KEYWORDS: Readonly<Record<string, Rule>> = {
  public: isPublic,
  loopback: (b) => LOOPBACK.some((n) => inNet(b, n)),
  private: (b) => PRIVATE.some((n) => inNet(b, n)),
};

/** Parses [push] allowed-networks; CONFIG_INVALID names every bad item at once. */
export function parseAllowList(items: readonly string[]): NetworkAllowList {
  const rules: Rule[] = [];
  const shown: string[] = [];
  const problems: string[] = [];
  for (const raw of items) {
    const item = raw.trim();
    const keyword = KEYWORDS[item.toLowerCase()];
    if (keyword !== undefined) {
      rules.push(keyword);
      shown.push(item.toLowerCase());
      continue;
    }
    const net = parseNet(item);
    if (typeof net === 'string') {
      problems.push(`"${raw}" ${net}`);
      continue;
    }
    rules.push((b) => inNet(b, net));
    shown.push(item);
  }
  if (problems.length > 0) {
    throw new ParleyError('CONFIG_INVALID', `Invalid allowed-networks item(s): ${problems.join('; ')}.`, { details: { problems } });
  }
  const description = shown.length === 0 ? '(nothing)' : shown.join(', ');
  return {
    description,
    allows(address: string): boolean {
      const bytes = addressBytes(address);
      return bytes !== undefined && rules.some((r) => r(bytes));
    },
  };
}

const defaultResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

function forbidden(host: string, allow: NetworkAllowList): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`Push target host ${host} has no address in the allowed networks (${allow.description}).`);
  err.code = 'EPUSHFORBIDDEN';
  return Object.assign(err, { hostname: host });
}

function wantedFamily(options: LookupOptions): 0 | 4 | 6 {
  const f = options.family;
  return f === 4 || f === 'IPv4' ? 4 : f === 6 || f === 'IPv6' ? 6 : 0;
}

/**
 * A `lookup` for net.connect / tls.connect / undici's `connect` option: resolves every address of the
 * host, keeps only allowed ones (and those of the family asked for) and fails with code EPUSHFORBIDDEN
 * when none is left. Both callback shapes node uses are honoured: options.all → an array of
 * {address, family}; otherwise (address, family) of the first allowed address.
 *
 * Node (and so undici) never calls `lookup` for an IP-literal host, so this alone does not stop
 * `http://127.0.0.1/`: checkTarget must be applied to every URL as well. IP literals given to this
 * function directly are checked without DNS.
 */
export function guardedLookup(allow: NetworkAllowList, resolve: Resolve = defaultResolve): LookupFunction {
  return (hostname, options, callback) => {
    const family = wantedFamily(options);
    const literal = isIP(hostname);
    const found: Promise<Array<{ address: string; family: number }>> =
      literal !== 0 ? Promise.resolve([{ address: hostname, family: literal }]) : resolve(hostname);
    found.then(
      (addresses) => {
        const kept: LookupAddress[] = addresses
          .filter((a) => (family === 0 || a.family === family) && allow.allows(a.address))
          .map((a) => ({ address: a.address, family: a.family }));
        const first = kept[0];
        if (first === undefined) callback(forbidden(hostname, allow), options.all === true ? [] : '', undefined);
        else if (options.all === true) callback(null, kept);
        else callback(null, first.address, first.family);
      },
      (err: unknown) => {
        callback(err instanceof Error ? err : new Error(String(err)), options.all === true ? [] : '', undefined);
      },
    );
  };
}

function targetForbidden(reason: string, cause?: unknown): ParleyError {
  return new ParleyError('PUSH_TARGET_FORBIDDEN', `Push target forbidden: ${reason}.`, cause === undefined ? undefined : { cause });
}

/**
 * The part of a push target check that needs no DNS: an absolute http(s) URL with a host, and a host
 * written as an IP address inside the allowed networks (connect-time `lookup` never sees those). Throws
 * INVALID_PARAMETER or PUSH_TARGET_FORBIDDEN; a host name is left to `checkTarget` or the guarded lookup.
 */
export function screenTarget(url: string, allow: NetworkAllowList): { readonly url: URL; readonly host: string; readonly literal: boolean } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ParleyError('INVALID_PARAMETER', 'The push target is not an absolute URL.');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw targetForbidden(`scheme ${parsed.protocol} is not http: or https:`);
  // WHATWG URL has already normalised IPv4 forms such as 0x7f.1 or 2130706433 to dotted quads.
  const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  if (host === '') throw targetForbidden('the URL has no host');
  const literal = isIP(host) !== 0;
  if (literal && !allow.allows(host)) throw targetForbidden(`address ${host} is outside the allowed networks (${allow.description})`);
  return { url: parsed, host, literal };
}

/**
 * Validates a push target URL: `screenTarget`, no credentials, and every address of its host allowed.
 */
export async function checkTarget(url: string, allow: NetworkAllowList, resolve: Resolve = defaultResolve): Promise<void> {
  const { url: parsed, host, literal } = screenTarget(url, allow);
  if (parsed.username !== '' || parsed.password !== '') throw targetForbidden('credentials in the URL are not allowed');
  if (literal) return;
  let addresses: Array<{ address: string; family: number }>;
  try {
    addresses = await resolve(host);
  } catch (err) {
    throw targetForbidden(`host ${host} does not resolve`, err);
  }
  if (addresses.length === 0) throw targetForbidden(`host ${host} does not resolve`);
  const refused = addresses.filter((a) => !allow.allows(a.address)).map((a) => a.address);
  if (refused.length > 0) {
    throw targetForbidden(`host ${host} resolves to ${refused.join(', ')}, outside the allowed networks (${allow.description})`);
  }
}
