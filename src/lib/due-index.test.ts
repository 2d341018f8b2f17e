import { expect, it } from 'vitest';
import { DueIndex } from './due-index.ts';

it('pops due entries earliest first and keeps the rest', () => {
  const d = new DueIndex();
  for (const [at, key] of [[30, 'c'], [10, 'a'], [20, 'b'], [40, 'd']] as const) d.push(at, key);
  expect(d.peek()).toBe(10);
  expect(d.popDue(25).map((e) => e.key)).toEqual(['a', 'b']);
  expect(d.size).toBe(2);
  expect(d.popDue(100, 1).map((e) => e.key)).toEqual(['c']);
  expect(d.popDue(100).map((e) => e.key)).toEqual(['d']);
  expect(d.peek()).toBeUndefined();
});

it('orders any sequence of pushes like a sort (seeded random input)', () => {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % 100000);
  const d = new DueIndex();
  const times: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const t = rnd();
    times.push(t);
    d.push(t, String(i));
  }
  const popped = d.popDue(Infinity).map((e) => e.at);
  expect(popped).toEqual([...times].sort((a, b) => a - b));
});
