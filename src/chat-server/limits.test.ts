import { expect, it } from 'vitest';
import { Admission } from './limits.ts';

/** Admits and releases at once (the session was stored, so the figures count it, or it failed). */
const admitted = (a: Admission, withPush: boolean) => () => a.admit(withPush)();

it('refuses at the limit and admits again only below the restore threshold', () => {
  const c = { open: 0, flex: 0 };
  const a = new Admission({ sessions: 10, flexUsers: 5, restorePercent: 80 }, () => c);
  c.open = 9;
  expect(admitted(a, false)).not.toThrow();
  c.open = 10;
  expect(admitted(a, false)).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
  c.open = 9;
  expect(admitted(a, false)).toThrow(); // 9 is not below 80 % of 10
  c.open = 7;
  expect(admitted(a, false)).not.toThrow();
});

it('limits push-subscribed sessions separately', () => {
  const c = { open: 1, flex: 5 };
  const a = new Admission({ sessions: 100, flexUsers: 5, restorePercent: 80 }, () => c);
  expect(admitted(a, true)).toThrow(/limit-for-flex-users/);
  expect(admitted(a, false)).not.toThrow();
  c.flex = 3;
  expect(admitted(a, true)).not.toThrow();
});

it('a limit of 0 refuses every new session', () => {
  const a = new Admission({ sessions: 0, flexUsers: 0, restorePercent: 80 }, () => ({ open: 0, flex: 0 }));
  expect(admitted(a, false)).toThrow();
});

it('admitted sessions not yet stored count: concurrent Request Chats cannot pass the limit together', () => {
  const c = { open: 0, flex: 0 };
  const a = new Admission({ sessions: 2, flexUsers: 1, restorePercent: 50 }, () => c);
  const first = a.admit(true);
  expect(() => a.admit(true)).toThrow(/limit-for-flex-users/);
  const second = a.admit(false);
  expect(() => a.admit(false)).toThrow(/limit-for-sessions/);
  // Stored: the figures count them now; released twice changes nothing.
  c.open = 2;
  c.flex = 1;
  first();
  second();
  second();
  expect(() => a.admit(false)).toThrow(/limit-for-sessions/);
  // Both failed instead: nothing counts, and 0 is below 50 % of the limit.
  c.open = 0;
  c.flex = 0;
  a.observe();
  expect(admitted(a, true)).not.toThrow();
});

it('notices the limit when the figures reach it, not only when a Request Chat or a probe asks', () => {
  const c = { open: 0, flex: 0 };
  const a = new Admission({ sessions: 10, flexUsers: 10, restorePercent: 40 }, () => c);
  c.open = 10;
  a.observe(); // a committed change
  c.open = 5; // above 40 % of 10: still full
  expect(admitted(a, false)).toThrow(/limit-for-sessions/);
});

it('with limits-restore-threshold = 0 a full node takes sessions again once it is back to none', () => {
  const c = { open: 0, flex: 0 };
  const a = new Admission({ sessions: 2, flexUsers: 10, restorePercent: 0 }, () => c);
  c.open = 2;
  expect(admitted(a, false)).toThrow(/limit-for-sessions/);
  c.open = 1;
  expect(admitted(a, false)).toThrow(/limit-for-sessions/);
  c.open = 0;
  expect(admitted(a, false)).not.toThrow();
});
