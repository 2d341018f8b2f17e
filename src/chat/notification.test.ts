import { describe, expect, it } from 'vitest';
import { acknowledge, afterAttempt, beforeAttempt, expireParked, notificationFor, park, unpark, type Notification, type ResendPolicy } from './notification.ts';
import type { PushSubscription } from './push-subscription.ts';
import { agentJoin, openSession, say } from './session.ts';

const POLICY: ResendPolicy = { resendDelayMs: 15_000, resendAttempts: 5, backoffMs: () => 1000 };

function subscription(resend: boolean): PushSubscription {
  return { nodeGroup: 'g', deviceId: 'd', deviceType: 'customhttp', notifyRequestor: false, debug: false, resend };
}

function notification(resend: boolean): Notification {
  const opened = openSession({ chatId: 'c1', serviceName: 's', secureKey: 'k', userId: 'u', alias: '117', nickname: 'Ann' }, 1000);
  const s = { ...opened.session, push: { subscription: subscription(resend), active: true } };
  const joined = agentJoin(s, { agentId: 'alice', nickname: 'Alice' }, 1001);
  const said = say(joined.session, 2, 'Message', { text: 'hi' }, 1002);
  const n = notificationFor(said.session, said.events, { id: 'n1', now: 1002, content: ['session-id'] });
  if (n === undefined) throw new Error('no notification');
  return n;
}

describe('notification states keep one shape', () => {
  // Every state change is a spread of the notification. In Node 20's V8, a spread followed by a property the
  // source lacks gives every resulting object a hidden class of its own (a map and a descriptor array in the
  // old generation per push, which filled it between major GCs at 5,000 pushes/s). So a new notification
  // has every property any later state sets, and no state change adds one.
  it('every state a notification passes through has the keys of a new one, in the same order', () => {
    for (const resend of [false, true]) {
      const n = notification(resend);
      const keys = Object.keys(n);
      expect(keys).toContain('lastError');
      expect(keys).toContain('finishedAt');
      const sent = beforeAttempt(n, 2000, POLICY);
      expect(sent).toBe('send');
      const states: Notification[] = [
        afterAttempt(n, { kind: 'delivered' }, 2000, POLICY),
        afterAttempt(n, { kind: 'retry', reason: 'HTTP 503' }, 2000, POLICY),
        afterAttempt(n, { kind: 'retry', reason: 'HTTP 503', retryAfterMs: 5000 }, 2000, POLICY),
        afterAttempt(n, { kind: 'gone', reason: 'HTTP 410' }, 2000, POLICY),
        park(n, 'no gms node'),
        unpark(park(n, 'no gms node'), 3000),
        expireParked(park(n, 'no gms node'), 10 ** 12, POLICY),
        acknowledge(n, 4000),
      ];
      const failed = beforeAttempt({ ...n, sends: POLICY.resendAttempts + 1 }, 5000, POLICY);
      if (failed !== 'send') states.push(failed);
      for (const s of states) expect(Object.keys(s)).toEqual(keys);
    }
  });

  it('leaves the undefined properties out of the stored JSON', () => {
    const doc = JSON.parse(JSON.stringify(notification(true))) as Record<string, unknown>;
    expect(Object.keys(doc)).not.toContain('lastError');
    expect(Object.keys(doc)).not.toContain('finishedAt');
  });
});
