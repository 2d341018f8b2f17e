import { describe, expect, it } from 'vitest';
import { outcomeOf } from './gateway-socket.ts';

describe('a gateway answer (outcomeOf)', () => {
  it('keeps well-formed outcomes as they are', () => {
    expect(outcomeOf({ kind: 'delivered' })).toEqual({ kind: 'delivered' });
    expect(outcomeOf({ kind: 'gone', reason: 'HTTP 410' })).toEqual({ kind: 'gone', reason: 'HTTP 410' });
    expect(outcomeOf({ kind: 'retry', reason: 'HTTP 503', retryAfterMs: 2000 })).toEqual({ kind: 'retry', reason: 'HTTP 503', retryAfterMs: 2000 });
  });

  it.each([null, undefined, 5, 'delivered', [], {}, { kind: 'weird' }, { kind: null }, { kind: ['delivered'] }])(
    'counts the malformed answer %j as a failed POST to retry',
    (v) => {
      expect(outcomeOf(v)).toEqual({ kind: 'retry', reason: 'malformed answer from the gateway' });
    },
  );

  it('drops a retry delay that is not a finite number from 0, and a reason that is not a string', () => {
    for (const retryAfterMs of ['1000', Number.NaN, Number.POSITIVE_INFINITY, -5, null, {}]) {
      expect(outcomeOf({ kind: 'retry', reason: 42, retryAfterMs })).toEqual({ kind: 'retry', reason: 'retry' });
    }
    expect(outcomeOf({ kind: 'gone', reason: 'x'.repeat(10_000) })).toMatchObject({ kind: 'gone', reason: 'x'.repeat(500) });
  });
});
