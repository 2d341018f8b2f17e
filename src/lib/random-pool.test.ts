import { describe, expect, it } from 'vitest';
import { RandomPool } from './random-pool.ts';

describe('RandomPool', () => {
  it('hands out the requested number of bytes, never the same bytes twice', () => {
    const pool = new RandomPool(64);
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const b = pool.take(12);
      expect(b.length).toBe(12);
      seen.add(b.toString('hex'));
    }
    // 96-bit values: a repeat would mean bytes were reused.
    expect(seen.size).toBe(1000);
  });

  it('returns copies, so a caller changing its bytes does not change the next ones', () => {
    const pool = new RandomPool(64);
    const a = pool.take(8);
    a.fill(0);
    const b = pool.take(8);
    expect(b.equals(Buffer.alloc(8))).toBe(false);
  });

  it('serves requests larger than the pool directly', () => {
    const pool = new RandomPool(16);
    const b = pool.take(100);
    expect(b.length).toBe(100);
    expect(b.equals(Buffer.alloc(100))).toBe(false);
  });

  it('refills when a request does not fit in what is left', () => {
    const pool = new RandomPool(16);
    const first = pool.take(10);
    const second = pool.take(10);
    expect(second.length).toBe(10);
    expect(first.equals(second)).toBe(false);
  });
});
