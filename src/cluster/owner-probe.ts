/**
 * Is the owner of a session really alive? The registry's heartbeat says so for up to `dead-after`; a
 * direct look at the owner's health endpoint answers at once. A node answering under its app dbid is alive,
 * whatever its pid (it may have just restarted and not re-registered yet); a refused connection, or another
 * app answering there, is dead; a reset, slow or timed-out answer falls back to the heartbeat (refusing a
 * little longer is safe, and write fencing keeps two owners from ever both writing).
 */
import { request } from 'undici';
import type { NodeDirectory } from './node-directory.ts';

export function probingIsAlive(directory: NodeDirectory, timeoutMs = 500): (owner: string) => Promise<boolean> {
  const aliveCache = new Map<string, number>();
  return async (owner) => {
    let node = directory.get(owner);
    if (node === undefined) {
      // Unknown here may only mean registered since the last poll: look again before calling it dead.
      await directory.refresh();
      node = directory.get(owner);
    }
    if (node === undefined) return false;
    const seen = aliveCache.get(owner);
    if (seen !== undefined && Date.now() - seen < 1000) return true;
    let alive: boolean;
    try {
      // A fresh connection (reset): a reused keep-alive socket the peer closed must not look like a death.
      const res = await request(`${node.url}/health`, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, reset: true });
      const body = (await res.body.json().catch(() => ({}))) as { app_dbid?: unknown; accepting?: unknown };
      alive = res.statusCode === 200 && body.app_dbid === owner && body.accepting !== false;
    } catch (err) {
      // Only "nothing listens there" is certain; anything else (reset, timeout) defers to the heartbeat.
      const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
      alive = code === 'ECONNREFUSED' ? false : directory.isAlive(owner);
    }
    if (alive) aliveCache.set(owner, Date.now());
    else {
      aliveCache.delete(owner);
      directory.suspect(owner, 10_000);
    }
    return alive;
  };
}
