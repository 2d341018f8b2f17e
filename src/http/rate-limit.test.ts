import { expect, it } from 'vitest';
import { RateLimiter } from './rate-limit.ts';

it('allows the burst, then the rate', () => {
  const r = new RateLimiter(2, 3);
  expect([1, 2, 3, 4].map(() => r.take('a', 0))).toEqual([true, true, true, false]);
  expect(r.take('a', 499)).toBe(false);
  expect(r.take('a', 500)).toBe(true);
  expect(r.take('b', 500)).toBe(true); // keys are independent
});

it('never exceeds rate × time + burst over a long random run (seeded)', () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const r = new RateLimiter(10, 5);
  let now = 0;
  let allowed = 0;
  for (let i = 0; i < 20000; i++) {
    now += rnd() * 20;
    if (r.take('k', now)) allowed++;
  }
  expect(allowed).toBeLessThanOrEqual(Math.floor((now / 1000) * 10) + 5);
  expect(allowed).toBeGreaterThan((now / 1000) * 10 * 0.9);
});

it('a rate of 0 is no limit; memory stays bounded', () => {
  expect(new RateLimiter(0, 0).take('x', 0)).toBe(true);
  const r = new RateLimiter(1, 1, 100);
  for (let i = 0; i < 1000; i++) r.take(`k${i}`, i);
  expect(r.size).toBe(100);
});
