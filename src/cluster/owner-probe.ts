/**
 * Is the owner of a session really alive? The registry's heartbeat says so for up to `dead-after`; a
 * direct look at the owner's health endpoint answers at once when it was killed (connection refused, or
 * another process now answers there). A slow or timed-out answer counts as alive: refusing a little
 * longer is safe, and write fencing keeps two owners from ever both writing.
 */
import { request } from 'undici';
import type { NodeDirectory } from './node-directory.ts';

export function probingIsAlive(directory: NodeDirectory, timeoutMs = 500): (owner: string) => Promise<boolean> {
  const cache = new Map<string, { at: number; pid: number; alive: boolean }>();
  return async (owner) => {
    if (!directory.isAlive(owner)) return false;
    const node = directory.get(owner);
    if (node === undefined) return false;
    const hit = cache.get(owner);
    if (hit !== undefined && hit.pid === node.pid && Date.now() - hit.at < 1000) return hit.alive;
    let alive = true;
    try {
      const res = await request(`${node.url}/health`, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      const body = (await res.body.json().catch(() => ({}))) as { app_dbid?: unknown; process_os_pid?: unknown; accepting?: unknown };
      alive = res.statusCode === 200 && body.app_dbid === owner && body.process_os_pid === node.pid && body.accepting !== false;
    } catch (err) {
      const code = (err as { code?: string }).code;
      alive = !(code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH');
    }
    if (!alive) directory.suspect(owner, 10_000);
    cache.set(owner, { at: Date.now(), pid: node.pid, alive });
    return alive;
  };
}
