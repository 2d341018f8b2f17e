import { describe, expect, it } from 'vitest';
import { createRandomIds } from './ids.ts';

describe('random ids', () => {
  it('chatId is 16 and fileId 12 base62 characters', () => {
    const ids = createRandomIds();
    for (let i = 0; i < 200; i++) {
      expect(ids.chatId()).toMatch(/^[0-9A-Za-z]{16}$/);
      expect(ids.fileId()).toMatch(/^[0-9A-Za-z]{12}$/);
    }
  });

  it('every base62 character is about equally likely (no modulo bias towards the first eight)', () => {
    const ids = createRandomIds();
    const counts = new Map<string, number>();
    const n = 20_000; // 320,000 characters: about 5,161 of each
    for (let i = 0; i < n; i++) for (const ch of ids.chatId()) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    expect(counts.size).toBe(62);
    const expected = (n * 16) / 62;
    // With byte % 62 the first eight characters came 5/4 as often (6,400 each); uniform stays within ~6 %.
    for (const c of counts.values()) expect(Math.abs(c - expected) / expected).toBeLessThan(0.1);
  });
});
