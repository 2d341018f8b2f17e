/**
 * Pure delivery decisions of the push engine: what one attempt's result means, and how long to wait
 * before the next one. No clock or randomness of its own: `nowMs` and `random` are passed in.
 */
import type { DeliveryOutcome } from '../chat/notification.ts';
import { headerValue } from '../http/headers.ts';

export type AttemptResult =
  | { readonly status: number; readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>> }
  | { readonly error: string }; // e.g. 'timeout', 'ECONNREFUSED', 'ECONNRESET', 'EPUSHFORBIDDEN'

/** What the notification lifecycle (src/chat/notification.ts) is told after a POST. */
export type AttemptOutcome = DeliveryOutcome;

/** The longest Retry-After Parley honours. */
export const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

/** Longest reason kept from a transport error string, so that reasons stay loggable. */
const MAX_REASON = 100;


const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY = '(?:mon|tue|wed|thu|fri|sat|sun)';
const LONG_DAY = '(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)';
const MON = '(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)';
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';
/** IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MON} (\\d{4}) ${TIME} GMT$`, 'i');
/** Obsolete RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
const RFC_850 = new RegExp(`^${LONG_DAY}, (\\d{2})-${MON}-(\\d{2}) ${TIME} GMT$`, 'i');
/** Obsolete asctime: Sun Nov  6 08:49:37 1994 (always UTC) */
const ASCTIME = new RegExp(`^${DAY} ${MON} ([ \\d]\\d) ${TIME} (\\d{4})$`, 'i');

function utc(year: number, month: string, day: string, h: string, m: string, s: string): number | undefined {
  const mon = MONTHS.indexOf(month.toLowerCase());
  const [d, hh, mm, ss] = [Number(day), Number(h), Number(m), Number(s)];
  if (d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  return Date.UTC(year, mon, d, hh, mm, Math.min(ss, 59));
}

/**
 * An HTTP-date (RFC 9110 §5.6.7) in any of its three forms, as epoch ms; undefined when malformed.
 * Written out rather than Date.parse, which accepts nearly anything and reads zone-less dates as local time.
 * A two-digit RFC 850 year more than 50 years ahead of nowMs is taken as the past century.
 */
export function parseHttpDate(value: string, nowMs: number): number | undefined {
  const v = value.trim();
  let m = IMF_FIXDATE.exec(v);
  if (m !== null) return utc(Number(m[3]), m[2] ?? '', m[1] ?? '', m[4] ?? '', m[5] ?? '', m[6] ?? '');
  m = ASCTIME.exec(v);
  if (m !== null) return utc(Number(m[6]), m[1] ?? '', (m[2] ?? '').trim(), m[3] ?? '', m[4] ?? '', m[5] ?? '');
  m = RFC_850.exec(v);
  if (m !== null) {
    const nowYear = Math.floor(nowMs / (365.2425 * 24 * 3600 * 1000)) + 1970;
    let year = Math.floor(nowYear / 100) * 100 + Number(m[3]);
    if (year > nowYear + 50) year -= 100;
    return utc(year, m[2] ?? '', m[1] ?? '', m[4] ?? '', m[5] ?? '', m[6] ?? '');
  }
  return undefined;
}

/**
 * Retry-After (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date taken relative to nowMs.
 * A date in the past means "now" (0); anything unparseable is ignored (undefined). Capped at 1 hour.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = parseHttpDate(v, nowMs);
    if (at === undefined) return undefined;
    ms = at - nowMs;
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

function errorReason(error: string): string {
  const clean = error.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (clean === '') return 'error';
  return clean.length > MAX_REASON ? `${clean.slice(0, MAX_REASON - 1)}…` : clean;
}

/**
 * 2xx → delivered; 410 → gone; EPUSHFORBIDDEN → gone (a forbidden target never becomes allowed by
 * retrying); 3xx (redirects are not followed), every other status, timeouts and transport errors → retry.
 * 429 and 503 honour Retry-After (delta-seconds or HTTP date relative to nowMs), capped at 1 hour.
 */
export function classifyAttempt(r: AttemptResult, nowMs: number): AttemptOutcome {
  if ('error' in r) {
    if (r.error === 'EPUSHFORBIDDEN') return { kind: 'gone', reason: 'EPUSHFORBIDDEN' };
    return { kind: 'retry', reason: errorReason(r.error) };
  }
  const { status } = r;
  if (status >= 200 && status <= 299) return { kind: 'delivered' };
  const reason = `HTTP ${status}`;
  if (status === 410) return { kind: 'gone', reason };
  if (status === 429 || status === 503) {
    const retryAfterMs = parseRetryAfter(headerValue(r.headers, 'retry-after'), nowMs);
    return retryAfterMs === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, retryAfterMs };
  }
  return { kind: 'retry', reason };
}

