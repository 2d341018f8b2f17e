/** Whether a peer address is this machine: the "loopback" networks of the push allow-list (127.0.0.0/8, ::1, IPv4-mapped). */
import { parseAllowList } from '../push/ssrf.ts';

const LOOPBACK = parseAllowList(['loopback']);

export function isLoopback(address: string | undefined): boolean {
  return address !== undefined && LOOPBACK.allows(address);
}
