/** Liveness from the observer's clock: a node whose own clock is off is judged by whether its heartbeat moves. */
import { expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import type { NodeRecord, Store } from '../store/port.ts';
import { NodeDirectory } from './node-directory.ts';

function fakeStore(nodes: NodeRecord[]): Store {
  return { listNodes: async () => nodes.map((n) => ({ ...n })) } as unknown as Store;
}

it('a node with a clock a day behind or ahead is alive while its heartbeat moves, dead once it stops', async () => {
  const clock = new ManualClock(1_000_000_000_000);
  const DAY = 86_400_000;
  const nodes: NodeRecord[] = [
    { appDbid: 'behind', pid: 1, url: 'http://127.0.0.1:1', startedAt: 0, heartbeatAt: clock.now() - DAY },
    { appDbid: 'ahead', pid: 2, url: 'http://127.0.0.1:2', startedAt: 0, heartbeatAt: clock.now() + DAY },
  ];
  const dir = new NodeDirectory(fakeStore(nodes), clock, { deadAfterMs: 10_000, pollMs: 1000 }, silentLogger);
  await dir.refresh();
  for (let i = 0; i < 5; i++) {
    clock.advance(5000);
    for (const n of nodes) (n as { heartbeatAt: number }).heartbeatAt += 5000; // their own (wrong) clocks move
    await dir.refresh();
    expect([dir.isAlive('behind'), dir.isAlive('ahead')]).toEqual([true, true]);
  }
  // 'ahead' stops beating; 'behind' goes on. Only the observer's clock decides.
  for (let i = 0; i < 3; i++) {
    clock.advance(5000);
    (nodes[0] as { heartbeatAt: number }).heartbeatAt += 5000;
    await dir.refresh();
  }
  expect([dir.isAlive('behind'), dir.isAlive('ahead')]).toEqual([true, false]);
  expect(dir.live().map((n) => n.appDbid)).toEqual(['behind']);
});

it('a suspected node that registers again with a new pid is not suspected any more', async () => {
  const clock = new ManualClock(1_000);
  const nodes: NodeRecord[] = [{ appDbid: '201', pid: 10, url: 'http://127.0.0.1:1', startedAt: 0, heartbeatAt: 1 }];
  const dir = new NodeDirectory(fakeStore(nodes), clock, { deadAfterMs: 10_000, pollMs: 1000 }, silentLogger);
  await dir.refresh();
  dir.suspect('201', 10_000);
  expect(dir.isAlive('201')).toBe(false);
  nodes[0] = { appDbid: '201', pid: 11, url: 'http://127.0.0.1:1', startedAt: 2, heartbeatAt: 2 };
  await dir.refresh();
  expect(dir.isAlive('201')).toBe(true);
  expect(dir.isAlive('unknown')).toBe(false);
});