/** jitter 0..1: the fraction of the delay that is randomised. */
export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
  readonly jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 500, maxMs: 15_000, multiplier: 2, jitter: 0.5 });

/** setTimeout fires at once for delays above 2^31-1 ms, so no policy may ask for more. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const clamp = (x: number, lo: number, hi: number): number => (Number.isNaN(x) ? lo : Math.min(hi, Math.max(lo, x)));

/**
 * Delay before the retry after `failures` consecutive failures (1 = first failure):
 * d = min(maxMs, initialMs * multiplier^(failures-1)), then d * (1 - jitter * random()).
 * Defensive for bad input: failures below 1 count as 1, random() and jitter are clamped to [0, 1],
 * and the result is never negative nor above maxMs. Not rounded (setTimeout takes fractions).
 */
export function backoffDelayMs(failures: number, policy: BackoffPolicy, random: () => number): number {
  const maxMs = Math.max(0, policy.maxMs);
  // Capped so that multiplier^(n-1) is Infinity for any multiplier > 1 but never 1^Infinity (NaN).
  const n = clamp(Math.floor(failures), 1, 1e6);
  const growth = policy.multiplier ** (n - 1);
  // Computed so that 0 * Infinity (NaN) cannot happen: a zero initial delay stays zero.
  const raw = policy.initialMs <= 0 ? 0 : growth === Infinity ? Infinity : policy.initialMs * growth;
  const d = clamp(raw, 0, maxMs);
  const jitter = clamp(policy.jitter, 0, 1);
  const r = clamp(random(), 0, 1);
  return clamp(d * (1 - jitter * r), 0, maxMs);
}

/** Every problem of a policy, named per field (empty array = valid). */
export function backoffProblems(p: BackoffPolicy): string[] {
  const problems: string[] = [];
  const finite = (field: keyof BackoffPolicy): boolean => {
    if (typeof p[field] === 'number' && Number.isFinite(p[field])) return true;
    problems.push(`${field} must be a finite number (got ${String(p[field])})`);
    return false;
  };
  if (finite('initialMs') && p.initialMs < 0) problems.push(`initialMs must be ≥ 0 (got ${p.initialMs})`);
  if (finite('maxMs')) {
    if (p.maxMs < 0) problems.push(`maxMs must be ≥ 0 (got ${p.maxMs})`);
    else if (p.maxMs > MAX_TIMER_MS) problems.push(`maxMs must be at most ${MAX_TIMER_MS} (about 24.8 days; got ${p.maxMs})`);
    if (Number.isFinite(p.initialMs) && p.initialMs >= 0 && p.maxMs >= 0 && p.initialMs > p.maxMs) problems.push(`initialMs (${p.initialMs}) must not exceed maxMs (${p.maxMs})`);
  }
  if (finite('multiplier') && p.multiplier < 1) problems.push(`multiplier must be ≥ 1 (got ${p.multiplier})`);
  if (finite('jitter') && (p.jitter < 0 || p.jitter > 1)) problems.push(`jitter must be between 0 and 1 (got ${p.jitter})`);
  return problems;
}
