/** The ownership lease and the node directory under clock jumps (the injected wall clock). */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.ts';
import { OwnershipLease } from '../src/cluster/lease.ts';
import { NodeDirectory } from '../src/cluster/node-directory.ts';
import { silentLogger } from '../src/log.ts';
import { openSqliteStore } from '../src/store/sqlite.ts';

const DEAD_AFTER = 10_000;
const HEARTBEAT = 2_000;

describe('ownership lease and clock jumps', () => {
  it('a forward clock jump only makes the lease lapse early (safe), and the next heartbeat renews it', () => {
    const clock = new ManualClock(1_000_000);
    const lease = OwnershipLease.forCluster(clock, DEAD_AFTER, HEARTBEAT);
    lease.renewed(clock.now());
    clock.advance(60_000);
    expect(lease.valid()).toBe(false);
    lease.renewed(clock.now());
    expect(lease.valid()).toBe(true);
    expect(lease.lapses()).toBe(2);
  });

  // Regression test (this was a bug, now fixed). Was: the lease is measured on the wall clock (Clock.now(), systemClock = Date.now()) and renewed() ignores
  // a heartbeat whose start time is not after the last one (src/cluster/lease.ts:31), while valid() is
  // `now - since <= leaseMs` (src/cluster/lease.ts:38). After the clock steps back by J ms (NTP), now - since
  // is negative, so the lease stays valid for J + leaseMs after the last heartbeat that reached the store,
  // whatever happens to later heartbeats. With the store unreachable, peers judge the node dead after
  // dead-after (on their own clocks) and restore its sessions, while this node keeps answering from memory:
  // the stale transcript the lease exists to prevent. Right: the lease must be measured on a monotonic clock
  // (or treat now < since as lapsed), so it lapses leaseMs of real time after the last successful heartbeat.
  it('after the clock steps back, the lease still lapses leaseMs after the last heartbeat that reached the store', () => {
    const clock = new ManualClock(1_000_000);
    const lease = OwnershipLease.forCluster(clock, DEAD_AFTER, HEARTBEAT);
    lease.renewed(clock.now()); // the last heartbeat that reached the store
    clock.advance(-60_000); // NTP steps the wall clock back one minute; from now on every heartbeat fails
    clock.advance(DEAD_AFTER + 1); // real time since the last heartbeat: > dead-after, peers restore the sessions
    expect(lease.valid()).toBe(false);
  });
});

describe('node directory', () => {
  it('a node re-registering under the same app dbid (new pid, same heartbeat value) counts as moved, and a stopped one dies after dead-after', async () => {
    const store = openSqliteStore({ path: ':memory:', synchronous: 'normal' });
    try {
      const clock = new ManualClock(5_000_000);
      const dir = new NodeDirectory(store, clock, { deadAfterMs: DEAD_AFTER, pollMs: 60_000 }, silentLogger);
      await store.registerNode({ appDbid: '201', pid: 10, url: 'http://127.0.0.1:1', startedAt: 1, heartbeatAt: 100 });
      await dir.refresh();
      dir.suspect('201');
      expect(dir.isAlive('201')).toBe(false);
      clock.advance(DEAD_AFTER - 1);
      await store.registerNode({ appDbid: '201', pid: 11, url: 'http://127.0.0.1:1', startedAt: 2, heartbeatAt: 100 });
      await dir.refresh();
      expect(dir.isAlive('201')).toBe(true); // a new process: the suspicion and the age are reset
      clock.advance(DEAD_AFTER + 1);
      await dir.refresh();
      expect(dir.isAlive('201')).toBe(false);
      expect(await store.heartbeat('nope', 1)).toBe(false);
      await store.removeNode('201');
      await dir.refresh();
      expect(dir.get('201')).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
