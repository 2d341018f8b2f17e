/**
 * Whom a per-client limit counts: an IPv4 address (a mapped one unwrapped), or the /64 network of an IPv6
 * address. One IPv6 host usually holds a whole /64 and can change its address within it at will; counting
 * each address apart would give it a fresh budget with every one.
 */
import { addressBytes } from '../push/ssrf.ts';

/** The NAT64 well-known prefix 64:ff9b::/96: the last 4 bytes are an IPv4 client's address. */
const NAT64 = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

export function clientKey(address: string): string {
  const b = addressBytes(address);
  if (b === undefined) return address;
  if (b.length === 4) return b.join('.');
  if (NAT64.every((x, i) => b[i] === x)) return Array.from(b.slice(12)).join('.');
  const hex = Array.from(b.slice(0, 8), (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 4)}:${hex.slice(4, 8)}:${hex.slice(8, 12)}:${hex.slice(12, 16)}::/64`;
}
