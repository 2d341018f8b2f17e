/**
 * The chat server nodes of a cluster, read from the shared store's registry. A node is alive while its
 * heartbeat keeps changing: liveness is judged by when *this* process last saw the heartbeat value move,
 * on its own clock, so a node whose clock is off is neither taken for dead nor kept alive by it.
 */
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { NodeRecord, Store } from '../store/port.ts';

interface Observed {
  record: NodeRecord;
  /** When this process saw the heartbeat value change last. */
  movedAt: number;
  /** Until when a transport failure makes it count as dead here. */
  suspectUntil: number;
}

export class NodeDirectory {
  private readonly nodes = new Map<string, Observed>();
  private timer: NodeJS.Timeout | undefined;
  private turn = 0;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly opts: { deadAfterMs: number; pollMs: number },
    private readonly log: Logger,
  ) {}

  async refresh(): Promise<void> {
    let list: NodeRecord[];
    try {
      list = await this.store.listNodes();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'node registry not readable');
      return;
    }
    const now = this.clock.now();
    const seen = new Set<string>();
    for (const r of list) {
      seen.add(r.appDbid);
      const o = this.nodes.get(r.appDbid);
      if (o === undefined) this.nodes.set(r.appDbid, { record: r, movedAt: now, suspectUntil: 0 });
      else {
        if (o.record.heartbeatAt !== r.heartbeatAt || o.record.pid !== r.pid) o.movedAt = now;
        // Registered again by a new process: what was suspected of the old one says nothing of it.
        if (o.record.pid !== r.pid || o.record.url !== r.url || o.record.startedAt !== r.startedAt) o.suspectUntil = 0;
        o.record = r;
      }
    }
    for (const id of [...this.nodes.keys()]) if (!seen.has(id)) this.nodes.delete(id);
  }

  run(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  isAlive(appDbid: string): boolean {
    const o = this.nodes.get(appDbid);
    if (o === undefined) return false;
    const now = this.clock.now();
    return now - o.movedAt <= this.opts.deadAfterMs && now >= o.suspectUntil;
  }

  /** A request to the node failed at the transport level: treat it as dead for a while. */
  suspect(appDbid: string, forMs = 5000): void {
    const o = this.nodes.get(appDbid);
    if (o !== undefined) o.suspectUntil = this.clock.now() + forMs;
  }

  get(appDbid: string): NodeRecord | undefined {
    return this.nodes.get(appDbid)?.record;
  }

  /** Live nodes, rotated so that successive calls spread the load. */
  live(): NodeRecord[] {
    const all = [...this.nodes.values()].filter((o) => this.isAlive(o.record.appDbid)).map((o) => o.record);
    if (all.length === 0) return all;
    const k = this.turn++ % all.length;
    return [...all.slice(k), ...all.slice(0, k)];
  }
}
