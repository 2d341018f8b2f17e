/**
 * This node's ownership lease: how long its sessions are surely its own without asking the store.
 *
 * Peers judge a node dead when its heartbeat has not moved for `dead-after` (on their clocks, from when
 * they saw it move, which is never before it was written), and only then restore its sessions. So for
 * `dead-after` after a heartbeat this node wrote, no peer can have taken a session from it; the lease
 * keeps a heartbeat interval of margin. Once the lease lapses (the store unreachable, the process stalled),
 * a session held in memory is checked against the store before it is used, so that a node cut off from
 * its peers never answers from a transcript another node has moved on with.
 */
import type { Clock } from '../clock.ts';

export class OwnershipLease {
  /** When the last heartbeat that reached the store was started (-Infinity: none yet). */
  private since = Number.NEGATIVE_INFINITY;
  private lapseCount = 0;

  constructor(
    private readonly clock: Clock,
    /** How long after a successful heartbeat the lease holds. */
    readonly leaseMs: number,
  ) {}

  /** `dead-after` minus one heartbeat interval of margin; never longer than dead-after, never negative. */
  static forCluster(clock: Clock, deadAfterMs: number, heartbeatIntervalMs: number): OwnershipLease {
    return new OwnershipLease(clock, Math.max(0, Math.min(deadAfterMs, deadAfterMs - heartbeatIntervalMs)));
  }

  /** A heartbeat (or the registration) started at `startedAt` reached the store. */
  renewed(startedAt: number): void {
    // An older heartbeat finishing late says nothing new; but if the clock stepped back, every later
    // heartbeat starts "before" the last one: those renew (the lease was lapsed meanwhile, see valid()).
    if (startedAt <= this.since && this.clock.now() >= this.since) return;
    // Renewed after a lapse: peers may have restored sessions meanwhile (see lapses).
    if (!this.valid()) this.lapseCount++;
    this.since = startedAt;
  }

  /**
   * Whether the last heartbeat that reached the store is recent enough. A clock that stepped back past it
   * counts as lapsed: how long ago it was is not known any more (peers judge on their own clocks).
   */
  valid(): boolean {
    const age = this.clock.now() - this.since;
    return age >= 0 && age <= this.leaseMs;
  }

  /**
   * How many times the lease lapsed and was renewed since the start (the first registration counts). A
   * session held in memory across a lapse may have been restored elsewhere meanwhile, even if it is valid
   * again now: the holder checks each one against the store once (LiveSessions).
   */
  lapses(): number {
    return this.lapseCount;
  }
}
