/**
 * Is the owner of a session really alive? The registry's heartbeat says so for up to `dead-after`; a
 * direct look at the owner's health endpoint answers at once. A node answering under its app dbid is alive,
 * whatever its pid (it may have just restarted and not re-registered yet); a refused connection, or another
 * app answering there, is dead; a reset, slow or timed-out answer falls back to the heartbeat (refusing a
 * little longer is safe, and write fencing keeps two owners from ever both writing).
 *
 * Either answer is kept for a second: restoring a dead node's sessions asks this for each of them, and a
 * connection attempt per session was a tenth of the restoring node's CPU. A node that comes back within
 * that second and loses a session to the restore only sees it move (the claim is fenced by epoch).
 */
import { request } from 'undici';
import type { NodeDirectory } from './node-directory.ts';

/** How long a probe's answer stands. */
const PROBE_KEPT_MS = 1000;

export function probingIsAlive(directory: NodeDirectory, timeoutMs = 500, now: () => number = Date.now): (owner: string) => Promise<boolean> {
  /** Owner -> its last probe: when, and whether it was alive. */
  const probed = new Map<string, { at: number; alive: boolean; process: string }>();
  /** Probes under way: the restores that ask meanwhile share them (one connection, not one each). */
  const running = new Map<string, Promise<boolean>>();
  return async (owner) => {
    let node = directory.get(owner);
    if (node === undefined) {
      // Unknown here may only mean registered since the last poll: look again before calling it dead.
      await directory.refresh();
      node = directory.get(owner);
    }
    if (node === undefined) return false;
    // Kept only for the node as it is registered now (a new registration is a new process: probe it).
    const reg = `${node.url} ${node.pid} ${node.startedAt}`;
    const seen = probed.get(owner);
    if (seen !== undefined && seen.process === reg && now() - seen.at < PROBE_KEPT_MS) return seen.alive;
    const key = `${owner} ${reg}`;
    let probe = running.get(key);
    if (probe === undefined) {
      probe = look(owner, node.url).then((alive) => {
        running.delete(key);
        // Only for the registration it probed: a newer one (probed meanwhile, or still to probe) is not touched.
        const current = directory.get(owner);
        if (current !== undefined && `${current.url} ${current.pid} ${current.startedAt}` === reg) {
          probed.set(owner, { at: now(), alive, process: reg });
          if (!alive) directory.suspect(owner, 10_000);
        }
        return alive;
      });
      running.set(key, probe);
    }
    return probe;
  };

  async function look(owner: string, url: string): Promise<boolean> {
    try {
      // A fresh connection (reset): a reused keep-alive socket the peer closed must not look like a death.
      // The signal bounds the connection too (a host that drops packets), not only the answer.
      const res = await request(`${url}/health`, {
        method: 'GET',
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        reset: true,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = (await res.body.json().catch(() => ({}))) as { app_dbid?: unknown; accepting?: unknown };
      return res.statusCode === 200 && body.app_dbid === owner && body.accepting !== false;
    } catch (err) {
      // Only "nothing listens there" is certain; anything else (reset, timeout) defers to the heartbeat.
      const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
      return code === 'ECONNREFUSED' ? false : directory.isAlive(owner);
    }
  }
}
