/**
 * attemptsOf(id, chatId), which notifyShutdown (src/chat-server/node.ts) calls for every shutdown advice in a
 * loop: it looks in the notification's chat only, so the wait stays linear in the number of advice.
 */
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

function base(): Notification {
  const c = openSession({ chatId: 'c', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hi' }, 1000);
  const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 1000);
  const m = say(j.session, 2, 'Message', { text: 'hello' }, 1000);
  const sub = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;
  const session: Session = { ...m.session, push: { active: true, subscription: sub } };
  const n = notificationFor(session, m.events, { id: 'b', now: 1000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

describe('attemptsOf', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/engine.ts:148-151 attemptsOf scans every chat and slot (O(tracked)); the previous version
  // (e8c0153^) was a Map lookup. notifyShutdown (src/chat-server/node.ts:204, :208) calls it for each advice in
  // `advice.some(...)` on every loop turn, so shutting down a node with N subscribed sessions costs O(N^2)
  // synchronous work inside its 5 s deadline, blocking the event loop (so gateway answers and the deadline check
  // wait). Right: O(1) per lookup (e.g. keep the count/lookup without a fresh-key Map: a field on the notification
  // id's slot found through the chat, as attemptsOf callers know the chat, or keep an id->slot map only for this).
  it('the shutdown wait (advice.some(attemptsOf === 0)) over 20,000 tracked advice notifications is not quadratic', async () => {
    const b = base();
    const advice: Notification[] = [];
    // Each notification counts the reads of its id: a lookup through its chat reads about one per call.
    let reads = 0;
    for (let i = 0; i < 20_000; i++) {
      const n = { ...b, chatId: `c${i}` };
      const id = `n${i}`;
      Object.defineProperty(n, 'id', {
        enumerable: true,
        get: () => {
          reads++;
          return id;
        },
      });
      advice.push(n);
    }
    const store = { saveNotifications: async () => {} } as unknown as Store;
    const registry = new GatewayRegistry();
    registry.register({ nodeId: 'gw', group: 'g', deliver: async () => ({ kind: 'delivered' }) });
    const engine = new PushEngine({
      store,
      clock: new ManualClock(1000),
      registry,
      policy: { resendDelayMs: 15_000, resendAttempts: 5, backoffMs: () => 500 },
      maxInFlight: 100_000,
      log: silentLogger,
      metrics: createMetrics({ defaultMetrics: false }),
    });
    engine.add(advice);
    await engine.tick();
    // All delivered once and waiting for their acknowledgement (resend): still tracked, attempts 1.
    expect(engine.depth).toBe(20_000);
    reads = 0;
    const pending = advice.some((a) => engine.attemptsOf(a.id, a.chatId) === 0);
    expect(pending).toBe(false);
    // Two reads per advice (the caller's and the one slot of its chat); a scan of every chat: 2e8.
    expect(reads).toBeLessThanOrEqual(2 * 20_000);
  });
});
