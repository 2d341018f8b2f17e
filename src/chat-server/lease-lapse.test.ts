import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSession, say } from '../chat/session.ts';
import { OwnershipLease } from '../cluster/lease.ts';
import type { Store } from '../store/port.ts';
import { openSqliteStore } from '../store/sqlite.ts';
import { LiveSessions } from './live-sessions.ts';

describe('the ownership lease across a lapse', () => {
  let dir: string;
  let store: Store;
  let now: number;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'parley-lease-'));
    store = openSqliteStore({ path: join(dir, 'live.db'), synchronous: 'normal' });
    now = 0;
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const opened = () =>
    openSession({ chatId: 'c1', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann', text: 'hello' }, 1000);

  // A lapse is not forgotten when the lease is renewed: peers may have restored sessions meanwhile, so every
  // session held in memory is checked against the store once more (LiveSessions.noticeLapses).
  it('after a lapse longer than dead-after, a renewed lease does not make sessions restored elsewhere look current', async () => {
    const clock = { now: () => now };
    const lease = OwnershipLease.forCluster(clock, 10_000, 2000); // 8 s lease, peers judge dead after 10 s
    lease.renewed(0);
    const live = new LiveSessions(store, '117', undefined, {
      isAlive: async (owner) => owner === '117' || owner === '201',
      lease,
    });
    const c = await live.create(opened());
    expect((await live.get('c1')).session.lastIndex).toBe(c.session.lastIndex);

    // 117's heartbeats do not reach the store for 20 s (stall / partition). Node 201 judges it dead
    // (10 s without a heartbeat) and restores the session, then moves on with it.
    now = 20_000;
    expect(lease.valid()).toBe(false);
    expect(await store.claimSession('c1', { owner: '117', epoch: 1 }, '201')).toBeDefined();
    const m = say(c.session, 1, 'Message', { text: 'written on 201' }, 15_000);
    await store.recordChange({ ...m, fence: { owner: '201', epoch: 2 } });

    // 117's next heartbeat reaches the store: the lease is valid again.
    lease.renewed(now);
    expect(lease.valid()).toBe(true);

    // 117 must not answer from its stale copy (it lacks 'written on 201' and holds epoch 1).
    await expect(live.get('c1')).rejects.toMatchObject({ code: 'NOT_OWNER' });
  });

  it('a lapse during which the session is used is noticed (the existing safety net)', async () => {
    const clock = { now: () => now };
    const lease = OwnershipLease.forCluster(clock, 10_000, 2000);
    lease.renewed(0);
    const live = new LiveSessions(store, '117', undefined, {
      isAlive: async (owner) => owner === '117' || owner === '201',
      // Only the validity, not the lapse count: the lapse is noticed because the session is used during it.
      lease: { valid: () => lease.valid(), lapses: () => 0 },
    });
    await live.create(opened());
    now = 20_000;
    expect(await store.claimSession('c1', { owner: '117', epoch: 1 }, '201')).toBeDefined();
    await expect(live.get('c1')).rejects.toMatchObject({ code: 'NOT_OWNER' });
    expect(live.size).toBe(0);
  });
});

describe('OwnershipLease.forCluster', () => {
  // Peers may restore a node's sessions dead-after after its last heartbeat: the lease never lasts longer
  // (the configuration also refuses a heartbeat-interval that is not below dead-after).
  it('never lasts longer than dead-after', () => {
    const lease = OwnershipLease.forCluster({ now: () => 0 }, 2000, 5000);
    expect(lease.leaseMs).toBeLessThanOrEqual(2000);
  });

  it('keeps a margin below dead-after with sane settings', () => {
    for (const [dead, beat] of [
      [10_000, 2000],
      [3000, 2000],
      [2000, 1000],
    ] as const) {
      expect(OwnershipLease.forCluster({ now: () => 0 }, dead, beat).leaseMs).toBeLessThanOrEqual(dead);
    }
  });
});
