import { describe, expect, it } from 'vitest';
import { agentJoin, openSession, say } from '../chat/session.ts';
import { notificationFor, type Notification } from '../chat/notification.ts';
import type { Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import type { Store } from '../store/port.ts';
import { PushEngine } from './engine.ts';
import { GatewayRegistry } from './gateway-registry.ts';

function notification(id: string): Notification {
  const c = openSession({ chatId: `c-${id}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hi' }, 1000);
  const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 2000);
  const m = say(j.session, 2, 'Message', { text: 'hello' }, 3000);
  const sub = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: false } as const;
  const session: Session = { ...m.session, push: { active: true, subscription: sub } };
  const n = notificationFor(session, m.events, { id, now: 3000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

function engineWith(delivered: string[], saved: string[]) {
  const store = {
    saveNotifications: async (ns: readonly Notification[]) => {
      for (const n of ns) saved.push(n.id);
    },
    loadActiveNotifications: async () => [],
  } as unknown as Store;
  const registry = new GatewayRegistry();
  registry.register({
    nodeId: 'gw1',
    group: 'g',
    deliver: async (n) => {
      delivered.push(n.id);
      await new Promise((r) => setTimeout(r, 20));
      return { kind: 'delivered' } as never;
    },
  });
  return new PushEngine({
    store,
    clock: { now: () => 3000 },
    registry,
    policy: { resendDelayMs: 1000, resendAttempts: 1, backoffMs: () => 100 },
    maxInFlight: 8,
    log: silentLogger,
    metrics: createMetrics(),
  });
}

describe('PushEngine kicks', () => {
  it('starts the POST of a committed notification in the same turn of the event loop, not in the next one', async () => {
    const delivered: string[] = [];
    const engine = engineWith(delivered, []);
    engine.run();
    try {
      let immediateRan = false;
      setImmediate(() => {
        immediateRan = true;
      });
      engine.add([notification('n1'), notification('n2')]);
      // Microtasks only: the POSTs have started before any setImmediate callback (the next turn's check phase).
      for (let i = 0; i < 5; i++) await Promise.resolve();
      expect(delivered).toEqual(['n1', 'n2']);
      expect(immediateRan).toBe(false);
    } finally {
      await engine.stop();
    }
  });

  it('one microtask and at most one immediate tick per burst: each notification is POSTed once', async () => {
    const delivered: string[] = [];
    const engine = engineWith(delivered, []);
    engine.run();
    try {
      engine.add([notification('a')]);
      engine.add([notification('b')]);
      engine.add([notification('c')]);
      await new Promise((r) => setTimeout(r, 60));
      expect(delivered).toEqual(['a', 'b', 'c']);
    } finally {
      await engine.stop();
    }
  });

  // A kick pending when stop() is called (here the same-turn microtask of add()) must not tick afterwards:
  // stop() does not wait for attempts started after it, and their outcome would be stored after the store
  // closed.
  it('starts no POST once stop() was called, and persists nothing after stop() resolved', async () => {
    const delivered: string[] = [];
    const saved: string[] = [];
    const engine = engineWith(delivered, saved);
    engine.run();
    engine.add([notification('late')]);
    await engine.stop();
    const savedAtStop = saved.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(delivered).toEqual([]);
    expect(saved.length).toBe(savedAtStop);
  });
});

describe('PushEngine parked notifications (no gateway node in the group)', () => {
  function reliable(id: string): Notification {
    const n = notification(id);
    return { ...n, subscription: { ...n.subscription, resend: true } };
  }

  function parkedEngine(loaded: Notification[] = []) {
    const clock = new ManualClock(3000);
    const saved: Notification[] = [];
    const store = {
      saveNotifications: async (ns: readonly Notification[]) => {
        saved.push(...ns);
      },
      loadActiveNotifications: async () => loaded,
    } as unknown as Store;
    const registry = new GatewayRegistry();
    const delivered: string[] = [];
    const engine = new PushEngine({
      store,
      clock,
      registry,
      // Parked at most 1000 × (1 + 1) = 2 s after creation.
      policy: { resendDelayMs: 1000, resendAttempts: 1, backoffMs: () => 100 },
      maxInFlight: 8,
      log: silentLogger,
      metrics: createMetrics(),
    });
    const join = () =>
      registry.register({
        nodeId: 'gw1',
        group: 'g',
        deliver: async (n) => {
          delivered.push(n.id);
          return { kind: 'delivered' };
        },
      });
    return { clock, saved, engine, join, delivered };
  }

  it('is sent as soon as a gateway node joins its group, without any activity of the session', async () => {
    const { engine, join, delivered } = parkedEngine();
    engine.add([notification('p1')]);
    await engine.tick();
    expect(delivered).toEqual([]);
    expect(engine.depth).toBe(1);
    join();
    await engine.tick();
    expect(delivered).toEqual(['p1']);
    expect(engine.depth).toBe(0);
  });

  it('fails once the resend window is over when no node comes (its chat may have ended: no activity will come)', async () => {
    const { clock, saved, engine, delivered } = parkedEngine();
    engine.add([reliable('p2')]);
    await engine.tick();
    clock.advance(1999);
    await engine.tick();
    expect(engine.depth).toBe(1);
    clock.advance(1);
    await engine.tick();
    expect(engine.depth).toBe(0);
    expect(delivered).toEqual([]);
    expect(saved.at(-1)).toMatchObject({ id: 'p2', state: 'failed', lastError: 'no gms node found in group' });
  });

  it('a parked notification loaded from the store (after a restart) expires the same way', async () => {
    const parked: Notification = { ...reliable('p3'), nextAttemptAt: null, lastError: 'no gms node found in group', attempts: 1 };
    const { clock, saved, engine } = parkedEngine([parked]);
    await engine.load();
    expect(engine.depth).toBe(1);
    // Loaded within its window: tried again at once (a node may be there now); none is, so it parks again.
    await engine.tick();
    expect(engine.depth).toBe(1);
    clock.advance(2000);
    await engine.tick();
    expect(engine.depth).toBe(0);
    expect(saved.at(-1)).toMatchObject({ id: 'p3', state: 'failed' });
  });
});
