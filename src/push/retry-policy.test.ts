import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BACKOFF,
  MAX_RETRY_AFTER_MS,
  backoffDelayMs,
  backoffProblems,
  classifyAttempt,
  parseHttpDate,
  parseRetryAfter,
  type BackoffPolicy,
} from './retry-policy.ts';

/** 2015-10-21T07:28:00Z, a Wednesday. */
const NOW = Date.UTC(2015, 9, 21, 7, 28, 0);

describe('classifyAttempt: statuses', () => {
  it.each([200, 201, 202, 204, 299])('%i is delivered', (status) => {
    expect(classifyAttempt({ status }, NOW)).toEqual({ kind: 'delivered' });
  });

  it('410 is gone', () => {
    expect(classifyAttempt({ status: 410 }, NOW)).toEqual({ kind: 'gone', reason: 'HTTP 410' });
  });

  it.each([300, 301, 302, 303, 307, 308])('%i is retried: redirects are not followed', (status) => {
    expect(classifyAttempt({ status, headers: { location: 'http://10.0.0.1/' } }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}` });
  });

  it.each([100, 199, 300, 400, 401, 403, 404, 408, 409, 413, 500, 502, 504, 599])('%i is retried with reason "HTTP %i"', (status) => {
    expect(classifyAttempt({ status }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}` });
  });

  it.each([429, 503])('%i without Retry-After is retried with no delay hint', (status) => {
    expect(classifyAttempt({ status }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}` });
    expect(classifyAttempt({ status, headers: {} }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}` });
  });

  it.each([429, 503])('%i honours Retry-After in delta-seconds', (status) => {
    expect(classifyAttempt({ status, headers: { 'retry-after': '120' } }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}`, retryAfterMs: 120_000 });
    expect(classifyAttempt({ status, headers: { 'Retry-After': ['0', '99'] } }, NOW)).toEqual({ kind: 'retry', reason: `HTTP ${status}`, retryAfterMs: 0 });
  });

  it.each([429, 503])('%i honours Retry-After as an HTTP date relative to nowMs', (status) => {
    const r = classifyAttempt({ status, headers: { 'RETRY-AFTER': 'Wed, 21 Oct 2015 07:30:30 GMT' } }, NOW);
    expect(r).toEqual({ kind: 'retry', reason: `HTTP ${status}`, retryAfterMs: 150_000 });
  });

  it('caps Retry-After at one hour', () => {
    expect(classifyAttempt({ status: 429, headers: { 'retry-after': '86400' } }, NOW)).toEqual({ kind: 'retry', reason: 'HTTP 429', retryAfterMs: MAX_RETRY_AFTER_MS });
    expect(classifyAttempt({ status: 503, headers: { 'retry-after': 'Thu, 22 Oct 2015 07:28:00 GMT' } }, NOW)).toMatchObject({ retryAfterMs: 3_600_000 });
    expect(classifyAttempt({ status: 503, headers: { 'retry-after': '99999999999999999999' } }, NOW)).toMatchObject({ retryAfterMs: 3_600_000 });
  });

  it('takes a Retry-After date in the past as 0', () => {
    expect(classifyAttempt({ status: 503, headers: { 'retry-after': 'Wed, 21 Oct 2015 07:00:00 GMT' } }, NOW)).toMatchObject({ retryAfterMs: 0 });
  });

  it('ignores an unparseable Retry-After', () => {
    for (const v of ['soon', '1.5', '-5', '', '2015-10-21T07:30:00Z', 'Wed 12', 'Wed, 21 Oct 2015 07:30:30']) {
      expect(classifyAttempt({ status: 429, headers: { 'retry-after': v } }, NOW), v).toEqual({ kind: 'retry', reason: 'HTTP 429' });
    }
  });

  it('ignores Retry-After on other statuses', () => {
    expect(classifyAttempt({ status: 500, headers: { 'retry-after': '30' } }, NOW)).toEqual({ kind: 'retry', reason: 'HTTP 500' });
    expect(classifyAttempt({ status: 301, headers: { 'retry-after': '30' } }, NOW)).toEqual({ kind: 'retry', reason: 'HTTP 301' });
    expect(classifyAttempt({ status: 200, headers: { 'retry-after': '30' } }, NOW)).toEqual({ kind: 'delivered' });
  });
});

describe('classifyAttempt: errors', () => {
  it('EPUSHFORBIDDEN is gone: retrying never makes the target allowed', () => {
    expect(classifyAttempt({ error: 'EPUSHFORBIDDEN' }, NOW)).toEqual({ kind: 'gone', reason: 'EPUSHFORBIDDEN' });
  });

  it.each(['timeout', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET'])('%s is retried with itself as the reason', (error) => {
    expect(classifyAttempt({ error }, NOW)).toEqual({ kind: 'retry', reason: error });
  });

  it('keeps reasons short and on one line', () => {
    expect(classifyAttempt({ error: '' }, NOW)).toEqual({ kind: 'retry', reason: 'error' });
    expect(classifyAttempt({ error: 'bad\r\nthing' }, NOW)).toEqual({ kind: 'retry', reason: 'bad thing' });
    const long = classifyAttempt({ error: 'x'.repeat(5000) }, NOW);
    expect(long.kind === 'retry' && long.reason.length).toBe(100);
  });
});

describe('parseHttpDate / parseRetryAfter', () => {
  it('reads the three HTTP-date forms as UTC', () => {
    const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toBe(expected);
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW)).toBe(expected);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994', NOW)).toBe(expected);
  });

  it('puts two-digit RFC 850 years within 50 years of now', () => {
    expect(parseHttpDate('Thursday, 22-Oct-15 07:28:00 GMT', NOW)).toBe(Date.UTC(2015, 9, 22, 7, 28, 0));
    expect(parseHttpDate('Thursday, 01-Jan-70 00:00:00 GMT', NOW)).toBe(0);
  });

  it('refuses what is not an HTTP date', () => {
    for (const v of ['Sun, 06 Nov 1994 08:49:37', 'Sun, 32 Nov 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 24:00:00 GMT', 'tomorrow', '1994-11-06']) {
      expect(parseHttpDate(v, NOW), v).toBeUndefined();
    }
  });

  it('reads delta-seconds and trims spaces', () => {
    expect(parseRetryAfter(' 7 ', NOW)).toBe(7000);
    expect(parseRetryAfter(undefined, NOW)).toBeUndefined();
  });
});

/** A seeded linear congruential generator (Numerical Recipes constants): values in [0, 1). */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** The un-jittered delay of the formula, for comparison. */
const base = (failures: number, p: BackoffPolicy): number => Math.min(p.maxMs, p.initialMs * p.multiplier ** (failures - 1));

describe('backoffDelayMs', () => {
  it('follows the default policy without jitter: 500, 1000, 2000, 4000, 8000, 15000, 15000', () => {
    const p = { ...DEFAULT_BACKOFF, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelayMs(n, p, () => 0.99))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
  });

  it('default policy is 500 ms initial, 15 s max, ×2, jitter 0.5, and frozen', () => {
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 500, maxMs: 15_000, multiplier: 2, jitter: 0.5 });
    expect(Object.isFrozen(DEFAULT_BACKOFF)).toBe(true);
    expect(backoffProblems(DEFAULT_BACKOFF)).toEqual([]);
  });

  it('applies jitter as delay * (1 - jitter * random())', () => {
    expect(backoffDelayMs(1, DEFAULT_BACKOFF, () => 0)).toBe(500);
    expect(backoffDelayMs(1, DEFAULT_BACKOFF, () => 0.5)).toBe(375);
    expect(backoffDelayMs(3, DEFAULT_BACKOFF, () => 0.999)).toBeCloseTo(1001, 6);
    expect(backoffDelayMs(10, { ...DEFAULT_BACKOFF, jitter: 1 }, () => 0.25)).toBe(11250);
  });

  it('survives huge failure counts and bad inputs without NaN', () => {
    expect(backoffDelayMs(1e9, DEFAULT_BACKOFF, () => 0)).toBe(15000);
    expect(backoffDelayMs(Infinity, DEFAULT_BACKOFF, () => 0)).toBe(15000);
    expect(backoffDelayMs(Infinity, { ...DEFAULT_BACKOFF, multiplier: 1 }, () => 0)).toBe(500);
    expect(backoffDelayMs(0, DEFAULT_BACKOFF, () => 0)).toBe(500);
    expect(backoffDelayMs(-3, DEFAULT_BACKOFF, () => 0)).toBe(500);
    expect(backoffDelayMs(Number.NaN, DEFAULT_BACKOFF, () => 0)).toBe(500);
    expect(backoffDelayMs(2000, { initialMs: 0, maxMs: 1000, multiplier: 2, jitter: 0 }, () => 0)).toBe(0);
    expect(backoffDelayMs(2, DEFAULT_BACKOFF, () => 7)).toBe(500);
    expect(backoffDelayMs(2, DEFAULT_BACKOFF, () => -1)).toBe(1000);
    expect(backoffDelayMs(2, DEFAULT_BACKOFF, () => Number.NaN)).toBe(1000);
    expect(backoffDelayMs(2, { ...DEFAULT_BACKOFF, jitter: 3 }, () => 0.5)).toBe(500);
  });

  it('holds its properties over many seeded random policies and inputs', () => {
    const rnd = lcg(20240611);
    for (let i = 0; i < 500; i++) {
      const initialMs = Math.floor(rnd() * 5000);
      const policy: BackoffPolicy = {
        initialMs,
        maxMs: initialMs + Math.floor(rnd() * 100_000),
        multiplier: 1 + rnd() * 4,
        jitter: rnd(),
      };
      expect(backoffProblems(policy)).toEqual([]);
      const still = { ...policy, jitter: 0 };
      let previous = -1;
      for (let failures = 1; failures <= 40; failures++) {
        const d = base(failures, policy);
        const got = backoffDelayMs(failures, policy, rnd);
        expect(got).toBeGreaterThanOrEqual(0);
        expect(got).toBeLessThanOrEqual(policy.maxMs);
        expect(got).toBeLessThanOrEqual(d);
        expect(got).toBeGreaterThanOrEqual(d * (1 - policy.jitter) - 1e-9);
        const plain = backoffDelayMs(failures, still, rnd);
        expect(plain).toBe(d);
        expect(plain).toBeGreaterThanOrEqual(previous);
        previous = plain;
      }
    }
  });
});

describe('backoffProblems', () => {
  const ok = DEFAULT_BACKOFF;

  it('is empty for valid policies, including the edges', () => {
    expect(backoffProblems({ initialMs: 0, maxMs: 0, multiplier: 1, jitter: 0 })).toEqual([]);
    expect(backoffProblems({ initialMs: 1000, maxMs: 1000, multiplier: 1, jitter: 1 })).toEqual([]);
  });

  it.each<[Partial<BackoffPolicy>, RegExp]>([
    [{ initialMs: -1 }, /^initialMs must be ≥ 0/],
    [{ maxMs: -1 }, /^maxMs must be ≥ 0/],
    [{ multiplier: 0.5 }, /^multiplier must be ≥ 1/],
    [{ multiplier: -2 }, /^multiplier must be ≥ 1/],
    [{ jitter: -0.1 }, /^jitter must be between 0 and 1/],
    [{ jitter: 1.5 }, /^jitter must be between 0 and 1/],
    [{ initialMs: 20_000 }, /^initialMs \(20000\) must not exceed maxMs \(15000\)/],
    [{ maxMs: 2 ** 31 }, /^maxMs must be at most 2147483647/],
    [{ initialMs: Number.NaN }, /^initialMs must be a finite number/],
    [{ maxMs: Infinity }, /^maxMs must be a finite number/],
    [{ multiplier: Number.NaN }, /^multiplier must be a finite number/],
    [{ jitter: Infinity }, /^jitter must be a finite number/],
  ])('reports %o', (change, problem) => {
    const problems = backoffProblems({ ...ok, ...change });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(problem);
  });

  it('reports every problem at once, named per field', () => {
    const problems = backoffProblems({ initialMs: -5, maxMs: -10, multiplier: 0, jitter: 2 });
    expect(problems.map((p) => p.split(' ')[0])).toEqual(['initialMs', 'maxMs', 'multiplier', 'jitter']);
    expect(backoffProblems({ initialMs: 100, maxMs: 50, multiplier: 0.9, jitter: 0.5 })).toHaveLength(2);
  });
});
