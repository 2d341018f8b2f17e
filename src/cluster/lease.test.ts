import { describe, expect, it } from 'vitest';
import { OwnershipLease } from './lease.ts';

describe('OwnershipLease', () => {
  it('is not valid before the first heartbeat', () => {
    const lease = new OwnershipLease({ now: () => 1000 }, 8000);
    expect(lease.valid()).toBe(false);
  });

  it('holds for leaseMs after the start of the last heartbeat that reached the store, then lapses', () => {
    let now = 0;
    const lease = new OwnershipLease({ now: () => now }, 8000);
    lease.renewed(0);
    now = 8000;
    expect(lease.valid()).toBe(true);
    now = 8001;
    expect(lease.valid()).toBe(false);
    lease.renewed(7000);
    expect(lease.valid()).toBe(true);
  });

  it('counts from when a heartbeat started, and a late answer to an older one does not move it back', () => {
    let now = 5000;
    const lease = new OwnershipLease({ now: () => now }, 8000);
    lease.renewed(5000);
    now = 5100;
    lease.renewed(2000);
    now = 13_000;
    expect(lease.valid()).toBe(true);
    now = 13_001;
    expect(lease.valid()).toBe(false);
  });

  it('leaves one heartbeat interval of margin before dead-after, and is never negative', () => {
    expect(OwnershipLease.forCluster({ now: () => 0 }, 10_000, 2000).leaseMs).toBe(8000);
    expect(OwnershipLease.forCluster({ now: () => 0 }, 3000, 2000).leaseMs).toBe(1000);
    expect(OwnershipLease.forCluster({ now: () => 0 }, 2000, 5000).leaseMs).toBe(0);
  });
});

describe('OwnershipLease lapses', () => {
  it('counts a renewal that comes after the lease lapsed (the first registration included), not one in time', () => {
    let now = 0;
    const lease = new OwnershipLease({ now: () => now }, 8000);
    lease.renewed(0);
    expect(lease.lapses()).toBe(1);
    now = 5000;
    lease.renewed(5000);
    expect(lease.lapses()).toBe(1);
    now = 20_000;
    lease.renewed(20_000);
    expect(lease.lapses()).toBe(2);
  });
});
