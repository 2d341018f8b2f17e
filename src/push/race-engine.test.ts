/**
 * Races of the push engine: an acknowledgement (refresh) arriving while a POST is in flight, a receiver
 * answering 410 or 5xx, a restart with durable notifications pending. Manual clock, controllable POSTs.
 */
import { describe, expect, it } from 'vitest';
import { agentJoin, openSession, say } from '../chat/session.ts';
import { isFinal, notificationFor, type DeliveryOutcome, type Notification } from '../chat/notification.ts';
import type { Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import type { Store } from '../store/port.ts';
import { PushEngine } from './engine.ts';
import { GatewayRegistry } from './gateway-registry.ts';

function notification(id: string, now: number): Notification {
  const c = openSession({ chatId: `c-${id}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hi' }, now);
  const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, now);
  const m = say(j.session, 2, 'Message', { text: 'hello' }, now);
  const sub = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;
  const session: Session = { ...m.session, push: { active: true, subscription: sub } };
  const n = notificationFor(session, m.events, { id, now, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

function setup(initial: Notification[] = []) {
  const clock = new ManualClock(10_000);
  const saved = new Map<string, Notification>();
  for (const n of initial) saved.set(n.id, n);
  const store = {
    saveNotifications: async (ns: readonly Notification[]) => {
      for (const n of ns) saved.set(n.id, n);
    },
    loadActiveNotifications: async () => [...saved.values()].filter((n) => !isFinal(n)),
  } as unknown as Store;
  const posts: Array<{ id: string; answer: (o: DeliveryOutcome) => void }> = [];
  const registry = new GatewayRegistry();
  const metrics = createMetrics({ defaultMetrics: false });
  registry.register({
    nodeId: 'gw1',
    group: 'g',
    deliver: (n) => new Promise<DeliveryOutcome>((resolve) => posts.push({ id: n.id, answer: resolve })),
  });
  const engine = new PushEngine({
    store,
    clock,
    registry,
    policy: { resendDelayMs: 1000, resendAttempts: 3, backoffMs: () => 100 },
    maxInFlight: 8,
    log: silentLogger,
    metrics,
  });
  return { clock, saved, posts, engine, metrics };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('push engine races', () => {
  it.each<[string, DeliveryOutcome]>([
    ['delivered', { kind: 'delivered' }],
    ['a 5xx (retry)', { kind: 'retry', reason: 'HTTP 503' }],
    ['a timeout', { kind: 'retry', reason: 'timeout' }],
  ])('an acknowledgement while the POST is in flight wins over %s: final, stored acked, never resent', async (_name, outcome) => {
    const { clock, saved, posts, engine } = setup();
    const n = notification('n1', clock.now());
    engine.add([n]);
    const t = engine.tick();
    expect(posts.map((p) => p.id)).toEqual(['n1']);
    engine.acknowledge(n.chatId); // the refresh arrives while the POST is in flight
    posts[0]?.answer(outcome);
    await t;
    await settle();
    expect(engine.attemptsOf('n1')).toBe(-1);
    expect(saved.get('n1')?.state).toBe('acked');
    clock.advance(5000);
    await engine.tick();
    expect(posts).toHaveLength(1);
  });

  it('a POST delivered while the client acknowledged counts as delivered too (delivered never below acked)', async () => {
    const { clock, posts, engine, metrics } = setup();
    const n = notification('n1', clock.now());
    engine.add([n]);
    const t = engine.tick();
    engine.acknowledge(n.chatId);
    posts[0]?.answer({ kind: 'delivered' });
    await t;
    await settle();
    const count = async (event: string) => (await metrics.pushNotifications.get()).values.find((v) => v.labels['event'] === event)?.value ?? 0;
    expect({ delivered: await count('delivered'), acked: await count('acked') }).toEqual({ delivered: 1, acked: 1 });
  });

  it('a receiver answering 410 fails the notification: not resent, stored failed', async () => {
    const { clock, saved, posts, engine } = setup();
    engine.add([notification('n2', clock.now())]);
    const t = engine.tick();
    posts[0]?.answer({ kind: 'gone', reason: 'HTTP 410' });
    await t;
    await settle();
    expect(saved.get('n2')?.state).toBe('failed');
    clock.advance(5000);
    await engine.tick();
    expect(posts).toHaveLength(1);
  });

  it('delivered but unacknowledged is resent every resend delay, once per due time, then fails', async () => {
    const { clock, saved, posts, engine } = setup();
    engine.add([notification('n3', clock.now())]);
    for (let i = 0; i < 6; i++) {
      const t = engine.tick();
      // A second, overlapping tick must not start the same notification twice.
      const t2 = engine.tick();
      for (const p of posts.splice(0)) p.answer({ kind: 'delivered' });
      await Promise.all([t, t2]);
      clock.advance(1000);
    }
    expect(saved.get('n3')?.state).toBe('failed');
    expect(saved.get('n3')?.sends).toBe(4); // the first send and 3 resends
  });

  it('a restart with a durable pending notification sends it again; an ack then finishes it', async () => {
    const first = setup();
    const n = notification('n4', first.clock.now());
    first.engine.add([n]);
    // Persisted as pending (the commit's outbox); the process dies before any POST.
    const again = setup([n]);
    await again.engine.load();
    const t = again.engine.tick();
    expect(again.posts.map((p) => p.id)).toEqual(['n4']);
    again.posts[0]?.answer({ kind: 'delivered' });
    await t;
    again.engine.acknowledge(n.chatId);
    await settle();
    expect(again.saved.get('n4')?.state).toBe('acked');
  });
});
