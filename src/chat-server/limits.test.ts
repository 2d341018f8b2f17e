import { expect, it } from 'vitest';
import { Admission } from './limits.ts';

it('refuses at the limit and admits again only below the restore threshold', () => {
  const c = { open: 0, flex: 0 };
  const a = new Admission({ sessions: 10, flexUsers: 5, restorePercent: 80 }, () => c);
  c.open = 9;
  expect(() => a.admit(false)).not.toThrow();
  c.open = 10;
  expect(() => a.admit(false)).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
  c.open = 9;
  expect(() => a.admit(false)).toThrow(); // 9 is not below 80 % of 10
  c.open = 7;
  expect(() => a.admit(false)).not.toThrow();
});

it('limits push-subscribed sessions separately', () => {
  const c = { open: 1, flex: 5 };
  const a = new Admission({ sessions: 100, flexUsers: 5, restorePercent: 80 }, () => c);
  expect(() => a.admit(true)).toThrow(/limit-for-flex-users/);
  expect(() => a.admit(false)).not.toThrow();
  c.flex = 3;
  expect(() => a.admit(true)).not.toThrow();
});

it('a limit of 0 refuses every new session', () => {
  const a = new Admission({ sessions: 0, flexUsers: 0, restorePercent: 80 }, () => ({ open: 0, flex: 0 }));
  expect(() => a.admit(false)).toThrow();
});
