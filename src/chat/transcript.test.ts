import { describe, expect, it } from 'vitest';
import { eventsFrom, parsePosition } from './transcript.ts';
import type { ChatEvent } from './types.ts';

const CLIENT = { nickname: 'Jane', participantId: 1, type: 'Client' } as const;

/** `count` contiguous Message events, the first with index `first`. */
function transcript(count: number, first = 1): ChatEvent[] {
  return Array.from({ length: count }, (_v, i) => ({
    from: CLIENT,
    index: first + i,
    type: 'Message' as const,
    utcTime: 1_700_000_000_000 + i,
    text: `m${first + i}`,
  }));
}

const indices = (events: readonly ChatEvent[]): number[] => events.map((e) => e.index);

describe('eventsFrom', () => {
  const events = transcript(5); // indices 1..5

  it("'all' returns every event, as a copy", () => {
    const out = eventsFrom(events, 'all');
    expect(out).toEqual(events);
    expect(out).not.toBe(events);
  });

  it("'none' returns nothing", () => {
    expect(eventsFrom(events, 'none')).toEqual([]);
  });

  it('0 returns nothing', () => {
    expect(eventsFrom(events, 0)).toEqual([]);
  });

  it('1 returns every event', () => {
    expect(indices(eventsFrom(events, 1))).toEqual([1, 2, 3, 4, 5]);
  });

  it('n in the middle returns the events with index >= n', () => {
    expect(indices(eventsFrom(events, 3))).toEqual([3, 4, 5]);
    expect(indices(eventsFrom(events, 5))).toEqual([5]);
  });

  it('n just past the last index returns nothing', () => {
    expect(eventsFrom(events, 6)).toEqual([]);
  });

  it('n far past the end returns nothing', () => {
    expect(eventsFrom(events, 1000)).toEqual([]);
    expect(eventsFrom(events, 999_999_999_999_999)).toEqual([]);
  });

  it('works on an empty transcript', () => {
    expect(eventsFrom([], 'all')).toEqual([]);
    expect(eventsFrom([], 'none')).toEqual([]);
    expect(eventsFrom([], 0)).toEqual([]);
    expect(eventsFrom([], 1)).toEqual([]);
    expect(eventsFrom([], 4)).toEqual([]);
  });

  describe('on a transcript loaded from an offset (indices 10..14)', () => {
    const tail = transcript(5, 10);

    it("'all' and 1 return every loaded event", () => {
      expect(indices(eventsFrom(tail, 'all'))).toEqual([10, 11, 12, 13, 14]);
      expect(indices(eventsFrom(tail, 1))).toEqual([10, 11, 12, 13, 14]);
    });

    it('n before the first loaded index returns every loaded event', () => {
      expect(indices(eventsFrom(tail, 5))).toEqual([10, 11, 12, 13, 14]);
      expect(indices(eventsFrom(tail, 10))).toEqual([10, 11, 12, 13, 14]);
    });

    it('n inside the loaded range returns the events with index >= n', () => {
      expect(indices(eventsFrom(tail, 12))).toEqual([12, 13, 14]);
      expect(indices(eventsFrom(tail, 14))).toEqual([14]);
    });

    it('n past the end returns nothing', () => {
      expect(eventsFrom(tail, 15)).toEqual([]);
      expect(eventsFrom(tail, 100)).toEqual([]);
    });

    it("0 and 'none' return nothing", () => {
      expect(eventsFrom(tail, 0)).toEqual([]);
      expect(eventsFrom(tail, 'none')).toEqual([]);
    });
  });

  it('does not modify the input array', () => {
    const input = Object.freeze(transcript(4));
    expect(() => eventsFrom(input, 2)).not.toThrow();
    expect(indices(input)).toEqual([1, 2, 3, 4]);
  });

  it('equals events.filter(e => e.index >= n) for n >= 1 (seeded pseudo-random cases)', () => {
    // Numerical Recipes LCG, 32-bit; fixed seed so a failure is reproducible.
    let state = 0x2f6b_1a3d;
    const next = (): number => {
      state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
      return state;
    };
    const below = (n: number): number => next() % n;

    for (let run = 0; run < 2000; run++) {
      const count = below(40); // 0..39 events
      const first = 1 + (below(4) === 0 ? 0 : below(500)); // often 1, else an offset
      const events = transcript(count, first);
      const n = 1 + below(first + count + 10); // 1 .. a little past the end
      const got = eventsFrom(events, n);
      const want = events.filter((e) => e.index >= n);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        // Report the failing case precisely rather than a bare inequality.
        expect({ run, count, first, n, got: indices(got) }).toEqual({ run, count, first, n, got: indices(want) });
      }
    }
  });
});

describe('parsePosition', () => {
  const fallbacks = ['all', 'none'] as const;

  it.each(fallbacks)('absent gives the fallback (%s)', (fb) => {
    expect(parsePosition(undefined, fb)).toBe(fb);
  });

  it.each(fallbacks)("'' gives the fallback (%s)", (fb) => {
    expect(parsePosition('', fb)).toBe(fb);
  });

  it.each(fallbacks)('whitespace only gives the fallback (%s)', (fb) => {
    expect(parsePosition('   ', fb)).toBe(fb);
  });

  it.each(fallbacks)("' 3 ' is trimmed to 3 (fallback %s)", (fb) => {
    expect(parsePosition(' 3 ', fb)).toBe(3);
  });

  it.each(fallbacks)("'0' is 0, not the fallback (fallback %s)", (fb) => {
    expect(parsePosition('0', fb)).toBe(0);
  });

  it.each(fallbacks)("'1' is 1 (fallback %s)", (fb) => {
    expect(parsePosition('1', fb)).toBe(1);
  });

  it.each(fallbacks)('a 15-digit number is accepted (fallback %s)', (fb) => {
    expect(parsePosition('999999999999999', fb)).toBe(999_999_999_999_999);
  });

  const invalid = ['-1', '1.5', 'abc', '1e3', '1234567890123456', '+3', '0x10', '3a', '1 2', 'Infinity', 'NaN', '٣'];
  for (const fb of fallbacks) {
    it.each(invalid)(`%j is invalid (fallback ${fb})`, (raw) => {
      expect(parsePosition(raw, fb)).toBe('invalid');
    });
  }
});
