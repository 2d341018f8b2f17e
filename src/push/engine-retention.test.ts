/**
 * What the push engine keeps alive after a notification leaves it: the due index holds a ticket that is
 * emptied then, not the slot (and through it the notification with its events and payload).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { agentJoin, openSession, say } from '../chat/session.ts';
import { notificationFor, type DeliveryOutcome, type Notification } from '../chat/notification.ts';
import type { Session } from '../chat/types.ts';
import { ManualClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import type { Store } from '../store/port.ts';
import { PushEngine } from './engine.ts';
import { GatewayRegistry } from './gateway-registry.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function make(id: string): Notification {
  const c = openSession({ chatId: `c-${id}`, serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'N', text: 'hi' }, 1000);
  const j = agentJoin(c.session, { agentId: 'a', nickname: 'Bob' }, 1000);
  const m = say(j.session, 2, 'Message', { text: 'x'.repeat(10_000) }, 1000);
  const sub = { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend: true } as const;
  const session: Session = { ...m.session, push: { active: true, subscription: sub } };
  const n = notificationFor(session, m.events, { id, now: 1000, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

function setup(withNode: boolean) {
  const store = { saveNotifications: async () => {} } as unknown as Store;
  const registry = new GatewayRegistry();
  if (withNode) registry.register({ nodeId: 'gw', group: 'g', deliver: async (): Promise<DeliveryOutcome> => ({ kind: 'delivered' }) });
  const clock = new ManualClock(1000);
  const engine = new PushEngine({
    store,
    clock,
    registry,
    policy: { resendDelayMs: 15_000, resendAttempts: 5, backoffMs: () => 500 },
    maxInFlight: 8,
    log: silentLogger,
    metrics: createMetrics({ defaultMetrics: false }),
  });
  return { engine, clock };
}

/** Adds one notification built here and returns only a weak reference to its events. */
function addOne(engine: PushEngine, id: string): WeakRef<object> {
  const n = make(id);
  engine.add([n]);
  return new WeakRef(n.events);
}

async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  return ref.deref() === undefined;
}

describe('retention after a notification leaves the engine', () => {
  // Regression test (this was a bug, now fixed). Was: src/push/engine.ts:117 and :126 (schedule pushes the Slot into the due index) with :381-384 (untrack marks
  // it gone but the index entry still points at it). A reliable notification delivered and then acknowledged by the
  // refresh (docs/push.md "Acknowledging") stays reachable, events and payload included, for the whole resend delay
  // (15 s by default; a parked one for the 90 s delivery window). The previous version's index held the id only, so
  // the acknowledged notification was garbage at once; the engine's own header comment (engine.ts:8-12) is about
  // not keeping notifications alive into promotion. Right: a slot that leaves the engine lets go of its notification
  // (or index entries are removed/point at something small).
  it('a delivered reliable notification, acknowledged: no longer reachable from the engine', async () => {
    const { engine } = setup(true);
    const ref = addOne(engine, 'a');
    await engine.tick(); // delivered; next resend due in 15 s
    engine.acknowledge('c-a');
    expect(engine.depth).toBe(0);
    expect(await collected(ref)).toBe(true);
  });

  it('the retainer is the due index: once the stale entry comes due and is popped, it is released', async () => {
    const { engine, clock } = setup(true);
    const ref = addOne(engine, 'a');
    await engine.tick();
    engine.acknowledge('c-a');
    clock.advance(15_000);
    await engine.tick();
    expect(await collected(ref)).toBe(true);
  });
});
