import { expect, it } from 'vitest';
import { LogThrottle } from './log-throttle.ts';

it('logs a key the first time, then once per interval with how many were left out; keys apart', () => {
  let now = 0;
  const t = new LogThrottle(1000, () => now);
  const lines: string[] = [];
  const log = (key: string) => t.log(key, (extra) => lines.push(`${key}+${extra.suppressed ?? 0}`));
  log('a');
  log('a');
  log('b');
  now = 999;
  log('a');
  now = 1000;
  log('a');
  log('a');
  now = 5000;
  log('a');
  expect(lines).toEqual(['a+0', 'b+0', 'a+2', 'a+1']);
});

it('forgets its keys past the bound instead of growing', () => {
  const t = new LogThrottle(1000, () => 0, 2);
  const lines: string[] = [];
  for (const k of ['a', 'b', 'c', 'a']) t.log(k, () => lines.push(k));
  expect(lines).toEqual(['a', 'b', 'c', 'a']);
});
