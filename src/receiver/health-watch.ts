/**
 * Watches the chat server nodes' health endpoints and keeps the map app_dbid → process_os_pid. A node
 * whose pid (or start time) changes has restarted; a node that fails `failures` polls in a row is down.
 * Either way its sessions must be pinged so that they are restored on a live node (the seeds' HA recipe).
 */
import { request } from 'undici';
import type { Logger } from '../log.ts';

export interface NodeHealth {
  readonly app_dbid: string;
  readonly process_os_pid: number;
  readonly start_time?: number;
}

export type FetchHealth = (url: string) => Promise<NodeHealth>;

interface Seen {
  alias?: string;
  pid?: number;
  start?: number;
  failures: number;
  reportedDown: boolean;
}

export async function fetchHealth(url: string): Promise<NodeHealth> {
  const res = await request(url, { method: 'GET', headersTimeout: 3000, bodyTimeout: 3000 });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`health answered ${res.statusCode}`);
  }
  const body = (await res.body.json()) as Partial<NodeHealth>;
  if (typeof body.app_dbid !== 'string' || typeof body.process_os_pid !== 'number') throw new Error('health lacks app_dbid/process_os_pid');
  return body as NodeHealth;
}

export class HealthWatch {
  private readonly seen = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly urls: readonly string[],
    private readonly opts: { failures: number; fetch?: FetchHealth },
    private readonly onNodeLost: (alias: string, why: string) => void,
    private readonly log: Logger,
  ) {}

  /** The current map app_dbid → pid of the nodes that answer. */
  nodes(): Map<string, number> {
    const m = new Map<string, number>();
    for (const s of this.seen.values()) if (s.alias !== undefined && s.pid !== undefined && s.failures === 0) m.set(s.alias, s.pid);
    return m;
  }

  run(intervalMs: number): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  async poll(): Promise<void> {
    await Promise.all(this.urls.map((u) => this.pollOne(u)));
  }

  private async pollOne(url: string): Promise<void> {
    const s = this.seen.get(url) ?? { failures: 0, reportedDown: false };
    this.seen.set(url, s);
    let h: NodeHealth;
    try {
      h = await (this.opts.fetch ?? fetchHealth)(url);
    } catch (err) {
      s.failures += 1;
      if (s.failures >= this.opts.failures && !s.reportedDown && s.alias !== undefined) {
        s.reportedDown = true;
        this.log.warn({ url, alias: s.alias, failures: s.failures, err: (err as Error).message }, 'chat server node unreachable');
        this.onNodeLost(s.alias, 'unreachable');
      } else if (s.alias === undefined && s.failures === this.opts.failures) {
        // Never answered (a typo in health-urls, a node not started): said once, as nothing is watched there.
        this.log.warn({ url, failures: s.failures, err: (err as Error).message }, 'chat server health URL has not answered yet');
      }
      return;
    }
    const restarted = s.alias === h.app_dbid && (s.pid !== h.process_os_pid || (h.start_time !== undefined && s.start !== undefined && s.start !== h.start_time));
    // Another node answers at this URL now: the one it reported before is gone.
    const replaced = s.alias !== undefined && s.alias !== h.app_dbid ? s.alias : undefined;
    // First seen after polls that failed for as long as makes a node down (this receiver started while it
    // was down): it may have restarted meanwhile, which nothing here can tell.
    const backUnknown = s.alias === undefined && s.failures >= this.opts.failures;
    const wasDown = s.reportedDown;
    s.alias = h.app_dbid;
    s.pid = h.process_os_pid;
    if (h.start_time !== undefined) s.start = h.start_time;
    s.failures = 0;
    s.reportedDown = false;
    // Down and back: its sessions were pinged when it went down; a new pid means they must be again.
    if (restarted || backUnknown) {
      this.log.warn({ url, alias: h.app_dbid, pid: h.process_os_pid, wasDown }, 'chat server node restarted');
      this.onNodeLost(h.app_dbid, 'restarted');
    }
    if (replaced !== undefined) {
      this.log.warn({ url, alias: replaced, now: h.app_dbid }, 'chat server node replaced at its health URL');
      this.onNodeLost(replaced, 'replaced');
    }
  }
}
